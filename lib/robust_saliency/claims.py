"""Claims tables: per-seed summaries, the paired tests behind every verdict, and the verdicts.

Every notebook ends with a claims table: the paper's claim, its evidence and effect, our
measurement (mean ± std over seeds) and a verdict.  Seed ``i`` of one method and seed ``i`` of
the other share their initial weights and data order (``experiments.fit``), so a comparison is
a **paired one-sided t-test over seeds** of the per-seed differences, at level ``ALPHA``.

* ``paired_test(a, b, alternative="greater", margin=0, effect=None)``: is the mean of ``a - b``
  above ``margin`` (``"less"``: below)?  ``scipy.stats.ttest_1samp`` on the differences (the
  same test as ``ttest_rel``).  Gives p in the claimed direction and in the opposite one, the
  90% interval whose bounds are the one-sided 95% bounds of those two tests, ``resolvable``
  (the smallest difference these seeds could call significant given their spread) and, for an
  ``effect`` (the paper's difference), p against that effect and ``seeds_needed`` (how many
  seeds would resolve it at the observed spread).  ``b`` may be a number (a one-sample test).
* ``all_pass(tests)``: "A beats each of B, C, ..." -- an intersection-union test (p is the
  largest pairwise p; no correction needed); it reports the *binding* comparison, the one
  that decides the verdict.
* ``claim(...)``: one row; the verdict is derived from the test, never typed in.
  ``compare(values, a, b, ...)``: the row of "A beats B" or "A beats each of B, C, ..." (or "each
  of A, B beats C") from per-seed values, with the binding comparison named.
  ``family(rows)``: a notebook's rows as one family -- Holm-adjusted p (``holm``) and the
  verdicts at the family-wise level.  ``tally(rows)`` counts the verdicts; ``table(rows)``
  shows the rows.

The verdicts (``VERDICTS``), in the order they are decided:

* ``not testable here``: decided by construction, or by a protocol that cannot move the
  metric (``claim(..., not_testable="why")``); shown, not tested, never a refutation.
* ``not tested at this profile``: fewer than 2 seeds.
* ``holds``: the one-sided test in the claimed direction rejects at the family-wise level.
* ``contradicted``: the one-sided test in the opposite direction rejects (family-wise).
* ``smaller than reported``: neither, and an effect as large as the paper's is ruled out (the
  test of "smaller than the paper's effect" rejects, family-wise: the interval excludes it).
* ``inconclusive``: neither; the interval holds both 0 and the paper's effect (or the paper
  gives no size).  ``seeds needed`` says how many seeds would resolve the paper's effect (or,
  without one, our difference) at the observed spread, at the Bonferroni level of the family
  (alpha / (tested rows x compared effects)): enough whatever the other rows give.

A measurement without seeds (a deterministic count, a benchmark ratio) gives ``holds`` or
``contradicted`` from an explicit ``holds=``.  A claim the paper does not make is marked
``beyond_paper=True`` (status "beyond the paper") and kept out of the paper's tally.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

    import pandas as pd

__all__ = ["ALPHA", "VERDICTS", "STATUSES", "SEEDS_CAP", "paired_test", "all_pass", "holm", "claim", "compare",
           "family", "tally", "tally_text", "fmt_seeds", "table", "seed_mean_std", "fmt_ms", "fmt_test", "mean_std", "records",
           "seed_table"]

ALPHA = 0.05  # one-sided level of every claims test, family-wise within a notebook (Holm)
VERDICTS = ("holds", "contradicted", "smaller than reported", "inconclusive", "not testable here",
            "not tested at this profile")
STATUSES = ("paper", "beyond the paper")
SEEDS_CAP = 10_000  # "seeds needed" beyond this is shown as "> 10000"
_ALTERNATIVES = ("greater", "less")


def seed_mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std) of per-seed values (std NaN for one value)."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def fmt_ms(values: Iterable[float], fmt: str = "{:.3f}") -> str:
    """'mean ± std' of per-seed values ('± n/a' for one seed)."""
    m, s = seed_mean_std(values)
    return f"{fmt.format(m)} ± {'n/a' if np.isnan(s) else fmt.format(s)}"


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

def _sign(alternative):
    return 1.0 if alternative == "greater" else -1.0


def _p_below(test, value):
    """One-sided p of H1: the difference lies short of ``value`` in the claimed direction
    (mean(a - b) < value for "greater", > value for "less"), from the test's n, diff and sd."""
    s, n, diff, sd = _sign(test["alternative"]), test["n"], test["diff"], test["sd"]
    excess = s * (diff - value)
    if sd == 0.0:
        return 0.0 if excess < 0 else 1.0
    return float(stats.t.cdf(excess / (sd / math.sqrt(n)), n - 1))


def _seeds_needed(test, effect, alpha=None):
    """The smallest number of seeds whose resolvable difference (t_{1-alpha, n-1} sd / sqrt(n),
    ``alpha`` default the test's) is below ``effect``'s distance from the margin in the claimed
    direction, at the test's spread; None if ``effect`` does not lie beyond the margin in that
    direction (nothing to resolve) or the test has no spread estimate; ``SEEDS_CAP + 1`` for more
    than ``SEEDS_CAP``."""
    if effect is None or test.get("sd") is None:
        return None
    gap = _sign(test["alternative"]) * (float(effect) - test["margin"])
    if not gap > 0:
        return None
    if test["sd"] == 0.0:
        return 2
    n = np.arange(2, SEEDS_CAP + 1)
    ok = stats.t.ppf(1 - (test["alpha"] if alpha is None else alpha), n - 1) * test["sd"] / np.sqrt(n) < gap
    return int(n[ok.argmax()]) if ok.any() else SEEDS_CAP + 1


def paired_test(a: Iterable[float], b: Iterable[float] | float, alternative: str = "greater",
                margin: float = 0.0, alpha: float = ALPHA, effect: float | None = None) -> dict[str, Any]:
    """Paired one-sided t-test over seeds of H1: mean(a - b) > margin (``"less"``: < margin).

    ``a[i]`` and ``b[i]`` come from the same seed; ``b`` may be a number (compared with every
    ``a[i]``).  Returns a dict: ``n`` (seeds), ``diff`` (mean of a - b), ``sd`` (sample std of
    the differences), ``p`` (one-sided, claimed direction), ``p_opposite`` (one-sided, the
    other direction, same margin), ``ci`` ([lo, hi]: the one-sided (1 - alpha) bounds of the
    two tests, a two-sided 1 - 2 alpha interval that excludes ``margin`` on a side exactly
    when that side's test rejects), ``resolvable`` (t_{1-alpha, n-1} times the standard error:
    the smallest difference beyond ``margin`` these seeds could call significant), ``margin``,
    ``alternative``, ``alpha``, ``holds`` (p < alpha; None with fewer than 2 seeds) and, with
    an ``effect`` (the paper's difference, same units and sign), ``p_vs_effect`` (H1: the
    difference falls short of ``effect``) and ``seeds_needed`` (``_seeds_needed``).  Zero spread
    (up to rounding) gives p 0 or 1 by the side the difference lies on.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r} is not valid; accepted: {_ALTERNATIVES}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha!r} is not valid; accepted: a number in (0, 0.5)")
    a = np.asarray(list(a), dtype=float)
    b = np.full_like(a, float(b)) if np.ndim(b) == 0 else np.asarray(list(b), dtype=float)
    if a.size == 0 or a.shape != b.shape:
        raise ValueError(f"paired_test needs as many values on each side, at least one; got "
                         f"{a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_test needs finite values")
    d = a - b
    n, diff = int(d.size), float(d.mean())
    out = {"n": n, "diff": diff, "sd": None, "margin": float(margin), "alternative": alternative,
           "alpha": alpha, "p": None, "p_opposite": None, "ci": None, "resolvable": None,
           "holds": None, "effect": None if effect is None else float(effect), "p_vs_effect": None,
           "seeds_needed": None}
    if n < 2:
        return out
    sign = _sign(alternative)
    sd = float(d.std(ddof=1))
    t_crit = float(stats.t.ppf(1 - alpha, n - 1))
    excess = sign * (diff - margin)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # no spread (up to rounding)
        sd = 0.0
        p, p_opp = (0.0 if excess > 0 else 1.0), (0.0 if excess < 0 else 1.0)
    else:
        p = float(stats.ttest_1samp(d - margin, 0.0, alternative=alternative).pvalue)
        p_opp = float(stats.t.cdf(excess / (sd / math.sqrt(n)), n - 1))
    half = t_crit * sd / math.sqrt(n)
    out.update(sd=sd, p=p, p_opposite=p_opp, resolvable=half, holds=bool(p < alpha),
               ci=[diff - half, diff + half])
    if effect is not None:
        out["seeds_needed"] = _seeds_needed(out, effect)
        if out["seeds_needed"] is not None:
            out["p_vs_effect"] = _p_below(out, float(effect))
    return out


def all_pass(tests: Mapping[Hashable, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
             effect: float | Mapping[Hashable, float] | None = None) -> dict[str, Any]:
    """Intersection-union combination of pairwise tests ("A beats each of the others").

    Holds only if every test holds (level alpha without correction); ``p`` is the largest p.
    ``p_opposite`` is the Bonferroni p of "some competitor beats A" (k times the smallest
    opposite p).  ``effect``: the paper's difference against each competitor (a dict keyed as
    ``tests``, or one number for all), kept as ``effects`` for ``claim``.  The *binding*
    comparison (``against``, its key; ``diff``, ``ci``, ``sd``, ``resolvable`` are its own) is the
    one that decides the verdict: the competitor that beats A most significantly when one does
    (``p_opposite`` < alpha); else, if every test holds, the weakest win (the largest p); else,
    if some comparison falls significantly short of the paper's effect against that competitor
    (Bonferroni over the compared effects), the one that falls shortest; else the comparison
    furthest from a win (the largest p).  ``tests``: a non-empty dict of ``paired_test`` results
    keyed by the competitor (or a list, keyed by position); ``holds`` None if any is untested.
    """
    items = dict(tests) if isinstance(tests, dict) else dict(enumerate(tests))
    if not items:
        raise ValueError("all_pass needs at least one test")
    k = len(items)
    effects = None if effect is None else effect if isinstance(effect, dict) else dict.fromkeys(items, effect)
    if any(t["holds"] is None for t in items.values()):
        key = next(iter(items))
        return {**items[key], "holds": None, "p": None, "p_opposite": None, "ci": None, "resolvable": None,
                "combined": k, "against": key, "tests": items, "effects": effects}
    alpha = min(t["alpha"] for t in items.values())
    p_opp = min(1.0, k * min(t["p_opposite"] for t in items.values()))
    short = {c: _p_below(t, float(effects[c])) for c, t in items.items()
             if effects and _is_num(effects.get(c)) and _seeds_needed(t, effects[c]) is not None}
    if p_opp < alpha:
        key = min(items, key=lambda c: (items[c]["p_opposite"], -abs(items[c]["diff"])))
    elif not all(t["holds"] for t in items.values()) and short and len(short) * min(short.values()) < alpha:
        key = min(short, key=lambda c: (short[c], -abs(items[c]["diff"])))
    else:
        key = max(items, key=lambda c: (items[c]["p"], -abs(items[c]["diff"])))
    return {**items[key], "holds": all(t["holds"] for t in items.values()), "p": max(t["p"] for t in items.values()),
            "p_opposite": p_opp, "combined": k, "against": key, "tests": items, "effects": effects}


def _is_num(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _effect_tests(test, effect):
    """(p_vs_effect, the binding comparison's paper effect, k) of ``test`` (a ``paired_test`` or
    ``all_pass`` result) for the paper's ``effect``: a number, or for "A beats each" a dict of the
    paper's difference against each competitor (keyed as the tests).  An effect as large as the
    paper's is ruled out when some comparison falls short of its paper effect (Bonferroni over
    the k compared ones)."""
    if test.get("sd") is None:
        return None, None, 1
    parts = test.get("tests") or {test.get("against"): test}
    effects = effect if isinstance(effect, dict) else dict.fromkeys(parts, effect)
    pairs = [(t, effects.get(k)) for k, t in parts.items() if _is_num(effects.get(k))]
    pairs = [(t, float(e)) for t, e in pairs if _seeds_needed(t, e) is not None]
    if not pairs:
        return None, None, 1
    p = min(1.0, len(pairs) * min(_p_below(t, e) for t, e in pairs))
    own = effects.get(test.get("against"))
    own = float(own) if _is_num(own) and _seeds_needed(test, own) is not None else None
    return p, own, len(pairs)


def holm(pvalues: Iterable[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the order given (None stays None and is not counted).

    With the m p-values sorted, p_(1) <= ... <= p_(m), the adjusted p_(i) is
    max_{j <= i} min(1, (m - j + 1) p_(j)); rejecting where it is below alpha controls the
    family-wise error rate at alpha (Holm 1979)."""
    vals = [None if p is None else float(p) for p in pvalues]
    idx = sorted((i for i, p in enumerate(vals) if p is not None), key=lambda i: vals[i])
    m, out, running = len(idx), list(vals), 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * vals[i]))
        out[i] = running
    return out


# ----------------------------------------------------------------------------------------------
# Rows, families, verdicts
# ----------------------------------------------------------------------------------------------

def _num(v):
    return None if v is None else float(v)


def compare(values: Callable[[Any], Iterable[float]], a: Hashable | Sequence[Hashable],
            b: Hashable | Sequence[Hashable], claim_text: str, paper: str, *, alternative: str = "greater",
            label: Callable[[Any], str] | None = None, fmt: str = "{:.3f}",
            paper_effect: float | str | Mapping[Hashable, float] | None = None, note: str = "",
            **kw: Any) -> dict[str, Any]:
    """The claim row "``a`` beats ``b``" from per-seed values (``values(name)``, paired by seed).

    ``a`` and ``b`` are names (any hashable: a method, a setting); either may be a list (not both): "each of ``a`` beats ``b``" or "``a`` beats each of
    ``b``", an intersection-union test (``all_pass``) whose binding comparison the row shows; a
    list of one is a plain paired test.  ``alternative``: "greater" (higher is better) or
    "less".  ``label(name)`` names a method in the row (default: the name); ``fmt`` formats
    the means and stds.  ``paper_effect``: a number, a text, or (with a list) the paper's
    difference per competitor, ``{name: gap}`` (then the binding comparison is chosen as
    ``all_pass`` does with effects).  ``note`` and the other keywords go to ``claim``.
    """
    many_a, many_b = isinstance(a, (list, tuple)), isinstance(b, (list, tuple))
    if many_a and many_b:
        raise ValueError(f"compare: a={a!r} and b={b!r} are both lists; accepted: at most one list")
    label = label or str
    names = list(a if many_a else b if many_b else [b])
    if not names:
        raise ValueError(f"compare: the list of {'a' if many_a else 'b'} is empty; accepted: one name or more")
    pair = (lambda n: (n, b)) if many_a else (lambda n: (a, n))
    tests = {n: paired_test(values(pair(n)[0]), values(pair(n)[1]), alternative=alternative) for n in names}
    if len(tests) > 1:
        test = all_pass(tests, paper_effect if isinstance(paper_effect, dict) else None)
    else:
        test = tests[names[0]]
        if isinstance(paper_effect, dict):  # one competitor: its own effect
            paper_effect = paper_effect.get(names[0])
    x, y = pair(test.get("against", names[0]))
    bind = "binding: " if len(tests) > 1 else ""
    ours = (f"{bind if many_a else ''}{label(x)} {fmt_ms(values(x), fmt)} vs "
            f"{bind if many_b else ''}{label(y)} {fmt_ms(values(y), fmt)}")
    return claim(claim_text, paper, ours, test=test, note=note, paper_effect=paper_effect, **kw)


def claim(claim: str, paper: str, ours: str, test: Mapping[str, Any] | None = None, holds: bool | None = None,
          note: str = "", paper_effect: float | str | Mapping[Hashable, float] | None = None,
          not_testable: str | None = None, beyond_paper: bool = False) -> dict[str, Any]:
    """One row of a claims table: the claim, the paper's evidence and effect, ours, the test and
    the verdict (as a family of one; ``family`` puts a notebook's rows together).

    ``test``: a ``paired_test`` / ``all_pass`` result.  Without a test, ``holds`` (True, False or
    None) is a measurement without seeds (a deterministic count, a benchmark): "holds",
    "contradicted" or "not tested at this profile"; say how it was decided in ``note``.
    ``paper_effect``: the paper's own difference for the same comparison, in the units and sign
    of the test's difference (text for a comparison that has no single number); for "A beats
    each" (``all_pass``) a dict of the paper's difference against each competitor, of which the
    row shows the binding one's (default: the ``effect`` given to ``all_pass``).
    ``not_testable``: why the claim cannot be tested here (decided by construction, or a
    protocol that cannot move the metric): the row keeps its numbers, its verdict is "not
    testable here" and it leaves the family.  ``beyond_paper``: the claim is ours, not the
    paper's (status "beyond the paper").
    """
    if test is not None and holds is not None:
        raise ValueError("claim takes a test or holds, not both")
    if test is None and holds not in (True, False, None):
        raise ValueError(f"holds={holds!r} is not valid; accepted: True, False or None")
    if not_testable is not None and (not isinstance(not_testable, str) or not not_testable.strip()):
        raise ValueError(f"not_testable={not_testable!r} is not valid; accepted: a sentence saying why")
    t = test or {}
    if paper_effect is None and t.get("effects") is not None:
        paper_effect = t["effects"]
    p_eff, target, k = _effect_tests(t, paper_effect) if test is not None else (None, None, 1)
    if isinstance(paper_effect, dict):
        paper_effect = paper_effect.get(t.get("against"))
    target_for = "paper effect"
    if target is None and t.get("sd") is not None:  # no paper size: resolve ours
        target, target_for, k = t["diff"], "our difference", 1
    spread = None if t.get("sd") is None else {k_: t[k_] for k_ in ("sd", "alternative", "margin", "alpha")}
    row = {"claim": claim, "paper": paper, "status": STATUSES[1] if beyond_paper else STATUSES[0],
           "paper effect": paper_effect, "ours (mean ± std over seeds)": ours,
           "difference": _num(t.get("diff")), "90% CI": t.get("ci"), "binding": t.get("against"),
           "p (one-sided)": _num(t.get("p")), "p opposite": _num(t.get("p_opposite")),
           "p vs paper effect": p_eff, "adjusted p": None, "seeds": t.get("n"),
           "resolvable difference": _num(t.get("resolvable")), "seeds needed": None,
           "seeds needed for": None, "spread": spread, "target": _num(target),
           "target for": None if target is None else target_for, "comparisons": k,
           "measured": None if test is not None else holds, "not testable": not_testable,
           "alpha": float(t.get("alpha", ALPHA)), "family size": None, "verdict": None, "note": note}
    return family([row])[0]


def _tested(row):
    return row["not testable"] is None and row["p (one-sided)"] is not None


def _verdict(row, adj):
    if row["not testable"] is not None:
        return "not testable here"
    if row["p (one-sided)"] is None:
        m = row["measured"]
        return VERDICTS[5] if m is None else "holds" if m else "contradicted"
    a = row["alpha"]
    if adj["p"] < a:
        return "holds"
    if adj["opposite"] < a:
        return "contradicted"
    if adj["effect"] is not None and adj["effect"] < a:
        return "smaller than reported"
    return "inconclusive"


def family(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one notebook as one family: Holm-adjusted p-values (``holm``) over the tested
    rows (not the untestable, untested or measured ones), one adjustment for each question --
    the claimed direction (``adjusted p``), the opposite direction, and "smaller than the
    paper's effect" -- and the verdicts from them.  Returns new rows (the input is unchanged)."""
    rows = [dict(r) for r in rows]
    tested = [r for r in rows if _tested(r)]
    adj_p = holm([r["p (one-sided)"] for r in tested])
    adj_o = holm([r["p opposite"] for r in tested])
    adj_e = holm([r["p vs paper effect"] for r in tested])
    for r, p, o, e in zip(tested, adj_p, adj_o, adj_e):
        r["adjusted p"], r["family size"] = p, len(tested)
        r["verdict"] = _verdict(r, {"p": p, "opposite": o, "effect": e})
        level = r["alpha"] / (len(tested) * r.get("comparisons", 1))  # Bonferroni: enough whatever the other rows do
        needed = None if r.get("spread") is None else _seeds_needed(r["spread"], r.get("target"), alpha=level)
        r["seeds needed"] = needed
        r["seeds needed for"] = None if needed is None else r.get("target for")
    for r in rows:
        if not _tested(r):
            r["adjusted p"], r["family size"], r["seeds needed"], r["seeds needed for"] = None, None, None, None
            r["verdict"] = _verdict(r, {})
    return rows


def tally(rows: Iterable[Mapping[str, Any]], status: str | None = "paper") -> dict[str, int]:
    """``{verdict: count}`` over the rows of ``status`` ("paper", "beyond the paper", or None for
    all), every verdict listed (zeros included), in ``VERDICTS`` order."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status={status!r} is not valid; accepted: {STATUSES} or None")
    counts = dict.fromkeys(VERDICTS, 0)
    for r in rows:
        if status is None or r["status"] == status:
            counts[r["verdict"]] += 1
    return counts


def tally_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line: the paper's verdicts counted, and ours (beyond the paper) if any."""
    def part(c):
        return ", ".join(f"{n} {v}" for v, n in c.items() if n)
    paper, ours = tally(rows, "paper"), tally(rows, "beyond the paper")
    text = f"{sum(paper.values())} claims of the paper: {part(paper) or 'none'}"
    if sum(ours.values()):
        text += f"; {sum(ours.values())} beyond the paper: {part(ours)}"
    fam = next((r["family size"] for r in rows if r["family size"]), None)
    return text + (f" (Holm over the {fam} tested rows, α = {ALPHA})" if fam else "")


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------

def _fmt_num(v):
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:+.3g}"


def _fmt_interval(ci):
    lo, hi = ci
    return f"[{_fmt_num(lo)}, {_fmt_num(hi)}]"


def fmt_test(test: Mapping[str, Any]) -> str:
    """A short text of a test: 'Δ +0.012, 90% CI [+0.003, +0.021], p 0.021, n 3'."""
    if test["holds"] is None:
        return f"Δ {_fmt_num(test['diff'])}, n {test['n']}: not tested (fewer than 2 seeds)"
    return (f"Δ {_fmt_num(test['diff'])}, 90% CI {_fmt_interval(test['ci'])}, "
            f"p {test['p']:.3g}, n {test['n']}")


def fmt_seeds(n: int | None) -> str:
    """'seeds needed' as text: blank for None, '> 10000' past the cap."""
    return "" if n is None else f"> {SEEDS_CAP}" if n > SEEDS_CAP else str(int(n))


TABLE_COLUMNS = ("claim", "paper", "status", "paper effect", "ours (mean ± std over seeds)", "binding",
                 "difference", "90% CI", "p (one-sided)", "adjusted p", "seeds", "resolvable difference",
                 "seeds needed", "verdict", "note")


def table(rows: Iterable[Mapping[str, Any]], digits: int = 3) -> pd.DataFrame:
    """The claims ``rows`` as a DataFrame for display (``TABLE_COLUMNS``): numbers to ``digits``
    significant digits, the interval as text, untested fields blank; a "not testable here" row
    carries its reason in the note."""
    import pandas as pd

    def num(v):
        return "" if v is None else v if isinstance(v, str) else f"{v:+.{digits}g}"

    def pv(v):
        return "" if v is None else f"{v:.{digits}g}"

    shown = []
    for r in rows:
        note = r["note"]
        if r.get("not testable"):
            note = f"not testable: {r['not testable']}" + (f"; {note}" if note else "")
        shown.append({**{k: r.get(k) for k in TABLE_COLUMNS}, "paper effect": num(r["paper effect"]),
                      "binding": "" if r.get("binding") is None else str(r["binding"]),
                      "difference": num(r["difference"]),
                      "90% CI": "" if r["90% CI"] is None else _fmt_interval(r["90% CI"]),
                      "p (one-sided)": pv(r["p (one-sided)"]), "adjusted p": pv(r["adjusted p"]),
                      "seeds": "" if r["seeds"] is None else r["seeds"],
                      "resolvable difference": "" if r["resolvable difference"] is None
                      else f"{r['resolvable difference']:.{digits}g}",
                      "seeds needed": fmt_seeds(r["seeds needed"]), "note": note})
    return pd.DataFrame(shown, columns=list(TABLE_COLUMNS))


def mean_std(records: Iterable[Mapping[str, Any]], index: str, columns: str, values: str,
             fmt: str = "{:.3f}") -> pd.DataFrame:
    """A table of ``mean ± std`` over seeds from a list of flat dicts (one per seed and cell).

    ``index`` / ``columns`` name the keys that label rows and columns, ``values`` the key to
    summarise; std is the sample std (ddof=1; '±0' for one seed is shown as '± n/a').
    """
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    stats = (df.groupby([index, columns], sort=False)[values]
             .agg(lambda v: fmt_ms(v, fmt)).reset_index(name="cell"))
    table = stats.pivot(index=index, columns=columns, values="cell")
    table = table.loc[list(dict.fromkeys(df[index])), list(dict.fromkeys(df[columns]))]
    table.columns.name, table.index.name = None, index
    return table


def records(evals: Mapping[tuple[str, int], Mapping[str, Any]], **extra: Any) -> pd.DataFrame:
    """Long DataFrame ``{method, seed, **extra, measure, value}`` of ``{(name, seed): evaluation}``,
    each evaluation a dict with ``"rows"`` (``{measure: value}``), as the papers' ``evaluate`` return."""
    import pandas as pd

    return pd.DataFrame([{"method": n, "seed": s, **extra, "measure": k, "value": v}
                         for (n, s), o in evals.items() for k, v in o["rows"].items()])


def seed_table(df: pd.DataFrame, measures: Sequence[str], names: Sequence[str],
               labels: Mapping[str, str] | None = None, digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` over seeds of ``measures`` (columns, in that order) per model of ``names``
    (rows, in that order, shown by ``labels``) from long ``records``."""
    labels = labels or {}
    sub = df[df.measure.isin(measures) & df.method.isin(names)]
    out = sub.groupby(["method", "measure"], sort=False)["value"].agg(
        lambda v: fmt_ms(v, f"{{:.{digits}f}}")).unstack("measure")
    out = out.loc[[n for n in names if n in out.index], [m for m in measures if m in out.columns]]
    out.index = [labels.get(n, n) for n in out.index]
    return out
