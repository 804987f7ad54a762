"""results/REPORT.md from results JSON files, and the check that committed outputs are current."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from robust_saliency import claims, report
from robust_saliency.cache import _module_file


def _results(folder, name, rows, commit="abc123def456", dirty=False):
    doc = {"notebook": name, "profile": "cpu", "params": {}, "seeds": [0, 1, 2],
           "provenance": {"commit": commit, "dirty": dirty, "code_changes": ["lib/x.py"] if dirty else [],
                          "versions": {"torch": "2.14.1"}, "platform": {"machine": "x86_64", "cpu_count": 2,
                                                                        "torch_threads": 2, "cuda": None},
                          "date_utc": "2026-12-07T00:00:00+00:00", "wall_time_s": 12.5},
           "results": {"claims": json.loads(json.dumps(rows, default=float))}}
    path = Path(folder) / f"{name}_cpu.json"
    path.write_text(json.dumps(doc))
    return path


def _rows():
    t = claims.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    return claims.family([
        claims.claim("A beats B | by far", "Table 1", "0.68 ± 0.04", test=t, paper_effect=0.02),
        claims.claim("A is cheap", "Sec. 5", "×1.2", holds=True, beyond_paper=True),
        claims.claim("A games its own metric", "Table 2", "1.0 ± 0.0", test=t, not_testable="scores its own objective")])


def test_the_report_lists_every_claim_with_its_tally_links_and_environment(tmp_path):
    _results(tmp_path, "01_local_gradient_alignment", _rows())
    _results(tmp_path, "02_relex", _rows()[:1])
    (tmp_path / "00_tour_cpu.json").write_text(json.dumps({"notebook": "00_tour", "results": {}}))
    path = report.write_report(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "REPORT.md"
    assert text.count("A beats B \\| by far") == 2  # one row per notebook, the pipe escaped
    assert "## P1 — Joo et al., AAAI 2023" in text and "## P2 — Lim et al., CVPR 2021" in text
    assert "00_tour" not in text  # no claims table: not in the report
    assert "(../notebooks/01_local_gradient_alignment.ipynb)" in text and "(../figures/02_relex/)" in text
    assert "Commit `abc123def456`" in text and "torch 2.14.1" in text and "2 CPU(s)" in text
    assert "**not testable here**" in text and "not testable: scores its own objective" in text
    # the tally: P1 has 2 paper claims (1 holds, 1 not testable) and 1 beyond the paper
    line = next(ln for ln in text.splitlines() if ln.startswith("| P1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:] == ["1", "0", "0", "0", "1", "0", "1 holds"]
    assert "2 claims of the paper: 1 holds, 1 not testable here; 1 beyond the paper: 1 holds" in text
    with pytest.raises(ValueError, match="no results"):
        report.report(tmp_path / "none")


def test_notebook_modules_follow_the_imports_of_the_code_cells(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": ["from robust_saliency import plotting"]},
                    {"cell_type": "code", "source": ["from robust_saliency import claims, units\n",
                                                     "from robust_saliency.papers import p2\n",
                                                     "from robust_saliency.metrics import (\n    games)\n"]}]}
    path = tmp_path / "05_x.ipynb"
    path.write_text(json.dumps(nb))
    mods = report.notebook_modules(path)
    assert {"robust_saliency.claims", "robust_saliency.units", "robust_saliency.papers.p2",
            "robust_saliency.metrics.games"} <= set(mods)
    assert "robust_saliency.plotting" not in mods  # imported in a markdown cell only


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(root)})
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def test_stale_outputs_name_the_notebook_and_the_change(tmp_path):
    root = tmp_path
    for mod in ("robust_saliency", "robust_saliency.units"):  # the notebook's code: units imports nothing else
        src = _module_file(mod)
        dst = root / "lib" / Path(*mod.split("."))
        dst = dst / "__init__.py" if src.name == "__init__.py" else dst.with_suffix(".py")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    (root / "notebooks").mkdir()
    (root / "results").mkdir()
    nb = {"cells": [{"cell_type": "code", "source": ["from robust_saliency import units\n"]}]}
    (root / "notebooks" / "01_x.ipynb").write_text(json.dumps(nb))
    (root / "notebooks" / "01_x.yaml").write_text("cpu: {}\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    first = _git(root, "commit", "-qm", "code")
    assert report.stale_outputs(root) == ["notebooks/01_x.ipynb: no results/01_x_cpu.json: execute it (make reproduce)"]
    _results(root / "results", "01_x", _rows(), commit=first)
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "outputs")
    assert report.stale_outputs(root) == []  # executed at the last change of its code
    units = root / "lib" / "robust_saliency" / "units.py"
    code = units.read_text()
    units.write_text(code.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")  # docstring and comment only
    _git(root, "commit", "-qam", "docs in code")
    assert report.stale_outputs(root) == []
    units.write_text(code + "\nX = 1\n")  # code: stale
    _git(root, "commit", "-qam", "code change")
    assert "changed since: lib/robust_saliency/units.py" in report.stale_outputs(root)[0]
    units.write_text(code)
    _git(root, "commit", "-qam", "reverted")
    assert report.stale_outputs(root) == []
    (root / "notebooks" / "01_x.yaml").write_text("cpu: {n: 1}\n")
    _git(root, "commit", "-qam", "new settings")
    stale = report.stale_outputs(root)
    assert len(stale) == 1 and stale[0].startswith("notebooks/01_x.ipynb: results/01_x_cpu.json records commit")
    assert "new settings'" in stale[0] and stale[0].endswith("changed since: notebooks/01_x.yaml")
    (root / "README.md").write_text("docs only\n")  # not an input of the notebook: still stale, same change
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "docs")
    assert report.stale_outputs(root) == stale
    _results(root / "results", "01_x", _rows(), commit=_git(root, "rev-parse", "HEAD"), dirty=True)
    assert "comes from uncommitted code (lib/x.py)" in report.stale_outputs(root)[0]
    _results(root / "results", "01_x", _rows(), commit="0" * 40)
    assert "which this history does not have" in report.stale_outputs(root)[0]
