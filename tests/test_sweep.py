"""Tests of robust_saliency.sweep: papermill over a grid, one folder per point, done points
skipped, failed points reported while the others finish, the summary table."""
import json

import nbformat
import pytest

from robust_saliency import executor, sweep


def _tiny_notebook(path):
    """A notebook with a parameters cell (a, fail) that writes a results JSON under ROBUST_SALIENCY_ROOT."""
    params = nbformat.v4.new_code_cell("a = 1\nfail = False")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import json, os, pathlib\n"
        "assert not fail, 'asked to fail'\n"
        "root = pathlib.Path(os.environ['ROBUST_SALIENCY_ROOT'])\n"
        "(root / 'results').mkdir(exist_ok=True)\n"
        "doc = {'results': {'value': a * 2, 'threads': os.environ.get('ROBUST_SALIENCY_THREADS'),\n"
        "       'cwd_yaml': pathlib.Path('tiny.yaml').is_file(),\n"
        "       'claims': [{'status': 'paper', 'verdict': 'holds'}, {'status': 'beyond the paper', 'verdict': 'holds'}]}}\n"
        "(root / 'results' / f\"tiny_{os.environ['ROBUST_SALIENCY_PROFILE']}.json\").write_text(json.dumps(doc))")
    nb = nbformat.v4.new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    path.with_suffix(".yaml").write_text("smoke: {}\n")
    return path


def test_grid_is_the_product_then_the_points_and_bad_grids_say_what_is_accepted(tmp_path):
    pts = sweep.grid_points({"a": [1, 2], "b": [[0], [1]], "points": [{"a": 9}]})
    assert pts == [{"a": 1, "b": [0]}, {"a": 1, "b": [1]}, {"a": 2, "b": [0]}, {"a": 2, "b": [1]}, {"a": 9}]
    with pytest.raises(ValueError, match="grid parameter 'a' = 3; accepted: a non-empty list"):
        sweep.grid_points({"a": 3})
    with pytest.raises(ValueError, match="the grid is empty"):
        sweep.grid_points({})
    with pytest.raises(ValueError, match="no such file"):
        sweep.load_grid(tmp_path / "missing.yaml")
    names = {sweep.point_name(p) for p in pts}
    assert len(names) == len(pts) and sweep.point_name({"a": 1, "b": [0]}) == sweep.point_name({"a": 1, "b": [0]})


def test_a_sweep_runs_every_point_reports_a_failure_and_skips_what_is_done(tmp_path, monkeypatch):
    monkeypatch.delenv(executor.WORKERS_ENV, raising=False)
    monkeypatch.delenv(executor.SCHEDULER_ENV, raising=False)
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "out"
    points = sweep.grid_points({"a": [1, 2], "points": [{"a": 3, "fail": True}]})
    with pytest.raises(executor.JobsFailed, match="asked to fail") as err:
        sweep.sweep(nb, points, out, keys=["results.value", "results.cwd_yaml"], progress=False)
    assert len(err.value.failures) == 1 and err.value.failures[0].label == sweep.point_name(points[2])
    table = sweep.summary(out / "tiny", ["results.value"])
    by_a = table.set_index("param a")
    assert list(by_a.status[[1, 2, 3]]) == ["done", "done", "failed"] and list(by_a["results.value"][[1, 2]]) == [2, 4]
    assert by_a.loc[1, "paper claims holds"] == 1 and "asked to fail" in by_a.loc[3, "error"]
    assert (out / "tiny" / "summary.csv").is_file()
    done = out / "tiny" / sweep.point_name(points[0])
    assert (done / "notebooks" / "tiny.ipynb").is_file() and (done / "notebooks" / "tiny.yaml").is_file()
    assert json.loads((done / "results" / "tiny_smoke.json").read_text())["results"]["cwd_yaml"] is True
    stamp = (done / "point.json").stat().st_mtime_ns
    table = sweep.sweep(nb, points[:2], out, progress=False)  # both done: nothing runs
    assert (done / "point.json").stat().st_mtime_ns == stamp and set(table.status) >= {"done"}


def test_bad_parameters_stop_the_sweep_before_any_point_runs(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    with pytest.raises(ValueError, match=r"grid parameters \['lam'\] are not in tiny.ipynb's parameters cell; accepted: \['a', 'fail'\]"):
        sweep.sweep(nb, [{"a": 1}, {"lam": 0.1}], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="profile='fast' is not known"):
        sweep.sweep(nb, [{"a": 1}], tmp_path / "out", profile="fast", progress=False)
    assert not (tmp_path / "out").exists()


def test_points_on_dask_workers_give_the_same_results_with_one_thread_each(tmp_path, monkeypatch):
    monkeypatch.setenv(executor.WORKERS_ENV, "2")
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    try:
        table = sweep.sweep(nb, sweep.grid_points({"a": [5, 6]}), tmp_path / "out",
                            keys=["results.value", "results.threads"], progress=False)
    finally:
        executor.shutdown()
    assert sorted(table["results.value"]) == [10, 12] and set(table["results.threads"]) == {"1"}


def test_the_command_line_exits_1_naming_the_failed_point(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(executor.WORKERS_ENV, raising=False)
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text("a: [1]\nfail: [true]\n")
    assert sweep.main([str(nb), "--grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "asked to fail" in capsys.readouterr().err
    grid.write_text("a: 1\n")
    with pytest.raises(SystemExit):
        sweep.main([str(nb), "--grid", str(grid), "--out", str(tmp_path / "out")])


def test_the_parameters_of_every_notebook_are_read_whole():
    names = sweep.notebook_parameters("notebooks/04_marginal_density.ipynb")
    assert {"profile", "seeds", "selection_tol", "lam_sweep", "frontier_seeds"} <= set(names)
