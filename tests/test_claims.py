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
    assert r["p"] == pytest.approx(p) and r["ci"][0] == pytest.approx(lo)
    assert r["ci"][1] == pytest.approx(2 * d.mean() - lo)  # the other one-sided 95% bound
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    assert r["p_opposite"] == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)
    assert r["resolvable"] == pytest.approx(res) and r["sd"] == pytest.approx(d.std(ddof=1))
    assert r["holds"] == (p < Cl.ALPHA)
    # "less" mirrors "greater"
    m = Cl.paired_test(b, a, alternative="less")
    assert m["p"] == pytest.approx(r["p"]) and m["ci"][1] == pytest.approx(-lo) and m["p_opposite"] == pytest.approx(r["p_opposite"])


def test_a_t_of_2_06_on_three_seeds_does_not_hold():
    """An older rule, 'clearly greater' (2 standard errors), called t = 2.06 with 2 df a win (p ~ 0.09)."""
    d = np.array([-1.0, 0.0, 1.0]) + 2.06 / math.sqrt(3)  # std 1, se 1/sqrt(3): t = 2.06
    b = np.array([0.5, 0.6, 0.7])
    r = Cl.paired_test(b + d, b)
    assert r["p"] == pytest.approx(stats.t.sf(2.06, 2)) and 0.08 < r["p"] < 0.1
    assert r["holds"] is False
    assert r["ci"][0] < 0 < r["diff"]  # the interval matches the verdict
    # a larger consistent advantage does hold, and its interval excludes 0
    big = Cl.paired_test(b + d + 1.0, b)
    assert big["holds"] and big["ci"][0] > 0


def test_verdict_and_interval_agree_on_many_draws():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 7))
        a, b = rng.normal(0.2, 1, n), rng.normal(0, 1, n)
        r = Cl.paired_test(a, b)
        assert r["holds"] == (r["ci"][0] > 0) and (r["p_opposite"] < Cl.ALPHA) == (r["ci"][1] < 0)


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
    up = Cl.paired_test([0.6, 0.8], [0.5, 0.7], effect=0.3)
    assert up["p"] == 0.0 and up["p_opposite"] == 1.0 and up["ci"] == [pytest.approx(0.1)] * 2
    assert up["seeds_needed"] == 2 and up["p_vs_effect"] == 0.0  # 0.1 exactly, short of 0.3
    tie = Cl.paired_test([0.5, 0.7], [0.5, 0.7])
    assert tie["holds"] is False and tie["p"] == 1.0 and tie["p_opposite"] == 1.0
    down = Cl.paired_test([0.5, 0.7], [0.6, 0.8])
    assert down["holds"] is False and down["p_opposite"] == 0.0


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
    assert both["against"] == "c" and both["p_opposite"] == pytest.approx(min(1, 2 * min(good["p_opposite"], weak["p_opposite"])))
    assert Cl.all_pass([good, good])["holds"] is True
    assert Cl.all_pass([good, Cl.paired_test([1.0], [0.0])])["holds"] is None
    with pytest.raises(ValueError):
        Cl.all_pass([])


def test_claim_rows_carry_the_test():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    row = Cl.claim("A beats B", "Table 1", Cl.fmt_ms([0.71, 0.64, 0.69]), test=t, paper_effect=0.02)
    assert row["verdict"] == "holds" and row["p (one-sided)"] == t["p"] and row["seeds"] == 3
    assert row["difference"] == t["diff"] and row["90% CI"] == t["ci"] and row["paper effect"] == 0.02
    assert row["adjusted p"] == t["p"] and row["status"] == "paper"  # a family of one
    assert Cl.claim("c", "p", "o", holds=False)["verdict"] == "contradicted"
    assert Cl.claim("c", "p", "o", holds=True)["verdict"] == "holds"
    assert Cl.claim("c", "p", "o", holds=None)["verdict"] == "not tested at this profile"
    with pytest.raises(ValueError, match="holds="):
        Cl.claim("c", "p", "o", holds="yes")
    with pytest.raises(ValueError, match="not both"):
        Cl.claim("c", "p", "o", test=t, holds=True)
    with pytest.raises(ValueError, match="not_testable="):
        Cl.claim("c", "p", "o", test=t, not_testable="  ")
    assert "p 0.0" in Cl.fmt_test(t) and "n 3" in Cl.fmt_test(t)


def test_holm_matches_a_hand_computation():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max so far 0.06
    assert Cl.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert Cl.holm([0.2, None, 0.9]) == [pytest.approx(0.4), None, pytest.approx(0.9)]  # None is not counted
    assert Cl.holm([0.4, 0.6]) == [pytest.approx(0.8), pytest.approx(0.8)]  # 0.6 x 1 < 0.8: monotone
    assert Cl.holm([]) == [] and Cl.holm([0.7, 0.8]) == [1.0, 1.0]  # capped at 1


def _row(d, effect=None, alternative="greater", **kw):
    d = np.asarray(d, dtype=float)
    return Cl.claim("c", "T", "o", test=Cl.paired_test(d, 0.0, alternative=alternative), paper_effect=effect, **kw)


def test_the_five_verdicts_on_hand_made_cases():
    assert _row([0.10, 0.12, 0.11], 0.1)["verdict"] == "holds"
    assert _row([-0.10, -0.12, -0.11], 0.1)["verdict"] == "contradicted"
    # mean 0.0017, sd 0.0076: neither sign is resolved, but 0.1 lies far above the interval
    small = _row([0.0, 0.01, -0.005], 0.1)
    assert small["verdict"] == "smaller than reported" and small["90% CI"][1] < 0.1 and small["90% CI"][0] < 0
    # the interval holds 0 and 0.05: undecided; no paper size and nothing significant: undecided too
    assert _row([-0.1, 0.2, 0.05], 0.05)["verdict"] == "inconclusive"
    assert _row([0.0, 0.01, -0.005])["verdict"] == "inconclusive"
    # "less": the paper's effect is negative; a paper effect on the wrong side gives no size
    assert _row([0.0, -0.01, 0.005], -0.1, alternative="less")["verdict"] == "smaller than reported"
    assert _row([0.0, 0.01, -0.005], -0.1)["seeds needed for"] == "our difference"
    row = _row([0.10, 0.12, 0.11], 0.1, not_testable="the metric scores the method's own objective")
    assert row["verdict"] == "not testable here" and row["adjusted p"] is None
    assert _row([0.3])["verdict"] == "not tested at this profile"
    assert _row([0.10, 0.12, 0.11], beyond_paper=True)["status"] == "beyond the paper"


def test_seeds_needed_is_the_first_n_whose_resolvable_difference_is_below_the_effect():
    # sd 0.1: t_{0.95, n-1} 0.1 / sqrt(n) < 0.05 first at n = 13 (12: 1.796/3.464 = 0.518; 13: 1.782/3.606 = 0.494)
    t = Cl.paired_test([0.0, 0.1, 0.2], 0.0, effect=0.05)
    assert t["seeds_needed"] == 13
    assert Cl.paired_test([0.0, 0.1, 0.2], 0.0, effect=-0.05)["seeds_needed"] is None  # the wrong side
    assert Cl.paired_test([0.0, 0.1, 0.2], 0.0, effect=1e-5)["seeds_needed"] == Cl.SEEDS_CAP + 1
    assert Cl.fmt_seeds(Cl.SEEDS_CAP + 1) == f"> {Cl.SEEDS_CAP}" and Cl.fmt_seeds(None) == ""
    # non-inferiority: the effect is measured from the margin
    assert Cl.paired_test([0.0, 0.1, 0.2], 0.0, margin=-0.05, effect=0.0)["seeds_needed"] == 13
    assert _row([0.0, 0.1, 0.2], 0.05)["seeds needed"] == 13  # a family of one: at alpha
    # in a family of three rows, at the Bonferroni level alpha / 3 (what Holm needs at most)
    fam = Cl.family([_row([0.0, 0.1, 0.2], 0.05), _row([0.3, 0.31, 0.29]), _row([0.0, 0.01, 0.02])])
    n = np.arange(2, 100)
    assert fam[0]["seeds needed"] == n[stats.t.ppf(1 - Cl.ALPHA / 3, n - 1) * 0.1 / np.sqrt(n) < 0.05][0]
    assert fam[0]["seeds needed"] > 13 and fam[0]["seeds needed for"] == "paper effect"
    assert fam[2]["seeds needed for"] == "our difference"


def test_the_binding_comparison_is_the_one_that_decides():
    a = np.array([0.50, 0.52, 0.51])
    near = Cl.paired_test(a, a - np.array([0.01, -0.02, 0.0]))          # A ~ B: undecided
    far_ahead = Cl.paired_test(a, a - np.array([0.30, 0.31, 0.29]))     # A far above C
    far_behind = Cl.paired_test(a, a + np.array([0.40, 0.42, 0.41]))    # D far above A
    weak_win = Cl.paired_test(a, a - np.array([0.05, 0.08, 0.06]))
    # holds: the weakest win decides
    assert Cl.all_pass({"C": far_ahead, "W": weak_win})["against"] == "W"
    # fails without a loss: the comparison furthest from a win (B) decides, not the far one
    assert Cl.all_pass({"B": near, "C": far_ahead})["against"] == "B"
    # a competitor significantly ahead decides a contradiction (the GradCAM case: it is the
    # highest method, and it is what refutes "best"), even when another is closer
    t = Cl.all_pass({"B": near, "C": far_ahead, "D": far_behind})
    assert t["against"] == "D" and t["diff"] == pytest.approx(-0.41)
    assert Cl.claim("best", "T", "o", test=t, paper_effect=0.02)["verdict"] == "contradicted"


def test_family_adjusts_each_question_by_holm():
    rows = [_row([0.02, 0.05, 0.03]), _row([0.015, 0.05, 0.03]), _row([0.30, 0.31, 0.29]),
            _row([0.30, 0.31, 0.29], not_testable="by construction"), Cl.claim("m", "T", "o", holds=True)]
    raw = [r["p (one-sided)"] for r in rows[:3]]
    assert all(p < Cl.ALPHA for p in raw) and [r["verdict"] for r in rows[:3]] == ["holds"] * 3
    fam = Cl.family(rows)
    assert [r["adjusted p"] for r in fam[:3]] == pytest.approx(Cl.holm(raw))
    assert [r["family size"] for r in fam] == [3, 3, 3, None, None]
    assert [r["verdict"] for r in fam] == ["inconclusive", "inconclusive", "holds", "not testable here", "holds"]
    assert rows[0]["verdict"] == "holds"  # the input rows are left as they were
    assert Cl.tally(fam) == {"holds": 2, "contradicted": 0, "smaller than reported": 0, "inconclusive": 2,
                             "not testable here": 1, "not tested at this profile": 0}
    assert "5 claims of the paper: 2 holds, 2 inconclusive, 1 not testable here" in Cl.tally_text(fam)
    with pytest.raises(ValueError, match="status="):
        Cl.tally(fam, "ours")


def test_seed_stats():
    m, s = Cl.seed_mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and s == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert Cl.fmt_ms([0.5], "{:.2f}") == "0.50 ± n/a"
    assert Cl.fmt_ms([1.0, 3.0], "{:.1f}") == f"2.0 ± {np.std([1, 3], ddof=1):.1f}"


def test_table_formats_rows():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    rows = [Cl.claim("a", "T1", "x", test=t, paper_effect=0.02),
            Cl.claim("b", "T2", "y", test=Cl.paired_test([1.0], [0.0])),
            Cl.claim("c", "T3", "z", holds=True, paper_effect="×2.75"),
            Cl.claim("d", "T4", "w", test=t, not_testable="scores its own objective", note="n")]
    df = Cl.table(rows)
    assert list(df.columns) == list(Cl.TABLE_COLUMNS)
    assert list(df["verdict"]) == ["holds", "not tested at this profile", "holds", "not testable here"]
    assert df.loc[0, "90% CI"].startswith("[+") and df.loc[0, "90% CI"].endswith("]")
    assert df.loc[1, "p (one-sided)"] == "" and df.loc[2, "paper effect"] == "×2.75"
    assert df.loc[3, "note"] == "not testable: scores its own objective; n"


def test_fmt_test_shows_the_interval():
    t = Cl.paired_test([0.71, 0.64, 0.69], [0.60, 0.55, 0.61])
    assert Cl.fmt_test(t).startswith("Δ +0.0933, 90% CI [+") and "], p " in Cl.fmt_test(t)


def test_records_and_seed_table_summarise_per_model_in_the_given_order():
    evals = {("b", 0): {"rows": {"acc": 0.5, "gini": 0.1}}, ("b", 1): {"rows": {"acc": 0.7, "gini": 0.3}},
             ("a", 0): {"rows": {"acc": 0.2, "gini": 0.4}}, ("a", 1): {"rows": {"acc": 0.4, "gini": 0.4}}}
    df = Cl.records(evals, split="test")
    assert len(df) == 8 and set(df.columns) == {"method", "seed", "split", "measure", "value"}
    t = Cl.seed_table(df, ["gini", "acc"], ["a", "b"], {"a": "A"}, digits=2)
    assert list(t.index) == ["A", "b"] and list(t.columns) == ["gini", "acc"]
    assert t.loc["b", "acc"] == "0.60 ± 0.14" and t.loc["A", "gini"] == "0.40 ± 0.00"


def test_a_paper_effect_per_competitor_is_read_against_the_binding_one():
    a = np.array([0.50, 0.52, 0.51])
    near = Cl.paired_test(a, a - np.array([0.01, -0.02, 0.0]))
    ahead = Cl.paired_test(a, a - np.array([0.30, 0.31, 0.29]))
    t = Cl.all_pass({"B": near, "C": ahead})
    assert t["against"] == "B"
    # the paper's 0.2 over B is far above our interval against B: smaller than reported
    row = Cl.claim("best", "T", "o", test=t, paper_effect={"B": 0.2, "C": 0.3})
    assert row["paper effect"] == 0.2 and row["verdict"] == "smaller than reported"
    # seeds at the Bonferroni level of the two compared effects
    assert row["seeds needed"] == Cl._seeds_needed(near, 0.2, alpha=Cl.ALPHA / 2) and row["seeds needed for"] == "paper effect"
    # a paper gap to B of 0.005 lies inside our interval: undecided
    assert Cl.claim("best", "T", "o", test=t, paper_effect={"B": 0.005, "C": 0.3})["verdict"] == "inconclusive"


def test_a_paper_effect_ruled_out_against_one_competitor_makes_it_the_binding_one():
    """P1's Insertion case: against ℓ2 (the largest p) the paper's gap of 0.022 lies inside our
    interval, against ce its gap of 0.078 is ruled out: ce decides "smaller than reported", so ce
    is the binding comparison and its paper effect is the one shown."""
    a = np.array([0.40, 0.42, 0.38])
    vs_l2 = Cl.paired_test(a, a - np.array([-0.03, 0.02, 0.0]))
    vs_ce = Cl.paired_test(a, a - np.array([0.004, 0.002, 0.0]))
    gaps = {"l2": 0.022, "ce": 0.078}
    assert Cl.all_pass({"l2": vs_l2, "ce": vs_ce})["against"] == "l2"  # without the paper's gaps
    t = Cl.all_pass({"l2": vs_l2, "ce": vs_ce}, gaps)
    assert t["against"] == "ce" and t["effects"] == gaps
    row = Cl.claim("best", "T", "o", test=t)  # the gaps come with the test
    assert row["verdict"] == "smaller than reported" and row["paper effect"] == 0.078 and row["binding"] == "ce"
    assert row["90% CI"][1] < 0.078


def test_compare_is_the_paired_test_or_the_intersection_union_test_it_names():
    vals = {"a": [0.9, 0.8, 0.85, 0.95], "b": [0.5, 0.6, 0.55, 0.5], "c": [0.8, 0.7, 0.9, 0.9]}
    values = vals.__getitem__
    one = Cl.compare(values, "a", "b", "a beats b", "Fig. 1", paper_effect=0.3)
    direct = Cl.claim("a beats b", "Fig. 1", "x", test=Cl.paired_test(vals["a"], vals["b"]), paper_effect=0.3)
    assert {k: v for k, v in one.items() if k != "ours (mean ± std over seeds)"} == \
        {k: v for k, v in direct.items() if k != "ours (mean ± std over seeds)"}
    assert one["ours (mean ± std over seeds)"] == "a 0.875 ± 0.065 vs b 0.538 ± 0.048"
    many = Cl.compare(values, "a", ["b", "c"], "a beats each", "Fig. 1", label=str.upper,
                          paper_effect={"b": 0.3, "c": 0.1})
    t = Cl.all_pass({m: Cl.paired_test(vals["a"], vals[m]) for m in ("b", "c")}, {"b": 0.3, "c": 0.1})
    assert many["binding"] == t["against"] == "c" and many["p (one-sided)"] == t["p"]
    assert many["ours (mean ± std over seeds)"].startswith("A 0.875 ± 0.065 vs binding: C ")
    assert many["paper effect"] == 0.1  # the binding competitor's
    each = Cl.compare(values, ["a", "c"], "b", "each beats b", "Fig. 1", alternative="greater")
    assert each["ours (mean ± std over seeds)"].startswith("binding: ")
    lone = Cl.compare(values, "a", ["b"], "a beats b", "Fig. 1", paper_effect={"b": 0.3})
    assert lone["paper effect"] == 0.3 and lone["binding"] is None and lone["p (one-sided)"] == one["p (one-sided)"]
    low = Cl.compare(values, "b", "a", "b lower", "Fig. 1", alternative="less")
    assert low["verdict"] == "holds" and low["difference"] < 0
    with pytest.raises(ValueError, match="both lists"):
        Cl.compare(values, ["a"], ["b"], "x", "y")
    with pytest.raises(ValueError, match="empty"):
        Cl.compare(values, "a", [], "x", "y")
