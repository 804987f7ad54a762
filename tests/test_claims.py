"""Tests of robust_saliency.claims: the paired one-sided tests behind every verdict."""
import math

import numpy as np
import pytest
from scipy import stats

from robust_saliency import claims as Cl


def _by_hand(d, margin=0.0):
    """t statistic, one-sided p (greater) and 95% lower bound of mean(d), from the textbook formulas."""
    d = np.asarray(d, dtype=float)
    n = d.size
    se = d.std(ddof=1) / math.sqrt(n)
    t = (d.mean() - margin) / se
    p = stats.t.sf(t, n - 1)
    return t, p, d.mean() - stats.t.ppf(0.95, n - 1) * se, stats.t.ppf(0.95, n - 1) * se


def test_paired_test_matches_the_textbook_and_scipy_ttest_rel():
    a, b = [0.71, 0.64, 0.69, 0.73], [0.68, 0.65, 0.62, 0.70]
    r = Cl.paired_test(a, b)
    d = np.subtract(a, b)
    _, p, lo, res = _by_hand(d)
    assert r["n"] == 4 and r["diff"] == pytest.approx(d.mean())
    assert r["p"] == pytest.approx(p) and r["ci95"][0] == pytest.approx(lo) and r["ci95"][1] == math.inf
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    assert r["resolvable"] == pytest.approx(res)
    assert r["holds"] == (p < Cl.ALPHA)
    # "less" mirrors "greater"
    m = Cl.paired_test(b, a, alternative="less")
    assert m["p"] == pytest.approx(r["p"]) and m["ci95"][1] == pytest.approx(-lo) and m["ci95"][0] == -math.inf


def test_a_t_of_2_06_on_three_seeds_does_not_hold():
    """The issue's case: 'clearly greater' (2 standard errors) called t = 2.06 with 2 df a win (p ~ 0.09)."""
    d = np.array([-1.0, 0.0, 1.0]) + 2.06 / math.sqrt(3)  # std 1, se 1/sqrt(3): t = 2.06
    b = np.array([0.5, 0.6, 0.7])
    r = Cl.paired_test(b + d, b)
    assert r["p"] == pytest.approx(stats.t.sf(2.06, 2)) and 0.08 < r["p"] < 0.1
    assert r["holds"] is False
    assert r["ci95"][0] < 0 < r["diff"]  # the interval matches the verdict
    # a larger consistent advantage does hold, and its interval excludes 0
    big = Cl.paired_test(b + d + 1.0, b)
    assert big["holds"] and big["ci95"][0] > 0


def test_verdict_and_interval_agree_on_many_draws():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 7))
        a, b = rng.normal(0.2, 1, n), rng.normal(0, 1, n)
        r = Cl.paired_test(a, b)
        assert r["holds"] == (r["ci95"][0] > 0)


def test_fewer_than_two_seeds_is_not_tested():
    r = Cl.paired_test([0.9], [0.1])
    assert r["holds"] is None and r["p"] is None and r["diff"] == pytest.approx(0.8)
    row = Cl.claim("c", "P1", "0.9", test=r)
    assert row["verdict"] == "not tested at this profile"


def test_margin_non_inferiority_and_one_sample():
    # accuracy change of +0.02 +- 0.01 over 3 seeds: not worse than -1 point
    gap = np.array([0.01, 0.02, 0.03])
    r = Cl.paired_test(gap, 0.0, margin=-0.01)
    assert r["p"] == pytest.approx(stats.ttest_1samp(gap + 0.01, 0, alternative="greater").pvalue)
    assert r["holds"]
    # a drop of about 1 point cannot be shown to be smaller than 1 point
    assert not Cl.paired_test(np.array([-0.02, -0.01, 0.0]), 0.0, margin=-0.01)["holds"]
    # one-sample test against a threshold
    t = Cl.paired_test([0.9, 0.92, 0.88], 0.5)
    assert t["holds"] and t["diff"] == pytest.approx(0.4)


def test_zero_spread():
    assert Cl.paired_test([0.6, 0.8], [0.5, 0.7])["p"] == 0.0
    assert Cl.paired_test([0.5, 0.7], [0.5, 0.7])["holds"] is False
    assert Cl.paired_test([0.5, 0.7], [0.6, 0.8])["holds"] is False


def test_bad_arguments():
    with pytest.raises(ValueError, match="alternative='two-sided'"):
        Cl.paired_test([1, 2], [0, 1], alternative="two-sided")
    with pytest.raises(ValueError, match="as many values"):
        Cl.paired_test([1, 2], [0])
    with pytest.raises(ValueError, match="finite"):
        Cl.paired_test([1, float("nan")], [0, 1])


def test_all_pass_is_an_intersection_union_test():
    good = Cl.paired_test([1.0, 1.1, 1.2], [0.0, 0.05, 0.1])
    weak = Cl.paired_test([0.55, 0.6, 0.5], [0.5, 0.58, 0.52])
    assert good["holds"] and not weak["holds"]
    both = Cl.all_pass({"b": good, "c": weak})
    assert both["holds"] is False and both["p"] == weak["p"] and both["combined"] == 2
    assert Cl.all_pass([good, good])["holds"] is True
    assert Cl.all_pass([good, Cl.paired_test([1.0], [0.0])])["holds"] is None
    with pytest.raises(ValueError):
        Cl.all_pass([])


def test_claim_rows_carry_the_test():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    row = Cl.claim("A beats B", "Table 1", Cl.fmt_ms([0.71, 0.64, 0.69]), test=t, paper_effect=0.02)
    assert row["verdict"] == "holds" and row["p (one-sided)"] == t["p"] and row["seeds"] == 3
    assert row["difference"] == t["diff"] and row["95% CI"] == t["ci95"] and row["paper effect"] == 0.02
    assert Cl.claim("c", "p", "o", holds=False)["verdict"] == "does not hold"
    assert Cl.claim("c", "p", "o", holds=None)["verdict"] == "not tested at this profile"
    with pytest.raises(ValueError, match="holds="):
        Cl.claim("c", "p", "o", holds="yes")
    with pytest.raises(ValueError, match="not both"):
        Cl.claim("c", "p", "o", test=t, holds=True)
    assert "p 0.0" in Cl.fmt_test(t) and "n 3" in Cl.fmt_test(t)


def test_seed_stats():
    m, s = Cl.seed_mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and s == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert Cl.fmt_ms([0.5], "{:.2f}") == "0.50 ± n/a"
    assert Cl.fmt_ms([1.0, 3.0], "{:.1f}") == f"2.0 ± {np.std([1, 3], ddof=1):.1f}"


def test_table_formats_rows():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    rows = [Cl.claim("a", "T1", "x", test=t, paper_effect=0.02),
            Cl.claim("b", "T2", "y", test=Cl.paired_test([1.0], [0.0])),
            Cl.claim("c", "T3", "z", holds=True, paper_effect="×2.75")]
    df = Cl.table(rows)
    assert list(df["verdict"]) == ["holds", "not tested at this profile", "holds"]
    assert df.loc[0, "95% CI"].startswith("[+") and df.loc[0, "95% CI"].endswith("∞)")
    assert df.loc[1, "p (one-sided)"] == "" and df.loc[2, "paper effect"] == "×2.75"
    assert Cl.all_pass({"b": t, "c": Cl.paired_test([0.5, 0.6, 0.5], [0.5, 0.58, 0.52])})["against"] == "c"


def test_fmt_test_shows_the_open_end():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    assert ", ∞), p " in Cl.fmt_test(t) and Cl.fmt_test(t).startswith("Δ +0.0933, 95% CI [+")
    assert "(−∞, " in Cl.fmt_test(Cl.paired_test([0.5, 0.6], [0.6, 0.65], alternative="less"))


def test_records_and_seed_table_summarise_per_model_in_the_given_order():
    evals = {("b", 0): {"rows": {"acc": 0.5, "gini": 0.1}}, ("b", 1): {"rows": {"acc": 0.7, "gini": 0.3}},
             ("a", 0): {"rows": {"acc": 0.2, "gini": 0.4}}, ("a", 1): {"rows": {"acc": 0.4, "gini": 0.4}}}
    df = Cl.records(evals, split="test")
    assert len(df) == 8 and set(df.columns) == {"method", "seed", "split", "measure", "value"}
    t = Cl.seed_table(df, ["gini", "acc"], ["a", "b"], {"a": "A"}, digits=2)
    assert list(t.index) == ["A", "b"] and list(t.columns) == ["gini", "acc"]
    assert t.loc["b", "acc"] == "0.60 ± 0.14" and t.loc["A", "gini"] == "0.40 ± 0.00"
