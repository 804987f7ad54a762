"""The shape of every committed notebook (what ``make reproduce`` writes and readers open): a
``parameters`` cell for papermill, executed outputs without errors, thin code cells (library
calls, tables, figures: no training loop, no private library names), and, for the paper
notebooks, a claims table with verdicts that ends in ``write_results``.

Run it alone with ``.venv/bin/python -m pytest tests/test_notebooks.py``."""
import json
import re
from pathlib import Path

import pytest

from robust_saliency import claims

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAPER_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("00_")]
MAX_CELL_LINES = 20  # code cells other than the parameters cell
TRAINING_LOOP = re.compile(r"for\s+\w+\s+in\s+range\(\s*(num_)?epochs|\.backward\(\)|optimizer\.step\(\)")
PRIVATE_NAME = re.compile(r"\b(?:p[1-4]|plotting|claims|experiments|runs|profiles|metrics|attributions)\._[a-z]\w*")


def problems(nb, paper=False):
    """What is wrong with notebook ``nb`` (a parsed .ipynb), as a list of sentences."""
    cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    src = ["".join(c.get("source", "")) for c in code]
    out = []
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        out.append(f"{len(params)} cells tagged 'parameters' (papermill needs exactly one)")
    if any(c.get("execution_count") is None for c in code):
        out.append("code cells without outputs (commit the executed notebook)")
    if any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
        out.append("cells with error outputs")
    long = [i for i, (c, s) in enumerate(zip(code, src)) if c not in params and len(s.splitlines()) > MAX_CELL_LINES]
    if long:
        out.append(f"code cells {long} longer than {MAX_CELL_LINES} lines (move the work into the library)")
    if any(TRAINING_LOOP.search(s) for s in src):
        out.append("a training loop lives in the notebook")
    private = sorted({m for s in src for m in PRIVATE_NAME.findall(s)})
    if private:
        out.append(f"private library names used: {private}")
    if paper:
        text = json.dumps([o for c in code for o in c.get("outputs", [])])
        verdicts = sum(text.count(v) for v in claims.VERDICTS)
        if verdicts < 3:
            out.append(f"no claims table with verdicts in the outputs ({verdicts} verdicts)")
        if not any("write_results" in s for s in src[-3:]):
            out.append("the notebook does not end by writing its results (experiments.write_results)")
    return out


READING = re.compile(r"^\*\*Reading(?: \((\w+) profile, commit `([0-9a-f]{7,40})`\))?\.\*\*")


def reading_labels(nb):
    """(cell index, profile, commit) of every reading cell (a markdown cell opening with
    "**Reading"), profile and commit None where it carries no label."""
    out = []
    for i, c in enumerate(nb.get("cells", [])):
        m = READING.match("".join(c.get("source", "")).lstrip()) if c.get("cell_type") == "markdown" else None
        if m:
            out.append((i, m.group(1), m.group(2)))
    return out


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_readings_name_the_run_they_read(path):
    """A reading quotes the numbers of one run: it opens with "**Reading (cpu profile, commit
    `abc1234`).**", the run whose results are committed (``results/<notebook>_cpu.json``).  After a
    re-execution, re-read each reading against the new tables and update its label."""
    results = path.parents[1] / "results" / f"{path.stem}_cpu.json"
    if not results.exists():
        pytest.skip(f"{results.name} is not committed")
    prov = json.loads(results.read_text())["provenance"]
    labels = reading_labels(json.loads(path.read_text()))
    assert labels, "no reading cells"
    stale = [(i, p, c) for i, p, c in labels if p != prov["profile"] or not c or not prov["commit"].startswith(c)]
    assert not stale, (f"readings {stale} do not name the committed run ({prov['profile']} profile, commit "
                       f"{prov['commit'][:7]}): re-read them against the new tables, then update their labels")


def test_reading_labels_are_parsed():
    nb = {"cells": [{"cell_type": "markdown", "source": "**Reading (cpu profile, commit `58494db`).** x"},
                    {"cell_type": "markdown", "source": ["**Reading.** y"]},
                    {"cell_type": "code", "source": "**Reading.**"}]}
    assert reading_labels(nb) == [(0, "cpu", "58494db"), (1, None, None)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    assert problems(json.loads(path.read_text()), paper=path in PAPER_NOTEBOOKS) == []


def _nb(*cells):
    return {"cells": [{"cell_type": "code", "metadata": m, "source": s, "execution_count": n,
                       "outputs": o} for s, m, n, o in cells]}


def test_the_checker_finds_each_problem():
    ok = ("x = 1", {"tags": ["parameters"]}, 1, [])
    assert problems(_nb(ok)) == []
    found = problems(_nb(("x = 1", {}, None, [{"output_type": "error"}]),
                         ("for e in range(epochs):\n    loss.backward()", {}, 2, []),
                         ("p4._hp_text(v)\n" + "y = 2\n" * 25, {}, 3, [])), paper=True)
    text = " | ".join(found)
    for what in ("'parameters'", "without outputs", "error outputs", "longer than", "training loop",
                 "p4._hp_text", "claims table", "write_results"):
        assert what in text, what
