"""Claims tables: per-seed summaries and the paired tests that decide a verdict.

Every notebook ends with a claims table: the paper's claim, its evidence, our measurement
(mean ± std over seeds) and a verdict.  A comparison's verdict rests on a **paired one-sided
t-test over seeds** at level ``ALPHA`` (stated once, here): seed ``i`` of one method and seed
``i`` of the other share their initial weights and data order (``experiments.fit``), so the
per-seed differences are what varies.

* ``paired_test(a, b, alternative="greater", margin=0)``: is the mean of ``a - b`` above
  ``margin`` (``"less"``: below)?  ``scipy.stats.ttest_1samp`` on the differences (the same
  test as ``scipy.stats.ttest_rel``), with the one-sided 95% confidence interval that matches
  it, p, the number of seeds and ``resolvable``: the smallest mean difference these seeds
  could have called significant given their spread (t quantile x standard error).  ``b`` may
  be a number (a one-sample test against a threshold).  With fewer than 2 seeds nothing is
  tested: ``holds`` is None, the verdict "not tested at this profile", never "holds".
* ``all_pass(tests)``: "best of several" claims (A beats each of B, C, ...) hold only if
  every pairwise test rejects at ``ALPHA`` -- an intersection-union test, whose level is
  ``ALPHA`` without a multiplicity correction; its p is the largest pairwise p.
* ``claim(...)``: one row of a claims table; the verdict is derived from a test (or an
  explicit ``holds`` for a measurement without seeds), never typed in.  ``table(rows)`` shows
  the rows as a DataFrame with readable numbers.
"""
import math

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "VERDICTS", "paired_test", "all_pass", "claim", "table", "seed_mean_std",
           "fmt_ms", "fmt_test", "mean_std", "records", "seed_table"]

ALPHA = 0.05  # one-sided level of every claims test
VERDICTS = ("holds", "does not hold", "not tested at this profile")
_ALTERNATIVES = ("greater", "less")


def seed_mean_std(values):
    """(mean, sample std) of per-seed values (std NaN for one value)."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def fmt_ms(values, fmt="{:.3f}"):
    """'mean ± std' of per-seed values ('± n/a' for one seed)."""
    m, s = seed_mean_std(values)
    return f"{fmt.format(m)} ± {'n/a' if np.isnan(s) else fmt.format(s)}"


def paired_test(a, b, alternative="greater", margin=0.0, alpha=ALPHA):
    """Paired one-sided t-test over seeds of H1: mean(a - b) > margin (``"less"``: < margin).

    ``a[i]`` and ``b[i]`` come from the same seed; ``b`` may be a number (compared with every
    ``a[i]``).  Returns a dict: ``n`` (seeds), ``diff`` (mean of a - b), ``ci95`` (the
    one-sided (1 - alpha) interval of the mean difference that matches the test: [lo, inf)
    for "greater", (-inf, hi] for "less"), ``p`` (one-sided), ``resolvable`` (t_{1-alpha, n-1}
    times the standard error: the smallest mean difference beyond ``margin`` that these seeds
    could call significant), ``margin``, ``alternative``, ``alpha`` and ``holds`` (p < alpha;
    None with fewer than 2 seeds).  Zero spread (up to rounding) gives p = 0 if the
    difference lies beyond ``margin`` in the tested direction, else 1.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r} is not valid; accepted: {_ALTERNATIVES}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} is not valid; accepted: a number in (0, 1)")
    a = np.asarray(list(a), dtype=float)
    b = np.full_like(a, float(b)) if np.ndim(b) == 0 else np.asarray(list(b), dtype=float)
    if a.size == 0 or a.shape != b.shape:
        raise ValueError(f"paired_test needs as many values on each side, at least one; got "
                         f"{a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_test needs finite values")
    d = a - b
    n, diff = int(d.size), float(d.mean())
    out = {"n": n, "diff": diff, "margin": float(margin), "alternative": alternative,
           "alpha": alpha, "p": None, "ci95": None, "resolvable": None, "holds": None}
    if n < 2:
        return out
    sign = 1.0 if alternative == "greater" else -1.0
    se = float(d.std(ddof=1) / math.sqrt(n))
    t_crit = float(stats.t.ppf(1 - alpha, n - 1))
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # no spread (up to rounding)
        se = 0.0
        excess = sign * (diff - margin)
        p = 0.0 if excess > 0 else 1.0
    else:
        p = float(stats.ttest_1samp(d - margin, 0.0, alternative=alternative).pvalue)
    bound = diff - sign * t_crit * se
    out.update(p=p, resolvable=t_crit * se, holds=bool(p < alpha),
               ci95=[bound, math.inf] if sign > 0 else [-math.inf, bound])
    return out


def all_pass(tests):
    """Intersection-union combination of pairwise tests ("A beats each of the others").

    Holds only if every test holds (level ``ALPHA`` without correction); p is the largest p,
    ``diff``, ``ci95`` and ``resolvable`` those of the test with the largest p (the closest
    call), ``against`` its key; ``holds`` None if any test is untested.  ``tests``: a
    non-empty dict of ``paired_test`` results keyed by the competitor (or a list, keyed by
    position).
    """
    items = dict(tests) if isinstance(tests, dict) else dict(enumerate(tests))
    if not items:
        raise ValueError("all_pass needs at least one test")
    if any(t["holds"] is None for t in items.values()):
        key = next(iter(items))
        return {**items[key], "holds": None, "p": None, "ci95": None, "resolvable": None,
                "combined": len(items), "against": key}
    key = max(items, key=lambda k: (items[k]["p"], -abs(items[k]["diff"])))
    return {**items[key], "holds": all(t["holds"] for t in items.values()),
            "combined": len(items), "against": key}


def _fmt_num(v):
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:+.3g}"


def fmt_test(test):
    """A short text of a test: 'Δ +0.012, 95% CI [+0.003, ∞), p 0.021, n 3'."""
    if test["holds"] is None:
        return f"Δ {_fmt_num(test['diff'])}, n {test['n']}: not tested (fewer than 2 seeds)"
    return (f"Δ {_fmt_num(test['diff'])}, 95% CI {_fmt_interval(test['ci95'])}, "
            f"p {test['p']:.3g}, n {test['n']}")


def _fmt_interval(ci):
    lo, hi = ci
    return (f"{'(' if math.isinf(lo) else '['}{_fmt_num(lo)}, "
            f"{_fmt_num(hi)}{')' if math.isinf(hi) else ']'}")


def claim(claim, paper, ours, test=None, holds=None, note="", paper_effect=None):
    """One row of a claims table: the claim, the paper's evidence, ours, the test and the verdict.

    ``test``: a ``paired_test`` / ``all_pass`` result; the verdict is "holds" if it rejects at
    ``ALPHA``, "does not hold" if not, "not tested at this profile" with fewer than 2 seeds.
    Without a test, ``holds`` (True, False or None) gives the verdict of a measurement that
    has no seeds (e.g. a deterministic memory count); say how it was decided in ``note``.
    ``paper_effect``: the paper's own difference for the same comparison, shown beside ours.
    The row carries the difference, its 95% interval, p, the seeds and the resolvable difference.
    """
    if test is not None and holds is not None:
        raise ValueError("claim takes a test or holds, not both")
    if test is not None:
        holds = test["holds"]
    elif holds not in (True, False, None):
        raise ValueError(f"holds={holds!r} is not valid; accepted: True, False or None")
    verdict = VERDICTS[2] if holds is None else VERDICTS[0] if holds else VERDICTS[1]
    t = test or {}
    return {"claim": claim, "paper": paper, "paper effect": paper_effect,
            "ours (mean ± std over seeds)": ours, "difference": t.get("diff"),
            "95% CI": t.get("ci95"), "p (one-sided)": t.get("p"), "seeds": t.get("n"),
            "resolvable difference": t.get("resolvable"), "verdict": verdict, "note": note}


def table(rows, digits=3):
    """The claims ``rows`` as a DataFrame for display: numbers to ``digits`` significant digits,
    the interval as text ('[+0.003, ∞)'), untested fields blank."""
    import pandas as pd

    def num(v):
        return "" if v is None else v if isinstance(v, str) else f"{v:+.{digits}g}"

    shown = []
    for r in rows:
        p = r["p (one-sided)"]
        shown.append({**r, "paper effect": num(r["paper effect"]), "difference": num(r["difference"]),
                      "95% CI": "" if r["95% CI"] is None else _fmt_interval(r["95% CI"]), "p (one-sided)": "" if p is None else f"{p:.3g}",
                      "seeds": "" if r["seeds"] is None else r["seeds"],
                      "resolvable difference": "" if r["resolvable difference"] is None
                      else f"{r['resolvable difference']:.{digits}g}"})
    return pd.DataFrame(shown)


def mean_std(records, index, columns, values, fmt="{:.3f}"):
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


def records(evals, **extra):
    """Long DataFrame ``{method, seed, **extra, measure, value}`` of ``{(name, seed): evaluation}``,
    each evaluation a dict with ``"rows"`` (``{measure: value}``), as the papers' ``evaluate`` return."""
    import pandas as pd

    return pd.DataFrame([{"method": n, "seed": s, **extra, "measure": k, "value": v}
                         for (n, s), o in evals.items() for k, v in o["rows"].items()])


def seed_table(df, measures, names, labels=None, digits=3):
    """``mean ± std`` over seeds of ``measures`` (columns, in that order) per model of ``names``
    (rows, in that order, shown by ``labels``) from long ``records``."""
    labels = labels or {}
    sub = df[df.measure.isin(measures) & df.method.isin(names)]
    out = sub.groupby(["method", "measure"], sort=False)["value"].agg(
        lambda v: fmt_ms(v, f"{{:.{digits}f}}")).unstack("measure")
    out = out.loc[[n for n in names if n in out.index], [m for m in measures if m in out.columns]]
    out.index = [labels.get(n, n) for n in out.index]
    return out
