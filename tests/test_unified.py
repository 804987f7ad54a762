"""Tests of papers.unified.evaluate_model (notebook 05's scoring core) against the library's
functions called directly, and the properties an attack of size 0 must give."""
import pytest
import torch

from robust_saliency import attacks, attributions, data, metrics, models
from robust_saliency.papers import p1, p2, unified

TINY = {"pgd_steps": 2, "rps_n": 2, "aam_steps": 2, "untargeted_steps": 2, "topk_steps": 2}


@pytest.fixture(scope="module")
def case():
    ds = data.load("shapes", split="test", size=16)
    torch.manual_seed(0)
    net = models.build("small_cnn", num_classes=ds.num_classes, in_shape=tuple(ds.in_shape), width=4).eval()
    return net, ds.x[:8], torch.as_tensor(ds.y[:8]), ds.masks[:8]


def test_every_measure_is_the_library_function_it_names(case):
    net, x, y, masks = case
    r = unified.evaluate_model(net, x, y, masks, **TINY)
    assert r == unified.evaluate_model(net, x, y, masks, **TINY)  # seeded: the same numbers again
    assert r["accuracy"] == metrics.accuracy(net, (x, y))
    pgd = attacks.get("pgd", norm="l2", eps=0.5, steps=2, seed=0)
    assert r["PGD l2"] == metrics.adversarial_accuracy(net, x, y, pgd)
    grad = attributions.get("grad")(net, x, y).detach()
    assert r["gini"] == pytest.approx(float(metrics.gini(grad.abs().sum(1)).mean()), rel=1e-6)
    assert r["object share"] == pytest.approx(float(metrics.object_share(grad, masks).mean()), rel=1e-6)
    rps = metrics.rps(net, x, y, "grad", 8, n=2, similarity="cosine", postprocess="abs_max", seed=0)
    assert r["RPS cosine"] == pytest.approx(float(rps.mean()), rel=1e-5)
    ins = metrics.insertion_score(net, x, y, grad, **p1.insertion_settings(net))
    assert r["insertion"] == pytest.approx(float(ins.mean()), rel=1e-5)
    assert all(0.0 <= r[k] <= 1.0 + 1e-6 for k in ("accuracy", "gini", "object share", "deletion", "preservation"))
    # P2's measures explain the clean prediction, on P2's post-processed maps (as p2's notebook does)
    pred = net(x).argmax(1)
    pmap = attributions.get("grad")(net, x, pred).detach()
    dele = metrics.deletion_score(net, x, pred, p2.pixel_maps("grad", pmap), **p2.game_kw(net, x))
    assert r["deletion"] == pytest.approx(float(dele.mean()), rel=1e-5)


def test_attacks_of_size_zero_leave_the_maps_alone(case):
    net, x, y, masks = case
    r = unified.evaluate_model(net, x, y, None, **{**TINY, "aam_eps": 0, "untargeted_eps": 0, "topk_eps": 0})
    for name in ("PGD", "top-k attack"):
        assert r[f"spearman ({name})"] == pytest.approx(1.0) and r[f"top-k intersection ({name})"] == pytest.approx(1.0)
    assert r["AAM cosine"] == pytest.approx(1.0) and r["AAM ssim"] == pytest.approx(1.0, abs=1e-5)
    assert r["adv-insertion"] == pytest.approx(r["insertion"]) and "object share" not in r


def test_a_bad_k_is_refused_before_any_work(case):
    net, x, y, _ = case
    with pytest.raises(ValueError, match="k=2 is not valid; accepted: a fraction in"):
        unified.evaluate_model(net, x, y, k=2)


def _tiny_params():
    from robust_saliency.papers import p4

    params = p4.settings("smoke")
    sp = dict(p4.section(params, "shapes"))
    sp.update(num_epochs=1, n_train=64, n_val=32, n_test=32, progress=False)
    return sp, p4.shapes_sets(params)


def test_every_spec_builds_its_method_and_a_bad_name_is_refused():
    for name, spec in unified.SPECS.items():
        if spec.method != "atex":
            assert unified._job({}, name, 0, None)["method"] == spec.method
    assert unified._job({}, "nrat_group", 1, {"eps": 0.02})["method_kw"] == {"mode": "group", "eps": 0.02}
    assert unified._job({}, "hessian", 0, None)["model_kw"] == {"activation": "softplus"}
    with pytest.raises(ValueError, match="model 'lrp' is not known"):
        unified._job({}, "lrp", 0, None)
    with pytest.raises(ValueError):
        unified._job({}, "input_grad", 0, {"lam": -1})  # the method's own check, before any work


def test_atex_distils_the_ce_model_of_its_seed_and_starts_from_it(cache_dir):
    sp, sets = _tiny_params()
    light = {"n_shifts": 2, "n_orth": 1, "smooth_n": 2}
    ce, student = unified.fit_models(sp, sets["train"], [("ce", 0, None), ("atex", 0, light)])
    again = unified.fit_models(sp, sets["train"], [("atex", 0, light)])[0]
    assert again.train_info["key"] == student.train_info["key"] and again.train_info["from_cache"]
    other = unified.fit_models(sp, sets["train"], [("atex", 1, light)])[0]
    assert other.train_info["key"] != student.train_info["key"]  # another seed: another teacher


def test_select_takes_the_strongest_setting_within_the_band(cache_dir):
    sp, sets = _tiny_params()
    grids = {"input_grad": [{"lam": 0.01}, {"lam": 0.1}], "gaussian_noise": [{"sigma": 2.0}, {"sigma": 8.0}]}
    wide = unified.select(sp, sets, grids, tol=1.0)
    assert wide["chosen"] == {"input_grad": {"lam": 0.1}, "gaussian_noise": {"sigma": 8.0}}  # all admissible
    narrow = unified.select(sp, sets, grids, tol=-1.0)  # none admissible: the most accurate
    t = narrow["table"]
    for name, g in t.groupby("method"):
        best = g.loc[g["validation accuracy"].idxmax()]
        assert best["chosen"].startswith("✓ none within tolerance")
    assert list(wide["table"].columns) == ["method", "setting", "strength rank", "validation accuracy", "chosen"]
    with pytest.raises(ValueError, match=r"grids for \['ce'\] are not valid"):
        unified.select(sp, sets, {"ce": [{}]}, tol=0.1)


def _records():
    """Three methods, three seeds: at_pgd most robust, ce most accurate; deletion lower is better."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = {"ce": (0.9, 0.1, 0.30), "input_grad": (0.85, 0.4, 0.20), "at_pgd": (0.8, 0.6, 0.25)}
    import pandas as pd

    return pd.DataFrame([{"method": n, "seed": s, "measure": m, "value": v + 0.001 * rng.standard_normal()}
                         for n, (acc, rob, dele) in base.items() for s in range(3)
                         for m, v in (("accuracy", acc), ("PGD linf", rob), ("deletion", dele))])


def test_ranks_follow_each_measures_direction_and_the_table_averages_them():
    df = _records()
    t = unified.rank_table(df, ["accuracy", "PGD linf", "deletion"])
    assert list(t.loc[unified.LABELS["ce"], ["accuracy", "PGD linf", "deletion"]]) == [1.0, 3.0, 3.0]
    assert t.loc[unified.LABELS["input_grad"], "deletion"] == 1.0  # lower deletion is better
    assert t.loc[unified.LABELS["at_pgd"], "mean rank"] == pytest.approx((3 + 1 + 2) / 3)
    assert (t.attrs["std"].fillna(0) == 0).all().all()  # the same order in every seed
    corr = unified.metric_correlation(df, ["accuracy", "PGD linf"])
    assert corr.loc["accuracy", "PGD linf"] == pytest.approx(-1.0)  # ranked in opposite orders
    with pytest.raises(ValueError, match="has no direction"):
        unified.ranks(df.assign(measure="mystery"), ["mystery"])


def test_the_leaderboard_is_written_as_csv_and_latex(tmp_path):
    import pandas as pd

    df = _records()
    paths = unified.write_leaderboard(df, ["accuracy", "deletion"], tmp_path / "leaderboard")
    csv = pd.read_csv(paths[0])
    assert list(csv.columns) == ["method", "accuracy mean", "accuracy std", "deletion mean", "deletion std", "seeds"]
    ce = csv[csv.method == unified.LABELS["ce"]].iloc[0]
    assert ce["accuracy mean"] == pytest.approx(df[(df.method == "ce") & (df.measure == "accuracy")].value.mean())
    assert ce["seeds"] == 3 and "\\begin{tabular}" in open(paths[1]).read()


def test_a_part_subset_stays_out_of_the_mean_rank_and_the_correlation():
    import pandas as pd

    df = _records()
    wg = pd.DataFrame([{"method": m, "seed": s, "measure": "worst-group accuracy", "value": v}
                       for m, v in (("ce", 0.1), ("at_pgd", 0.9)) for s in range(3)])  # input_grad not scored
    both = pd.concat([df, wg], ignore_index=True)
    t = unified.rank_table(both, ["accuracy", "PGD linf", "deletion", "worst-group accuracy"])
    assert t.attrs["mean over"] == ["accuracy", "PGD linf", "deletion"]
    assert list(t["mean rank"]) == list(unified.rank_table(df, ["accuracy", "PGD linf", "deletion"])["mean rank"])
    assert t.loc[unified.LABELS["at_pgd"], "worst-group accuracy"] == 1.0
    assert list(unified.metric_correlation(both, ["accuracy", "PGD linf", "worst-group accuracy"]).columns) == [
        "accuracy", "PGD linf"]


def test_pairwise_pairs_by_seed_not_by_position():
    import pandas as pd

    rows = [{"method": "at_pgd", "seed": s, "measure": "accuracy", "value": v} for s, v in ((0, 0.5), (1, 0.6), (2, 0.7))]
    rows += [{"method": "ce", "seed": s, "measure": "accuracy", "value": v} for s, v in ((1, 0.55), (2, 0.66), (3, 0.1))]
    (row,) = unified.pairwise(pd.DataFrame(rows), [("at_pgd", "ce", "accuracy", "why")])
    assert row["difference"] == pytest.approx(((0.6 - 0.55) + (0.7 - 0.66)) / 2)  # seeds 1 and 2 only


def test_summary_means_stds_and_a_missing_measure():
    import numpy as np
    import pandas as pd

    df = pd.concat([_records(), pd.DataFrame([{"method": "ce", "seed": 0, "measure": "time × ce", "value": 1.0}])])
    t = unified.summary(df, ["accuracy", "time × ce"])
    acc = df[(df.method == "at_pgd") & (df.measure == "accuracy")].value
    assert t.loc["at_pgd", "accuracy mean"] == pytest.approx(acc.mean()) and t.loc["at_pgd", "accuracy std"] == pytest.approx(acc.std())
    assert t.loc["ce", "time × ce mean"] == 1.0 and np.isnan(t.loc["ce", "time × ce std"])  # one measurement
    assert np.isnan(t.loc["at_pgd", "time × ce mean"]) and t.loc["at_pgd", "seeds"] == 3


def test_pairwise_verdicts_are_ours_one_holm_family():
    df = _records()
    rows = unified.pairwise(df, [("at_pgd", "ce", "PGD linf", "P3 vs P1: never compared"),
                                 ("ce", "input_grad", "deletion", "lower is better: ce does not beat it")])
    assert [r["verdict"] for r in rows] == ["holds", "contradicted"]
    acc = df[df.measure == "accuracy"].groupby("method").value.mean()
    assert rows[0]["note"].endswith(f"test accuracy {unified.LABELS['at_pgd']} {acc['at_pgd']:.3f} vs "
                                    f"{unified.LABELS['ce']} {acc['ce']:.3f}")
    assert {r["status"] for r in rows} == {"beyond the paper"} and {r["family size"] for r in rows} == {2}
    with pytest.raises(ValueError, match="measure 'nothing' is not in the records"):
        unified.pairwise(df, [("ce", "at_pgd", "nothing", "")])


def test_evaluate_many_caches_each_model_and_reads_its_settings(cache_dir):
    sp, sets = _tiny_params()
    nets = unified.fit_models(sp, sets["train"], [("ce", 0, None), ("input_grad", 0, {"lam": 0.1})])
    x, y = unified.batch(sets["test"], 8)
    masks = sets["test"].masks[:8]
    settings = {**TINY, "k": 0.2}
    df = unified.evaluate_many(settings, {("ce", 0): nets[0], ("input_grad", 0): nets[1]}, x, y, masks)
    direct = unified.evaluate_model(nets[1], x, y, masks, seed=0, **settings)
    got = df[df.method == "input_grad"].set_index("measure").value
    assert set(got.index) == set(direct) and all(got[m] == pytest.approx(v, rel=1e-6) for m, v in direct.items())
    again = unified.evaluate_many(settings, {("input_grad", 0): nets[1]}, x, y, masks)
    assert (again.value.to_numpy() == df[df.method == "input_grad"].value.to_numpy()).all()
    other = unified.evaluate_many({**settings, "k": 0.3}, {("input_grad", 0): nets[1]}, x, y, masks)
    assert other.set_index("measure").value["top-k intersection (PGD)"] != got["top-k intersection (PGD)"]


def test_step_costs_are_relative_to_ce_on_each_methods_own_network(cache_dir):
    sp, sets = _tiny_params()
    teacher = unified.fit_models(sp, sets["train"], [("ce", 0, None)])[0]
    chosen = {"input_grad": {"lam": 0.1}, "hessian": {"lam": 1e-3}, "atex": {"n_shifts": 2, "n_orth": 1, "smooth_n": 2}}
    df = unified.step_cost_records(sp, sets["train"], chosen, teacher, n_batches=2)
    t = df[df.measure == "time × ce"].set_index("method").value
    assert t["ce"] == 1.0 and set(t.index) == {"ce", "input_grad", "hessian", "atex"}
    assert t["atex"] > 1.0 and t["input_grad"] > 1.0  # a double backprop and a distillation cost more than CE


def test_leakage_and_worst_group_records_are_the_metrics_on_their_own_data(cache_dir):
    from robust_saliency import data, metrics
    from robust_saliency.papers import p4

    params = p4.settings("smoke")
    bp = {**dict(p4.section(params, "block")), "progress": False}
    bsets = p4.block_sets(params)
    net = unified.fit_models(bp, bsets["train"], [("ce", 0, None)])[0]
    df = unified.leakage_records({"ig_steps": 8, "leakage_n": 16}, {("ce", 0): net}, bsets["test"])
    x, y = unified.batch(bsets["test"], 16)
    mask = bsets["test"].null_mask[:16]
    direct = metrics.feature_leakage(net, x, y, mask, steps=8).mean()
    got = df.set_index("measure").value
    assert list(df.measure) == ["feature leakage", "null share", "accuracy (BlockMNIST)"]
    assert got["feature leakage"] == pytest.approx(float(direct), rel=1e-5)
    # the share by hand: an 8-step right-Riemann IG from a zero baseline (x * mean of the gradients)
    xs = torch.stack([x * (i + 1) / 8 for i in range(8)]).requires_grad_(True)
    out = net(xs.flatten(0, 1)).gather(1, y.repeat(8)[:, None]).sum()
    ig = x * torch.autograd.grad(out, xs)[0].mean(0)
    share = ((ig * mask).flatten(1).norm(dim=1) / ig.flatten(1).norm(dim=1)).mean()
    assert got["null share"] == pytest.approx(float(share), rel=1e-4)
    assert got["accuracy (BlockMNIST)"] == pytest.approx(float((net(unified.batch(bsets["test"])[0]).argmax(1)
                                                                 == unified.batch(bsets["test"])[1]).float().mean()))
    sp = {**dict(p4.section(params, "spurious")), "progress": False}
    ssets = p4.spurious_sets(params, "spurious_shapes")
    snet = unified.fit_models(sp, ssets["train"], [("ce", 0, None)])[0]
    wg = unified.worst_group_records({}, {("ce", 0): snet}, ssets["test"]).set_index("measure").value
    xs, ys = unified.batch(ssets["test"])
    pred = snet(xs).argmax(1)
    assert wg["worst-group accuracy"] == pytest.approx(metrics.worst_group_accuracy(pred, ys, torch.as_tensor(ssets["test"].groups)))
    with pytest.raises(ValueError, match="has no null_mask"):
        unified.leakage_records({}, {("ce", 0): snet}, ssets["test"])
    with pytest.raises(ValueError, match="has no groups"):
        unified.worst_group_records({}, {("ce", 0): net}, data.load("shapes", split="test", size=16))


def test_the_comparisons_name_known_models_and_measures_with_a_direction():
    for a, b, measure, why in unified.COMPARISONS:
        assert a in unified.SPECS and b in unified.SPECS and a != b and why
        assert unified._better(measure) in (1, -1)



def test_the_comparisons_measures_are_scored(case):
    net, x, y, masks = case
    scored = set(unified.evaluate_model(net, x, y, masks, **TINY)) | {"feature leakage", "null share"}
    assert {m for _, _, m, _ in unified.COMPARISONS} <= scored


def test_an_explainer_too_costly_to_attack_is_scored_without_the_map_attacks(case):
    net, x, y, masks = case
    r = unified.evaluate_model(net, x[:4], y[:4], masks[:4], attribution="smoothgrad", attribution_attacks=False, **TINY)
    assert not any(m.startswith("AAM") or "top-k attack" in m for m in r) and "adv-insertion" not in r
    assert {"RPS cosine", "insertion", "deletion", "spearman (PGD)", "gini", "object share"} <= set(r)
    assert r == unified.evaluate_model(net, x[:4], y[:4], masks[:4], attribution="smoothgrad",
                                       attribution_attacks=False, **TINY)  # the explainer's noise is seeded


def test_settings_refuse_bad_models_and_grids_before_any_work():
    s = unified.settings("smoke")
    assert type(s).__name__ == "UnifiedBenchmarkSettings" and s.block.seeds == [0] and s.spurious.dataset == "spurious_shapes"
    assert list(unified.settings("cpu")["models"]) == list(unified.SPECS)  # the cpu profile compares all 18
    bad = [({"models": ["l2", "ce"]}, "models="), ({"models": ["ce", "nope"]}, "models="),
           ({"relex_models": ["iga"]}, "relex_models="), ({"grid": {"l2_cosd": [{"lam_l2": -1}]}}, "grid="),
           ({"spurious_models": ["input_grad"]}, "spurious_models="),
           ({"spurious_models": ["ce", "iga"]}, "spurious_models="),
           ({"spurious_grid": {"nope": [{}]}}, "spurious_grid="), ({"k": 2}, "'k'|k=")]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            unified.settings("smoke", **kw)
    sp = unified.section(s, "block")
    assert sp["dataset"] == "block_digits" and sp["model"] == "mlp" and sp["seeds"] == [0] and sp["part"] == "block"
    assert not any(k.startswith(("block_", "spurious_")) for k in sp)
    with pytest.raises(ValueError, match="part='shapes' is not valid"):
        unified.section(s, "shapes")


def test_a_part_selects_with_its_own_grid_and_otherwise_takes_the_main_setting(cache_dir):
    params = unified.settings("smoke", spurious_n_train=64, spurious_n_val=32, spurious_n_test=32, progress=False)
    sets = unified.part_sets(params, "spurious")
    main = {"input_grad": {"lam": 0.2}, "marginal_density": {"lam": 0.3}}
    out = unified.fit_part(params, "spurious", sets, main)
    assert set(out["models"]) == {("ce", 0), ("input_grad", 0), ("marginal_density", 0)}
    assert out["chosen"] == {"input_grad": {"lam": 0.01}, "marginal_density": {"lam": 0.3}}  # own grid / main's
    assert list(out["selection"]["setting"]) == ["lam=0.01"]
    # the part's input_grad model is the one the part's grid trains: the same cache entry
    again = unified.fit_models(unified.section(params, "spurious"), sets["train"], [("input_grad", 0, {"lam": 0.01})])[0]
    for a, b in zip(out["models"][("input_grad", 0)].state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    params = unified.settings("smoke", spurious_grid={}, spurious_n_train=64, spurious_n_val=32, spurious_n_test=32,
                              progress=False)
    out = unified.fit_part(params, "spurious", sets, main)
    assert out["chosen"] == main and out["selection"] is None


def test_relex_is_scored_beside_the_gradient_on_the_same_images(case, cache_dir):
    net, x, y, masks = case
    params = {**TINY, "attribution": "grad"}
    df = unified.relex_records(params, {("ce", 0): net}, x[:2], y[:2], masks[:2])
    assert list(dict.fromkeys(df.explainer)) == ["relex", "grad"]
    grad = df[df.explainer == "grad"].set_index("measure").value
    direct = unified.evaluate_model(net, x[:2], y[:2], masks[:2], attribution_attacks=False, **TINY)
    assert grad.to_dict() == pytest.approx(direct)
    relex = df[df.explainer == "relex"].set_index("measure").value
    assert set(relex.index) == set(grad.index) and not any(m.startswith("AAM") for m in relex.index)
    assert relex["deletion"] != grad["deletion"]  # another map
