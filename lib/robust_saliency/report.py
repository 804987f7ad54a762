"""The claims report and the check that the committed outputs are current.

* ``report(results_dir)``: ``results/REPORT.md`` as text, built from the results JSON files the
  notebooks write (nothing typed by hand): per paper, a tally of the verdicts, its claims table,
  links to the executed notebook and its figures, the commit and the environment it ran on.
  ``write_report`` writes it atomically (``make reproduce`` ends with it).
* ``stale_outputs(root)``: the committed notebooks whose results JSON records a commit older than
  the last change to the library code or the settings file the notebook uses (or that ran on
  uncommitted code, or has no results): one message per problem, naming the notebook and the
  change.  ``make check-outputs`` fails when there is any.

``python -m robust_saliency.report`` writes the report; ``--check`` runs the check.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cache as _cache
from . import claims as _claims
from .results import repo_root

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

__all__ = ["PAPERS", "claims_markdown", "report", "write_report", "notebook_modules", "notebook_inputs", "stale_outputs"]

# The notebook of each paper, as the README lists them, and notebook 05 (claims of ours only).
PAPERS = {
    "01_local_gradient_alignment": "P1 — Joo et al., AAAI 2023: local gradient alignment",
    "02_relex": "P2 — Lim et al., CVPR 2021: RelEx",
    "03_norm_regularized_at": "P3 — CVPR 2024: norm-regularized adversarial training",
    "04_marginal_density": "P4 — smoothing the input marginal density",
    "05_unified_benchmark": "Common ground — every method under every paper's metrics (our pairwise claims)",
}
_PACKAGE = _cache.__name__.rpartition(".")[0]


def _cell(v):
    """A value as one markdown table cell (pipes escaped, one line)."""
    text = "" if v is None else str(v)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _num(v, digits=3, signed=True):
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:+.{digits}g}" if signed else f"{v:.{digits}g}"


def _interval(ci):
    return "" if not ci else f"[{_num(ci[0])}, {_num(ci[1])}]"


_COLUMNS = ("claim", "paper", "status", "paper effect", "ours (mean ± std over seeds)", "difference [90% CI]",
            "p", "adjusted p", "seeds", "resolvable", "seeds needed", "verdict", "note")


def _row(r):
    note = r.get("note") or ""
    if r.get("not testable"):
        note = f"not testable: {r['not testable']}" + (f"; {note}" if note else "")
    diff = _num(r.get("difference"))
    if r.get("90% CI"):
        diff += f" {_interval(r['90% CI'])}"
    return (r["claim"], r["paper"], r.get("status", "paper"), _num(r.get("paper effect")),
            r.get("ours (mean ± std over seeds)"), diff, _num(r.get("p (one-sided)"), signed=False),
            _num(r.get("adjusted p"), signed=False), r.get("seeds"), _num(r.get("resolvable difference"), signed=False),
            _claims.fmt_seeds(r.get("seeds needed")), f"**{r['verdict']}**", note)


def _table(rows):
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(_cell(v) for v in _row(r)) + " |" for r in rows]
    return lines


def claims_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A claims table (``claims.claim`` rows) as the report's markdown table."""
    return "\n".join(_table(rows))


def _tally_table(docs):
    head = ["paper", *_claims.VERDICTS, "beyond the paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, doc in docs.items():
        rows = doc["results"]["claims"]
        counts = _claims.tally(rows, "paper")
        ours = _claims.tally(rows, "beyond the paper")
        lines.append("| " + " | ".join([_cell(PAPERS.get(name, name).split(" — ")[0]), *map(str, counts.values()),
                                        ", ".join(f"{n} {v}" for v, n in ours.items() if n) or "0"]) + " |")
    return lines


def _environment(prov):
    v, plat = prov.get("versions") or {}, prov.get("platform") or {}
    pkgs = ", ".join(f"{k} {val}" for k, val in v.items())
    machine = f"{plat.get('machine', '?')}, {plat.get('cpu_count', '?')} CPU(s), {plat.get('torch_threads', '?')} torch " \
              f"thread(s), {'GPU ' + plat['cuda'] if plat.get('cuda') else 'no GPU'}"
    return pkgs, machine


def report(results_dir: str | os.PathLike | None = None, profile: str = "cpu") -> str:
    """The claims report (markdown) of every ``<notebook>_<profile>.json`` in ``results_dir``
    (default ``<repo>/results``) that holds a claims table, in notebook order."""
    folder = Path(results_dir) if results_dir is not None else repo_root() / "results"
    docs = {}
    for path in sorted(folder.glob(f"[0-9][0-9]_*_{profile}.json")):
        doc = json.loads(path.read_text())
        if doc.get("results", {}).get("claims"):
            docs[doc["notebook"]] = doc
    if not docs:
        raise ValueError(f"no results with a claims table in {folder} for profile={profile!r}")
    out = ["# Claims report", "",
           f"Every claim tested by the notebooks at the `{profile}` profile, built by "
           "`python -m robust_saliency.report` from `results/<notebook>_" + profile + ".json` "
           "(`make reproduce` writes it last). Verdicts come from paired one-sided t-tests over seeds, "
           f"Holm-adjusted over each notebook's tested rows at α = {_claims.ALPHA} "
           "(`robust_saliency.claims`): **holds**, **contradicted**, **smaller than reported** (the "
           "paper's effect is ruled out), **inconclusive** (`seeds needed`: how many seeds would resolve "
           "the paper's effect, or ours where the paper gives none, at the observed spread), **not "
           "testable here** (decided by construction; the note says why). Rows marked *beyond the paper* "
           "are our claims, not the paper's, and are kept out of its tally. The difference comes with its "
           "90% interval (bounds: the one-sided 95% bounds).", "", "## Tally (the papers' own claims)", ""]
    out += _tally_table(docs)
    for name, doc in docs.items():
        prov = doc.get("provenance") or {}
        pkgs, machine = _environment(prov)
        rows = doc["results"]["claims"]
        commit = prov.get("commit") or "unknown"
        out += ["", f"## {PAPERS.get(name, name)}", "",
                f"Notebook: [`notebooks/{name}.ipynb`](../notebooks/{name}.ipynb) · figures: "
                f"[`figures/{name}/`](../figures/{name}/) · numbers: [`results/{name}_{profile}.json`]"
                f"({name}_{profile}.json)", "",
                f"Commit `{commit[:12]}`{' (uncommitted changes)' if prov.get('dirty') else ''}, "
                f"seeds {doc.get('seeds')}, {prov.get('date_utc', '?')}, "
                f"wall time {prov.get('wall_time_s', '?')} s; {machine}; {pkgs}.", "",
                _claims.tally_text(rows) + ".", ""]
        out += _table(rows)
    return "\n".join(out) + "\n"


def write_report(results_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                 profile: str = "cpu") -> Path:
    """Write ``report(results_dir, profile)`` atomically to ``out`` (default
    ``<results_dir>/REPORT.md``); return the path."""
    folder = Path(results_dir) if results_dir is not None else repo_root() / "results"
    return _cache.atomic_write_bytes(report(folder, profile).encode(), Path(out) if out else folder / "REPORT.md")


# ----------------------------------------------------------------------------------------------
# Are the committed outputs current?
# ----------------------------------------------------------------------------------------------

_IMPORT = re.compile(rf"^[ \t]*(?:from[ \t]+({_PACKAGE}(?:\.[\w.]+)?)[ \t]+import[ \t]+(\([^)]*\)|[\w \t,]+)"
                     rf"|import[ \t]+({_PACKAGE}[\w.]*))", re.MULTILINE)


def notebook_modules(notebook: str | os.PathLike) -> list[str]:
    """The package modules a notebook's code cells import (``from robust_saliency import a, b``,
    ``from robust_saliency.papers import p1``, ``import robust_saliency.x``), with everything
    they import (``cache.module_closure``)."""
    nb = json.loads(Path(notebook).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    mods = set()
    for frm, names, imp in _IMPORT.findall(code):
        if imp:
            mods.add(imp)
            continue
        mods.add(frm)
        for n in re.split(r"[\s,()]+", names):
            if n and _cache._module_file(f"{frm}.{n}") is not None:
                mods.add(f"{frm}.{n}")
    out = set()
    for m in mods:
        out.update(_cache.module_closure(m))
    return sorted(out)


def notebook_inputs(root: str | os.PathLike, notebook: str | os.PathLike) -> list[str]:
    """Repository paths of what a committed notebook's outputs depend on: the source files of
    ``notebook_modules`` and the settings file beside the notebook (``<notebook>.yaml``)."""
    root, notebook = Path(root).resolve(), Path(notebook).resolve()
    paths = []
    for m in notebook_modules(notebook):
        rel = Path("lib", *m.split("."))
        paths.append(str(rel / "__init__.py") if (root / rel / "__init__.py").is_file() else str(rel) + ".py")
    settings = Path(notebook).with_suffix(".yaml")
    if settings.is_file():
        paths.append(str(settings.relative_to(root)))
    return sorted(p for p in paths if (root / p).is_file())


def _git(root, *args):
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return out.returncode, out.stdout.strip()


def _code_of(source):
    """``ast.dump`` of Python ``source`` without its docstrings (None if it does not parse): what
    running it depends on, so that a change to docstrings or comments alone is no change."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _same_code(root, old, new, path):
    """Whether ``path`` (a .py file) runs the same code at commits ``old`` and ``new``."""
    if not path.endswith(".py"):
        return False
    c1, a = _git(root, "show", f"{old}:{path}")
    c2, b = _git(root, "show", f"{new}:{path}")
    return c1 == 0 and c2 == 0 and _code_of(a) is not None and _code_of(a) == _code_of(b)


def stale_outputs(root: str | os.PathLike | None = None, profile: str = "cpu") -> list[str]:
    """Messages, one per committed notebook whose outputs are not current: no results JSON, a run
    on uncommitted code, a recorded commit unknown to this history, or a recorded commit older than
    the last commit changing its inputs (``notebook_inputs``) in more than docstrings and comments.
    Empty when every one is current."""
    root = Path(root) if root is not None else repo_root()
    problems = []
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        name = nb.stem
        res = root / "results" / f"{name}_{profile}.json"
        if not res.is_file():
            problems.append(f"notebooks/{nb.name}: no results/{res.name}: execute it (make reproduce)")
            continue
        prov = json.loads(res.read_text()).get("provenance") or {}
        commit = prov.get("commit") or "unknown"
        if prov.get("dirty"):
            problems.append(f"notebooks/{nb.name}: results/{res.name} comes from uncommitted code "
                            f"({', '.join(prov.get('code_changes') or [])}): re-execute it at a commit")
        code, _ = _git(root, "cat-file", "-e", f"{commit}^{{commit}}")
        if commit == "unknown" or code != 0:
            problems.append(f"notebooks/{nb.name}: results/{res.name} records commit {commit[:12]}, "
                            f"which this history does not have")
            continue
        inputs = notebook_inputs(root, nb)
        _, last = _git(root, "log", "-1", "--format=%H", "--", *inputs)
        if not last:
            continue
        code, _ = _git(root, "merge-base", "--is-ancestor", last, commit)
        if code != 0:
            _, changed = _git(root, "diff", "--name-only", commit, last, "--", *inputs)
            changed = [p for p in changed.splitlines() if not _same_code(root, commit, last, p)]
            if not changed:  # docstrings and comments only: the outputs cannot have changed
                continue
            _, subject = _git(root, "log", "-1", "--format=%h %s", last)
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            problems.append(f"notebooks/{nb.name}: results/{res.name} records commit {commit[:12]}, older than "
                            f"the last change to what it uses, {subject[:100]!r}; changed since: "
                            f"{shown or '(see git log)'}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robust_saliency.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check that the committed outputs are current")
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_outputs(profile=args.profile)
        for p in problems:
            print(p)
        print(f"{len(problems)} notebook output problem(s)" if problems else "every notebook's outputs are current")
        return 1 if problems else 0
    path = write_report(profile=args.profile)
    print(f"wrote {path.relative_to(repo_root()) if path.is_relative_to(repo_root()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
