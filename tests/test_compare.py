"""python -m robust_saliency.compare: a re-run against the committed results, leaf by leaf and verdict
by verdict, with the numerics provenance that explains the differences; and provenance["numerics"]."""
import copy
import json
import re

import pytest
import torch

from robust_saliency import claims, compare, executor, results

NB = "03_norm_regularized_at"
NUMERICS = {"cpu_capability": "AVX512", "cpu_model": "Some CPU", "machine": "x86_64", "torch": "2.14.1+cu130",
            "numpy": "2.4.6", "blas": "mkl", "lapack": "mkl", "mkl": "2024.2", "mkldnn": "3.12.0",
            "numpy_blas": "scipy-openblas 0.3.31", "parallel_backend": "OpenMP", "threads": 2,
            "interop_threads": 2, "env": {}, "device": "cpu", "cuda_device": None, "cuda": None, "cudnn": None}


def _rows():
    """A claims table as the notebooks store it (claims.family rows)."""
    t = claims.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    return claims.family([
        claims.claim("A beats B", "Table 1", "0.68 ± 0.04", test=t, paper_effect=0.02),
        claims.claim("A is cheap", "Sec. 5", "×1.2", holds=True, beyond_paper=True),
        claims.claim("A games its own metric", "Table 2", "1.0 ± 0.0", test=t,
                     not_testable="scores its own objective")])


def _committed(folder):
    """results/<NB>_cpu.json written by write_results, with fixed numerics; returns its document."""
    res = {"selection": [{"method": "l1", "validation accuracy": 0.64, "validation score": 0.3350023329257965}],
           "records": [{"seed": s, "gini": 0.4 + s / 7} for s in range(3)], "claims": _rows()}
    path = results.write_results(NB, "cpu", res, {"device": "cpu", "seeds": [0, 1, 2]}, results_dir=folder)
    doc = json.loads(path.read_text())
    doc["provenance"]["numerics"] = dict(NUMERICS)
    path.write_text(json.dumps(doc))
    return doc


def _rerun(folder, doc):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{NB}_cpu.json").write_text(json.dumps(doc))


def _run(capsys, *args):
    code = compare.main([str(a) for a in args])
    return code, capsys.readouterr().out


@pytest.fixture
def runs(tmp_path):
    committed = tmp_path / "committed"
    doc = _committed(committed)
    return committed, tmp_path / "clone" / "results", doc


def test_identical_results_are_all_bitwise_equal(runs, capsys):
    committed, rerun, doc = runs
    _rerun(rerun, doc)
    # OTHER may be the clone's root: its results/ is used
    code, out = _run(capsys, rerun.parent, "--against", committed, "--strict")
    c = compare.compare_folders(rerun.parent, committed)["files"][f"{NB}_cpu.json"]
    assert code == 0
    assert c["leaves"]["total"] == c["leaves"]["bitwise"] > 0 and c["leaves"]["different"] == 0
    assert c["claims"] == 3 and c["verdict_changes"] == []
    assert "numerics identical" in out and "bitwise equality is expected" in out
    assert "1 file(s) compared: 1 bitwise equal; verdicts: all agree" in out


def test_a_perturbed_number_is_within_tolerance_or_different_by_rtol(runs, capsys):
    committed, rerun, doc = runs
    other = copy.deepcopy(doc)
    old = doc["results"]["selection"][0]["validation score"]
    other["results"]["selection"][0]["validation score"] = old * (1 + 1e-9)
    _rerun(rerun, other)
    loose = compare.compare_folders(rerun, committed, rtol=1e-6, atol=0)["files"][f"{NB}_cpu.json"]["leaves"]
    tight = compare.compare_folders(rerun, committed, rtol=1e-12, atol=0)["files"][f"{NB}_cpu.json"]["leaves"]
    assert (loose["within"], loose["different"]) == (1, 0)
    assert (tight["within"], tight["different"], tight["different_numbers"]) == (0, 1, 1)
    assert tight["first"] == [('results.selection[0]["validation score"]', old, old * (1 + 1e-9))]
    assert loose["bitwise"] == tight["bitwise"] == loose["total"] - 1
    # verdicts agree: 0; --strict wants every leaf bitwise equal: 1
    code, out = _run(capsys, rerun, "--against", committed, "--rtol", "1e-12", "--atol", "0")
    assert code == 0 and "1 different (1 numbers, 0 texts or other)" in out
    assert 'results.selection[0]["validation score"]: ' + repr(old) in out
    assert _run(capsys, rerun, "--against", committed, "--strict")[0] == 1


def test_leaves_count_texts_and_missing_keys_as_different():
    a = {"x": [1, 2.0, "a"], "y": {"z": None}, "gone": {"p": 1, "q": [2, 3]}}
    b = {"x": [1, 2.0, "b", 4], "y": {"z": None}}
    c = compare.compare_leaves(a, b, show=10)
    assert (c["total"], c["bitwise"], c["within"], c["different"], c["different_numbers"]) == (8, 3, 0, 5, 0)
    assert ("results.x[3]", "(absent)", 4) in c["first"] and ("results.gone.q[1]", 3, "(absent)") in c["first"]
    assert compare.compare_leaves({"v": 0.0}, {"v": -0.0})["within"] == 1  # equal, not the same bits
    assert compare.compare_leaves({"v": 1e-13}, {"v": 0.0}, rtol=0, atol=1e-12)["within"] == 1
    assert compare.compare_leaves({"v": True}, {"v": 1})["different"] == 1


def test_a_changed_verdict_fails_and_is_named(runs, capsys):
    committed, rerun, doc = runs
    other = copy.deepcopy(doc)
    row = other["results"]["claims"][0]
    assert row["verdict"] == "holds"
    row["verdict"] = "inconclusive"
    _rerun(rerun, other)
    code, out = _run(capsys, rerun, "--against", committed)
    assert code == 1
    assert 'results.claims: "A beats B" [Table 1]: holds (committed) → inconclusive (re-run)' in out
    assert "verdicts: 1 of 3 changed" in out
    n, changes = compare.verdict_changes(doc["results"], other["results"])
    assert n == 3 and [(ch["claim"], ch["verdicts"]) for ch in changes] == [("A beats B", ("holds", "inconclusive"))]
    # rows are matched by their claim, not their position; a missing row is a change
    other["results"]["claims"] = other["results"]["claims"][::-1]
    assert [ch["claim"] for ch in compare.verdict_changes(doc["results"], other["results"])[1]] == ["A beats B"]
    other["results"]["claims"] = doc["results"]["claims"][:2]
    n, changes = compare.verdict_changes(doc["results"], other["results"])
    assert n == 3 and changes[0]["verdicts"] == ("not testable here", None)


def test_numerics_differences_are_named_with_what_they_mean(runs, capsys):
    committed, rerun, doc = runs
    other = copy.deepcopy(doc)
    other["provenance"]["numerics"].update(threads=1, cpu_capability="AVX2")
    other["results"]["records"][0]["gini"] += 1e-3
    _rerun(rerun, other)
    code, out = _run(capsys, rerun, "--against", committed)
    assert code == 0  # the verdicts agree
    assert 'numerics differ: cpu capability "AVX512" vs "AVX2"; threads 2 vs 1 (committed vs re-run)' in out
    assert "bitwise equality is not expected" in out and "the verdicts should agree" in out
    d = compare.numerics_differences(doc["provenance"], other["provenance"])
    assert d["expect"] == "tolerance" and d["differ"] == [("cpu_capability", "AVX512", "AVX2"), ("threads", 2, 1)]
    # the same numerics but different numbers: a bug
    other["provenance"]["numerics"] = dict(NUMERICS)
    _rerun(rerun, other)
    code, out = _run(capsys, rerun, "--against", committed)
    assert "identical numerics but different numbers" in out and "a bug" in out
    # a file written before numerics were recorded: its threads and versions are still compared
    del other["provenance"]["numerics"]
    other["provenance"]["platform"]["torch_threads"] = 1
    d = compare.numerics_differences(doc["provenance"], other["provenance"])
    assert d["recorded"] == (True, False) and ("threads", 2, 1) in d["differ"]
    del other["provenance"]["platform"]["torch_threads"]
    d = compare.numerics_differences(doc["provenance"], other["provenance"])
    assert d["expect"] == "unknown" and "not recorded by the re-run" in d["meaning"]


def test_nothing_in_common_fails(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, out = _run(capsys, tmp_path / "b", "--against", tmp_path / "a")
    assert code == 1 and "nothing compared" in out


def test_provenance_records_the_numerics():
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        info = results.provenance({"device": "cpu"}, [0], None)
    finally:
        torch.set_num_threads(prev)
    num = info["numerics"]
    assert set(num) >= {"cpu_capability", "cpu_model", "torch", "numpy", "blas", "lapack", "mkldnn", "threads",
                        "interop_threads", "device", "cuda_device", "cudnn"}
    assert num["threads"] == 1 and results.numerics()["threads"] == torch.get_num_threads()
    assert num["interop_threads"] == torch.get_num_interop_threads()
    assert num["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert num["torch"] == torch.__version__ and num["device"] == "cpu"
    assert info["platform"]["torch_threads"] == 1 and "commit" in info  # the older keys stay
    if not torch.cuda.is_available():
        assert num["cuda_device"] is None and num["cudnn"] is None
    assert results.numerics({"device": None})["device"] is None  # recorded, not decided here
    assert num["fit_threads"] == (executor.current().threads or 1)  # the executor's, else the process's
    text = json.dumps(num)
    assert not re.search(r"(?<![\w.:/])/(?:home|root|tmp|work|Users|mnt|opt|var|usr|project)/", text), text


def test_numerics_never_fail(monkeypatch):
    def boom(*_):
        raise RuntimeError("no config here")

    monkeypatch.setattr(torch.__config__, "show", boom)
    monkeypatch.setattr(torch.__config__, "parallel_info", boom)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", boom)
    num = results.numerics({})
    assert num["cpu_capability"] is None and num["blas"] is None and num["parallel_backend"] is None
    assert num["threads"] == torch.get_num_threads()


def test_a_parameter_one_run_lacks_is_shown_as_absent(runs, capsys):
    committed, rerun, doc = runs
    other = copy.deepcopy(doc)
    other["params"]["num_workers"] = 0  # a setting the committed run did not record
    _rerun(rerun, other)
    code, out = _run(capsys, rerun, "--against", committed)
    assert code == 0 and "num_workers (absent) vs 0" in out
