"""Batch re-execution of one notebook over a parameter grid (papermill), one executed copy per point.

``python -m robust_saliency.sweep NOTEBOOK --grid grid.yaml [--out out/sweep] [--profile smoke]``
(``make sweep NOTEBOOK=... GRID=...``).  The grid file is YAML: a mapping from parameter names of
the notebook's ``parameters`` cell to lists of values, whose product is the grid, e.g.::

    seeds: [[0], [1], [2]]     # a list-valued parameter: a list of lists
    lam_sweep: [[0.1], [1.0]]

or ``points:`` with a list of mappings (each one point), or both (the points after the product).

Each point runs in its own folder ``<out>/<notebook>/<point>/``, laid out as the repository is
(``notebooks/<notebook>.ipynb`` executed there beside a copy of its settings file, ``results/``,
``figures/``: the library writes under ``ROBUST_SALIENCY_ROOT``, which is set to that folder), and
shares the repository's model cache (``ROBUST_SALIENCY_CACHE``), so a point that repeats a
configuration loads its fits.  ``point.json`` records the point's parameters, profile, status,
wall time and error; a point whose ``point.json`` says done with the same parameters and profile is
skipped.  Failed points are reported with their error after the others finish (exit status 1).

Points run on the executor (``executor.current()``: one after the other here by default; Dask
workers with ``ROBUST_SALIENCY_WORKERS`` or a scheduler with ``ROBUST_SALIENCY_SCHEDULER``).  When
points run in parallel, each point's notebook runs its own fits in its kernel with one torch
thread (the workers already fill the cores); run one after the other, a point's notebook uses the
executor the environment asks for.  The summary table (``summary.csv`` beside the points) gathers
each point's parameters, status, wall time, its claims tally and any ``--keys`` (dotted paths
into its results JSON, e.g. ``results.block_chosen.marginal_density.lam``).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import claims as _claims
from . import executor as _executor
from .cache import atomic_write_bytes
from .results import default_cache_dir, repo_root

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

__all__ = ["load_grid", "grid_points", "point_name", "notebook_parameters", "run_point", "sweep", "summary", "main"]

_SLUG = re.compile(r"[^A-Za-z0-9.=_-]+")


def load_grid(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The points of the grid file at ``path`` (module docstring), in order; ValueError naming the
    problem for a missing file, a value that is not a list, an empty list or a bad ``points``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grid={str(path)!r}: no such file; accepted: a YAML file mapping parameter names to lists")
    grid = yaml.safe_load(path.read_text()) or {}
    if not isinstance(grid, dict):
        raise ValueError(f"grid={str(path)!r} holds a {type(grid).__name__}; accepted: a mapping of parameter "
                         f"names to lists of values (and optionally 'points': a list of mappings)")
    return grid_points(grid)


def grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The product of ``grid``'s lists (in the file's order), then its ``points``."""
    grid = dict(grid)
    extra = grid.pop("points", [])
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid parameter {name!r} = {values!r}; accepted: a non-empty list of values "
                             f"(a list-valued parameter takes a list of lists)")
    if not isinstance(extra, list) or not all(isinstance(p, dict) for p in extra):
        raise ValueError(f"grid 'points' = {extra!r}; accepted: a list of mappings of parameter names to values")
    out = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else []
    out += [dict(p) for p in extra]
    if not out:
        raise ValueError("the grid is empty; accepted: at least one parameter with values, or 'points'")
    return out


def point_name(params: Mapping[str, Any]) -> str:
    """A folder name for a point: its ``name=value`` pairs (shortened) and a hash of all of them."""
    text = json.dumps(params, sort_keys=True, default=str)
    short = ",".join(f"{k}={json.dumps(v, default=str)}" for k, v in params.items())
    slug = _SLUG.sub("", short.replace(",", "_").replace(" ", ""))[:60] or "point"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def notebook_parameters(notebook: str | os.PathLike) -> list[str]:
    """The names the notebook's ``parameters`` cell assigns (read with ``ast``: papermill's own
    reader skips a line whose comment holds a quote); ValueError if it has no such cell."""
    import ast

    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"notebook={str(notebook)!r} has no cell tagged 'parameters'; accepted: a papermill notebook")
    names = []
    for node in ast.parse("".join(cells[0]["source"])).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def _point_env(folder, profile, cache, parallel):
    env = {"ROBUST_SALIENCY_ROOT": str(folder), "ROBUST_SALIENCY_CACHE": str(cache),
           "ROBUST_SALIENCY_PROFILE": profile, "ROBUST_SALIENCY_PROGRESS": "0"}
    if parallel:  # the sweep's workers fill the cores: one torch thread, fits in the kernel
        env.update({_executor.WORKERS_ENV: None, _executor.SCHEDULER_ENV: None, _executor.THREADS_ENV: "1",
                    "OMP_NUM_THREADS": "1"})
    return env


def _apply_env(values):
    """Set each variable of ``values`` in this process's environment (None: unset it)."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_point(job: Mapping[str, Any]) -> dict[str, Any]:
    """Execute one point (``job``: ``notebook``, ``folder``, ``params``, ``profile``, ``cache``,
    ``parallel``) with papermill into ``folder``; returns its record (also written as
    ``point.json``).  A failing notebook raises after its record (status "failed") is written."""
    import papermill

    notebook, folder = Path(job["notebook"]), Path(job["folder"])
    nb_dir = folder / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    settings = notebook.with_suffix(".yaml")
    if settings.is_file():  # the notebook reads its settings beside itself, under ROBUST_SALIENCY_ROOT
        shutil.copy2(settings, nb_dir / settings.name)
    record = {"notebook": notebook.name, "params": job["params"], "profile": job["profile"], "status": "running"}
    env = _point_env(folder.resolve(), job["profile"], job["cache"], job["parallel"])
    saved = {k: os.environ.get(k) for k in env}
    start = time.perf_counter()
    try:
        _apply_env(env)
        papermill.execute_notebook(str(notebook), str(nb_dir / notebook.name), parameters=dict(job["params"]),
                                   kernel_name="python3", cwd=str(nb_dir), progress_bar=False, log_output=False)
        record.update(status="done", error=None)
    except Exception as err:  # noqa: BLE001 - recorded, then raised for the executor to report
        record.update(status="failed", error=f"{type(err).__name__}: {str(err).strip()[-2000:]}")
        raise
    finally:
        _apply_env(saved)
        record["wall_time_s"] = round(time.perf_counter() - start, 1)
        atomic_write_bytes(json.dumps(record, indent=1, default=str).encode(), folder / "point.json")
    return record


def _done(folder, params, profile):
    try:
        rec = json.loads((folder / "point.json").read_text())
    except (OSError, ValueError):
        return False
    same = json.dumps(rec.get("params"), sort_keys=True, default=str) == json.dumps(params, sort_keys=True, default=str)
    return rec.get("status") == "done" and same and rec.get("profile") == profile


def sweep(notebook: str | os.PathLike, points: Sequence[Mapping[str, Any]], out: str | os.PathLike | None = None,
          profile: str = "smoke", keys: Sequence[str] = (), progress: bool = True) -> pd.DataFrame:
    """Execute ``notebook`` at every point of ``points`` (parameter dicts) at ``profile`` into
    ``<out>/<notebook>/<point>/`` (default out: ``<repo>/out/sweep``), the points already done
    skipped, through the executor; write and return the summary (``summary``).  Bad parameters
    stop it before any point runs; if some points fail, the others finish, the summary is written
    and ``executor.JobsFailed`` names each failed point and its error."""
    notebook = Path(notebook)
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise ValueError(f"notebook={str(notebook)!r} is not a notebook file; accepted: a path to an .ipynb")
    from .profiles import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not known; accepted: {list(PROFILES)}")
    known = notebook_parameters(notebook)
    for p in points:
        bad = sorted(set(p) - set(known))
        if bad:
            raise ValueError(f"grid parameters {bad} are not in {notebook.name}'s parameters cell; accepted: {known}")
        if "profile" in p:
            raise ValueError("grid parameter 'profile': pass the profile with --profile, not in the grid")
    base = (Path(out) if out is not None else repo_root() / "out" / "sweep") / notebook.stem
    ex = _executor.current()
    cache = default_cache_dir().resolve()
    jobs, labels, skipped = [], [], 0
    for p in points:
        folder = base / point_name(p)
        if _done(folder, p, profile):
            skipped += 1
            continue
        jobs.append({"notebook": str(notebook.resolve()), "folder": str(folder.resolve()), "params": dict(p),
                     "profile": profile, "cache": str(cache), "parallel": ex.parallel})
        labels.append(folder.name)
    if skipped and progress:
        print(f"{skipped} of {len(points)} point(s) already done: skipped", file=sys.stderr)
    failed = None
    try:
        _executor.run(run_point, jobs, labels, desc=f"{notebook.stem} points", progress=progress, executor=ex)
    except _executor.JobsFailed as err:
        failed = err
    table = summary(base, keys)
    if failed is not None:
        raise failed
    return table


def _lookup(doc, key):
    for part in key.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.lstrip("-").isdigit() and -len(doc) <= int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc if not isinstance(doc, (dict, list)) else json.dumps(doc, default=str)


def summary(base: str | os.PathLike, keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per point folder under ``base``: its parameters, status, wall time, error, the
    claims tally of its results JSON (paper claims per verdict) and each of ``keys`` (dotted
    paths into the results JSON); written atomically to ``<base>/summary.csv``."""
    import pandas as pd

    base, rows = Path(base), []
    for rec_path in sorted(base.glob("*/point.json")):
        rec = json.loads(rec_path.read_text())
        row = {"point": rec_path.parent.name, **{f"param {k}": json.dumps(v) if isinstance(v, (list, dict)) else v
                                                  for k, v in rec["params"].items()},
               "status": rec["status"], "wall time (s)": rec.get("wall_time_s"), "error": rec.get("error")}
        stem = Path(rec["notebook"]).stem
        res = rec_path.parent / "results" / f"{stem}_{rec['profile']}.json"
        doc = json.loads(res.read_text()) if rec["status"] == "done" and res.is_file() else None
        if doc is not None:
            claim_rows = (doc.get("results") or {}).get("claims") or []
            row.update({f"paper claims {v}": n for v, n in _claims.tally(claim_rows, "paper").items()})
            row.update({k: _lookup(doc, k) for k in keys})
        rows.append(row)
    table = pd.DataFrame(rows)
    if rows:
        atomic_write_bytes(table.to_csv(index=False).encode(), base / "summary.csv")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robust_saliency.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="the notebook to execute, e.g. notebooks/04_marginal_density.ipynb")
    parser.add_argument("--grid", required=True, help="YAML grid file (parameter name -> list of values)")
    parser.add_argument("--out", default=None, help="output folder (default out/sweep under the repository)")
    parser.add_argument("--profile", default="smoke", help="profile of every point (default smoke)")
    parser.add_argument("--keys", nargs="*", default=[], help="dotted paths into each results JSON for the summary")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        table = sweep(args.notebook, load_grid(args.grid), args.out, args.profile, args.keys, not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    except _executor.JobsFailed as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        _executor.shutdown()
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 160):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
