"""A re-run against the committed results: number by number, verdict by verdict, and why they differ.

``python -m robust_saliency.compare OTHER [--against results/] [--rtol 1e-6] [--atol 1e-12] [--strict]``
(``make compare RERUN=path``).  ``OTHER`` is the results folder of a re-run, or the root of the
clone it ran in (its ``results/``), or one results JSON file.  For every
``<notebook>_<profile>.json`` present in both folders:

* the leaves of ``results`` (every number, text, flag and null, claims rows included), counted as
  bitwise equal, equal within the tolerance (``|a - b| <= atol + rtol * max(|a|, |b|)``, numbers
  only) or different, with the first differing paths and both values;
* every claims row (a list of dicts with ``claim`` and ``verdict``, as ``claims.family`` writes
  them, e.g. ``results["claims"]``), matched by its claim text: each verdict that changed;
* the fields of ``provenance["numerics"]`` (``results.numerics``) that differ between the two runs
  -- what explains the differences -- and what that means: the same numerics mean bitwise-equal
  numbers are expected (a difference is a bug); different numerics (thread count, CPU
  capability, library versions, device) mean floating-point differences are expected, amplified
  by training, and only the verdicts should agree.

The exit code is 0 when every verdict agrees (with ``--strict``: and every leaf is bitwise
equal), 1 otherwise or when no file is in both folders.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import repo_root

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["RTOL", "ATOL", "SHOW", "results_folder", "compare_leaves", "claim_tables", "verdict_changes",
           "numerics_differences", "compare_docs", "compare_folders", "format_comparison", "main"]

RTOL = 1e-6    # default relative tolerance of "equal within tolerance"
ATOL = 1e-12   # default absolute tolerance (for values at or near zero)
SHOW = 5       # differing leaves named per file
LABELS = ("committed", "re-run")  # the --against folder, then OTHER

_ABSENT = type("_Absent", (), {"__repr__": lambda self: "(absent)"})()
_IDENT = re.compile(r"[A-Za-z_]\w*")


# ----------------------------------------------------------------------------------------------
# Leaves
# ----------------------------------------------------------------------------------------------

def _join(path, key):
    return f"{path}.{key}" if _IDENT.fullmatch(key) else f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _leaves(x, path):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, _join(path, str(k)))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    elif x is not _ABSENT:
        yield path, x


def _pairs(a, b, path):
    """``(path, a_leaf, b_leaf)`` over the union of both trees; ``_ABSENT`` where a side has none."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            yield from _pairs(a.get(k, _ABSENT), b.get(k, _ABSENT), _join(path, str(k)))
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            yield from _pairs(a[i] if i < len(a) else _ABSENT, b[i] if i < len(b) else _ABSENT, f"{path}[{i}]")
    elif isinstance(a, (dict, list)) or isinstance(b, (dict, list)):  # the structure differs
        yield from ((p, v, _ABSENT) for p, v in _leaves(a, path))
        yield from ((p, _ABSENT, v) for p, v in _leaves(b, path))
    else:
        yield path, a, b


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _classify(a, b, rtol, atol):
    """"bitwise", "within" (numbers equal within the tolerance) or "different"."""
    if a is _ABSENT or b is _ABSENT:
        return "different"
    if _is_num(a) and _is_num(b):
        if type(a) is type(b) and (a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))
                                   or isinstance(a, float) and math.isnan(a) and math.isnan(b)):
            return "bitwise"
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) <= atol + rtol * max(abs(a), abs(b)):
            return "within"
        return "different"
    return "bitwise" if type(a) is type(b) and a == b else "different"


def compare_leaves(a: object, b: object, rtol: float = RTOL, atol: float = ATOL, show: int = SHOW,
                   root: str = "results") -> dict[str, Any]:
    """Leaf-by-leaf comparison of two JSON trees: counts ``total``, ``bitwise``, ``within`` (numbers
    equal within ``atol + rtol * max(|a|, |b|)`` but not bitwise) and ``different`` (of which
    ``different_numbers`` are two numbers, the rest texts, flags, nulls or a leaf one side lacks),
    and ``first``: the first ``show`` differing leaves as ``(path, a, b)`` (``"(absent)"`` for a
    missing one)."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol={rtol!r}, atol={atol!r} are not valid; accepted: numbers >= 0")
    out = {"total": 0, "bitwise": 0, "within": 0, "different": 0, "different_numbers": 0, "first": []}
    for path, x, y in _pairs(a, b, root):
        kind = _classify(x, y, rtol, atol)
        out["total"] += 1
        out[kind] += 1
        if kind == "different":
            out["different_numbers"] += _is_num(x) and _is_num(y)
            if len(out["first"]) < show:
                out["first"].append((path, repr(x) if x is _ABSENT else x, repr(y) if y is _ABSENT else y))
    return out


# ----------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------

def _is_claims(x):
    return isinstance(x, list) and bool(x) and all(isinstance(r, dict) and "claim" in r and "verdict" in r
                                                   for r in x)


def claim_tables(results: object, root: str = "results") -> dict[str, list[dict[str, Any]]]:
    """``{path: rows}``: every claims table in a results tree (a list of rows with ``claim`` and
    ``verdict``, as ``claims.family`` returns them; the notebooks store theirs as ``claims``)."""
    found = {}

    def walk(x, path):
        if _is_claims(x):
            found[path] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, _join(path, str(k)))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")

    walk(results, root)
    return found


def _keyed(rows):
    """``{(claim text, occurrence): row}``: rows keyed by their text (a repeated text numbered)."""
    seen, out = {}, {}
    for r in rows:
        text = str(r.get("claim"))
        out[(text, seen.get(text, 0))] = r
        seen[text] = seen.get(text, 0) + 1
    return out


def verdict_changes(a: object, b: object) -> tuple[int, list[dict[str, Any]]]:
    """``(rows compared, changes)`` between the claims tables of two results trees.  Rows are
    matched by their claim text (rows whose text changed are paired in order when both sides have
    as many of them).  A change is a dict: ``table``, ``claim``, ``paper``, ``verdicts`` (a's,
    b's: None where a side lacks the row) and ``adjusted_p`` (a's, b's)."""
    ta, tb = claim_tables(a), claim_tables(b)
    compared, changes = 0, []
    for table in [*ta, *(t for t in tb if t not in ta)]:
        ka, kb = _keyed(ta.get(table, [])), _keyed(tb.get(table, []))
        pairs = [(ka[k], kb[k]) for k in ka if k in kb]
        only_a = [ka[k] for k in ka if k not in kb]
        only_b = [kb[k] for k in kb if k not in ka]
        if len(only_a) == len(only_b):
            pairs += list(zip(only_a, only_b))
        else:
            pairs += [(r, None) for r in only_a] + [(None, r) for r in only_b]
        for ra, rb in pairs:
            compared += 1
            va, vb = (None if r is None else r.get("verdict") for r in (ra, rb))
            text_a, text_b = (None if r is None else str(r.get("claim")) for r in (ra, rb))
            if va != vb or ra is None or rb is None:
                claim = text_a if text_b in (None, text_a) else text_b if text_a is None \
                    else f"{text_a} / now: {text_b}"
                changes.append({"table": table, "claim": claim, "paper": (ra or rb).get("paper"),
                                "verdicts": (va, vb),
                                "adjusted_p": tuple(None if r is None else r.get("adjusted p") for r in (ra, rb))})
    return compared, changes


# ----------------------------------------------------------------------------------------------
# Numerics
# ----------------------------------------------------------------------------------------------

def _numerics_view(prov):
    """``(fields, recorded)``: ``provenance["numerics"]``, or for a file written before it was
    recorded the few fields older provenance has (threads, torch, numpy, machine, GPU)."""
    prov = prov or {}
    if isinstance(prov.get("numerics"), dict):
        return dict(prov["numerics"]), True
    sources = {"threads": ("platform", "torch_threads"), "torch": ("versions", "torch"),
               "numpy": ("versions", "numpy"), "machine": ("platform", "machine"), "cuda_device": ("platform", "cuda")}
    return {k: prov[part][key] for k, (part, key) in sources.items()
            if isinstance(prov.get(part), dict) and key in prov[part]}, False


def _same(field, a, b):
    if field == "torch" and isinstance(a, str) and isinstance(b, str) and ("+" in a) != ("+" in b):
        return a.split("+")[0] == b.split("+")[0]  # older provenance kept torch's version without "+cu130"
    return a == b


def _not_recorded(ra, rb):
    return {(False, False): "either run", (False, True): f"the {LABELS[0]} run",
            (True, False): f"the {LABELS[1]}"}.get((ra, rb), "")


def numerics_differences(prov_a: Mapping[str, Any] | None, prov_b: Mapping[str, Any] | None
                         ) -> dict[str, Any]:
    """What the two runs' ``provenance["numerics"]`` say about bitwise equality: ``differ``
    (``(field, a, b)`` for every field both record and that differs), ``shared`` (the fields both
    record), ``unknown`` (fields one side does not record), ``recorded`` (whether each side has a
    numerics block), ``expect`` ("bitwise": the same numerics, so any difference is a bug;
    "tolerance": they differ, so expect floating-point differences and agreeing verdicts;
    "unknown": a side does not record them) and ``meaning`` (that, as a sentence)."""
    (na, ra), (nb, rb) = _numerics_view(prov_a), _numerics_view(prov_b)
    fields = [*na, *(k for k in nb if k not in na)]
    differ = [(k, na[k], nb[k]) for k in fields if k in na and k in nb and not _same(k, na[k], nb[k])]
    unknown = [k for k in fields if (k in na) != (k in nb)]
    if differ:
        expect = "tolerance"
        meaning = ("the numerics differ, so bitwise equality is not expected: expect floating-point "
                   "differences (rounding, amplified through training and selection); the verdicts should agree")
    elif ra and rb and not unknown:
        expect = "bitwise"
        meaning = ("the numerics are identical, so bitwise equality is expected: any difference is a bug "
                   "(nondeterminism, or different code, parameters or data)")
    else:
        expect = "unknown"
        missing = _not_recorded(ra, rb) or "one of the runs (a field it lacks)"
        meaning = (f"the numerics are not recorded by {missing} (written before provenance recorded "
                   "them), so bitwise equality can be neither expected nor ruled out; the verdicts should agree")
    shared = [k for k in fields if k in na and k in nb]
    return {"differ": differ, "unknown": unknown, "shared": shared, "recorded": (ra, rb), "expect": expect,
            "meaning": meaning}


# ----------------------------------------------------------------------------------------------
# Files and folders
# ----------------------------------------------------------------------------------------------

def compare_docs(a: Mapping[str, Any], b: Mapping[str, Any], rtol: float = RTOL, atol: float = ATOL,
                 show: int = SHOW) -> dict[str, Any]:
    """Two results documents (as ``results.write_results`` writes them), ``a`` the committed one:
    ``leaves`` (``compare_leaves`` of their ``results``), ``claims`` (rows compared) and
    ``verdict_changes`` (``verdict_changes``), ``numerics`` (``numerics_differences``),
    ``commits`` (a's, b's), ``params_differ`` (``(name, a, b)`` of the parameters that differ),
    and ``agree`` (no verdict changed)."""
    pa, pb = a.get("provenance") or {}, b.get("provenance") or {}
    compared, changes = verdict_changes(a.get("results"), b.get("results"))
    params_a, params_b = a.get("params") or {}, b.get("params") or {}
    params_differ = [(k, params_a.get(k, _ABSENT), params_b.get(k, _ABSENT))
                     for k in [*params_a, *(k for k in params_b if k not in params_a)]
                     if params_a.get(k, _ABSENT) != params_b.get(k, _ABSENT)]
    return {"leaves": compare_leaves(a.get("results"), b.get("results"), rtol, atol, show),
            "claims": compared, "verdict_changes": changes, "agree": not changes,
            "numerics": numerics_differences(pa, pb),
            "commits": (pa.get("commit"), pb.get("commit")),
            "dirty": (pa.get("dirty"), pb.get("dirty")), "params_differ": params_differ,
            "rtol": rtol, "atol": atol}


def results_folder(path: str | os.PathLike) -> Path:
    """The folder of results JSON files ``path`` names: itself, or its ``results/`` (a clone's
    root); a JSON file is returned as is."""
    path = Path(path)
    if path.is_file() or (path.is_dir() and any(path.glob("[0-9][0-9]_*.json"))):
        return path
    if (path / "results").is_dir():
        return path / "results"
    if path.is_dir():
        return path
    raise ValueError(f"{str(path)!r} is neither a results folder, a clone's root with results/, "
                     "nor a results JSON file")


def compare_folders(other: str | os.PathLike, against: str | os.PathLike | None = None, profile: str = "cpu",
                    rtol: float = RTOL, atol: float = ATOL, show: int = SHOW) -> dict[str, Any]:
    """``compare_docs`` for every ``<notebook>_<profile>.json`` in both ``against`` (default the
    committed ``<repo>/results``) and ``other`` (``results_folder``): ``files`` (``{file name:
    comparison}``, notebook order), ``only_against`` and ``only_other`` (names in one folder only)."""
    other = results_folder(other)
    against = results_folder(against) if against is not None else repo_root() / "results"
    pattern = f"[0-9][0-9]_*_{profile}.json"
    names_a = {p.name for p in against.glob(pattern)} if against.is_dir() else {against.name}
    names_b = {p.name for p in other.glob(pattern)} if other.is_dir() else {other.name}
    if other.is_file() and against.is_dir():
        names_a &= names_b
    if against.is_file() and other.is_dir():
        names_b &= names_a

    def load(folder, name):
        return json.loads((folder if folder.is_file() else folder / name).read_text())

    files = {name: compare_docs(load(against, name), load(other, name), rtol, atol, show)
             for name in sorted(names_a & names_b)}
    return {"files": files, "only_against": sorted(names_a - names_b), "only_other": sorted(names_b - names_a)}


def _short(v, width=60):
    if v is _ABSENT or isinstance(v, float):
        text = repr(v)
    else:
        text = json.dumps(v, ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_comparison(name: str, c: Mapping[str, Any]) -> list[str]:
    """The lines that ``python -m robust_saliency.compare`` prints for one file's comparison."""
    a, b = LABELS
    lv, num = c["leaves"], c["numerics"]
    out = [f"== {name}"]
    if num["differ"]:
        out.append("numerics differ: " + "; ".join(f"{k.replace('_', ' ')} {_short(x, 40)} vs {_short(y, 40)}"
                                                   for k, x, y in num["differ"]) + f" ({a} vs {b})")
    elif num["expect"] == "bitwise":
        out.append("numerics identical (cpu capability, libraries, threads, device)")
    else:
        out.append(f"numerics not recorded by {_not_recorded(*num['recorded']) or 'both runs alike'}; "
                   f"what both record agrees ({', '.join(num['shared']) or 'nothing'})")
    if num["unknown"]:
        out.append(f"  recorded by one run only: {', '.join(num['unknown'])}")
    out.append(f"  ⇒ {num['meaning']}")
    ca, cb = (str(x)[:12] if x else "unknown" for x in c["commits"])
    dirty = [lab for lab, d in zip(LABELS, c["dirty"]) if d]
    context = [f"commit {ca} vs {cb}: the code differs too" if ca != cb else f"same commit {ca}"]
    if dirty:
        context.append(f"uncommitted code in the {' and '.join(dirty)} run")
    if c["params_differ"]:
        context.append("params differ: " + ", ".join(f"{k} {_short(x, 30)} vs {_short(y, 30)}"
                                                     for k, x, y in c["params_differ"][:5])
                       + (f" and {len(c['params_differ']) - 5} more" if len(c["params_differ"]) > 5 else ""))
    out.append("  " + "; ".join(context))
    kinds = f" ({lv['different_numbers']} numbers, {lv['different'] - lv['different_numbers']} texts or other)"
    out.append(f"leaves: {lv['total']} — {lv['bitwise']} bitwise equal, {lv['within']} equal within tolerance "
               f"(rtol {c['rtol']:g}, atol {c['atol']:g}), {lv['different']} different"
               + (kinds if lv["different"] else ""))
    for path, x, y in lv["first"]:
        rel = ""
        if _is_num(x) and _is_num(y) and max(abs(x), abs(y)) > 0:
            rel = f" (relative difference {abs(x - y) / max(abs(x), abs(y)):.1e})"
        out.append(f"  {path}: {_short(x)} ({a}) vs {_short(y)} ({b}){rel}")
    if lv["different"] > len(lv["first"]):
        out.append(f"  … and {lv['different'] - len(lv['first'])} more")
    changes = c["verdict_changes"]
    if not c["claims"]:
        out.append("verdicts: no claims table")
    elif not changes:
        out.append(f"verdicts: all {c['claims']} agree")
    else:
        out.append(f"verdicts: {len(changes)} of {c['claims']} changed")
        for ch in changes:
            va, vb = (v if v is not None else "(no such row)" for v in ch["verdicts"])
            pa, pb = ("" if p is None else f"{p:.3g}" if isinstance(p, (int, float)) else str(p)
                      for p in ch["adjusted_p"])
            p_text = f" (adjusted p {pa or 'n/a'} → {pb or 'n/a'})" if pa or pb else ""
            where = f" [{ch['paper']}]" if ch.get("paper") else ""
            out.append(f"  {ch['table']}: \"{ch['claim']}\"{where}: {va} ({a}) → {vb} ({b}){p_text}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: print the comparison of every file in both folders; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m robust_saliency.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="a re-run's results folder, the root of the clone it ran in, or one results JSON")
    parser.add_argument("--against", default=None, help="the results to compare with (default: the committed results/)")
    parser.add_argument("--profile", default="cpu", help="which <notebook>_<profile>.json files (default: cpu)")
    parser.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance (default {RTOL:g})")
    parser.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance (default {ATOL:g})")
    parser.add_argument("--show", type=int, default=SHOW, help=f"differing leaves named per file (default {SHOW})")
    parser.add_argument("--strict", action="store_true", help="also fail unless every leaf is bitwise equal")
    args = parser.parse_args(argv)
    try:
        out = compare_folders(args.other, args.against, args.profile, args.rtol, args.atol, args.show)
    except (ValueError, OSError, json.JSONDecodeError) as err:
        print(f"compare: {err}", file=sys.stderr)
        return 1
    files = out["files"]
    for name, c in files.items():
        print("\n".join(format_comparison(name, c)), end="\n\n")
    for key, label in (("only_against", LABELS[0]), ("only_other", LABELS[1])):
        if out[key]:
            print(f"only in the {label} results (not compared): {', '.join(out[key])}")
    if not files:
        print(f"no <notebook>_{args.profile}.json in both folders: nothing compared")
        return 1
    changed = sum(len(c["verdict_changes"]) for c in files.values())
    not_bitwise = [n for n, c in files.items() if c["leaves"]["bitwise"] != c["leaves"]["total"]]
    bug = [n for n, c in files.items() if c["numerics"]["expect"] == "bitwise" and n in not_bitwise]
    print(f"{len(files)} file(s) compared: {len(files) - len(not_bitwise)} bitwise equal"
          + (f", {len(not_bitwise)} not ({', '.join(not_bitwise)})" if not_bitwise else "")
          + f"; verdicts: {'all agree' if not changed else f'{changed} changed'}")
    if bug:
        print(f"identical numerics but different numbers in {', '.join(bug)}: that is a bug, not rounding")
    ok = not changed and not (args.strict and not_bitwise)
    if args.strict and not_bitwise:
        print("--strict: not every leaf is bitwise equal")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
