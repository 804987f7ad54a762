"""papers.p3 (notebook 03's protocol): parameters checked before any work, the gaze maps against
their Gaussian formula, the training settings of each model, Table 5's relative drops and the
DiffROAR / stability helpers on tiny runs."""
import math

import pandas as pd
import pytest
import torch

from robust_saliency import attributions, methods, models
from robust_saliency.papers import p3


def _smoke(**kw):
    return p3.settings("smoke", **kw)


def test_settings_reject_bad_parameters_before_any_work():
    params = _smoke()
    assert params["group_size"] == 4 and params["map_space"] == "normalized"
    with pytest.raises(ValueError, match="grid="):
        _smoke(grid={"l1": [{"eps": 0.1}]})
    with pytest.raises(ValueError, match="eps"):
        _smoke(grid={**params["grid"], "l1": [{"eps": -1.0}]})
    with pytest.raises(ValueError, match="variants="):
        _smoke(variants=["l1_pgd"])
    with pytest.raises(ValueError, match="group_size=3"):
        _smoke(group_size=3)
    with pytest.raises(ValueError, match="map_space="):
        _smoke(map_space="logit")
    with pytest.raises(ValueError, match="roar_fractions="):
        _smoke(roar_fractions=[0.5, 1.5])
    with pytest.raises(ValueError, match="pretrain_epochs="):
        _smoke(pretrain_epochs=-1)
    with pytest.raises(ValueError, match="data_root"):  # P3's datasets are real: they need data_root
        p3.settings("paper")
    with pytest.raises(ValueError, match="harmonize_grid="):
        _smoke(harmonize_grid=[])


def test_each_model_gets_its_method_and_steps():
    params = _smoke(num_epochs=5)
    assert p3._method(params, "group", {"eps": 0.3}) == (
        "norm_regularized_at", {"mode": "group", "eps": 0.3, "group_size": 4}, 5)
    method, kw, epochs = p3._method(params, "l1_free", {"eps": 0.1})
    assert kw["training"] == "free" and epochs == math.ceil(5 / kw["replays"])  # as many optimizer steps
    assert methods.get(method, **kw).replays == kw["replays"]
    _, kw, _ = p3._method(params, "weighted_l2", {"eps": 1.0})
    assert methods.get("norm_regularized_at", **kw).extras == ("gaze",)
    assert p3.hp_of(p3.SPECS, {"l1": {"eps": 0.2}}, "l1_mifgsm") == {"eps": 0.2} and p3.hp_of(p3.SPECS, {}, "l2") == {}
    assert set(p3.SPECS) == set(p3.MAIN) | set(p3.VARIANTS) | set(p3.HARMONIZATION) == set(p3.LABELS)


def test_gaze_maps_are_the_gaussian_blur_of_the_mask():
    masks = torch.zeros(2, 1, 15, 15, dtype=torch.bool)
    masks[0, 0, 7, 7] = True
    masks[1, 0, 3:6, 9:12] = True
    sigma = 1.3
    g = p3.gaze_maps(masks, sigma)
    assert g.shape == (2, 1, 15, 15) and torch.allclose(g.flatten(1).amax(1), torch.ones(2))
    i, j = torch.meshgrid(torch.arange(15.0), torch.arange(15.0), indexing="ij")
    want = torch.exp(-((i - 7) ** 2 + (j - 7) ** 2) / (2 * sigma ** 2))
    near = ((i - 7).abs() <= 3) & ((j - 7).abs() <= 3)  # inside the truncated kernel
    assert torch.allclose(g[0, 0][near], want[near], atol=2e-3)
    assert torch.equal(p3.gaze_maps(masks, 0).bool(), masks)  # sigma 0: the mask itself


def test_explain_is_p3s_simplegrad_in_the_normalized_input():
    torch.manual_seed(0)
    net = models.build("small_cnn", 3, (2, 8, 8), width=3, mean=[0.4, 0.5], std=[0.2, 0.5]).double().eval()
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    z = ((x - torch.tensor([0.4, 0.5]).view(1, -1, 1, 1).double()) / torch.tensor([0.2, 0.5]).view(1, -1, 1, 1).double())
    z.requires_grad_(True)
    assert isinstance(net[0], models.Normalize)
    (g,) = torch.autograd.grad(net[1:](z).gather(1, y[:, None]).sum(), z)  # the layers after Normalize
    assert torch.allclose(p3.explain({"map_space": "normalized"}, net, x, y), g, atol=1e-10)
    assert torch.allclose(p3.explain({"map_space": "pixel"}, net, x, y), attributions.grad(net, x, y))


def test_aopc_table_gives_the_relative_drop():
    rows = []
    for s, (base, sparse) in enumerate([(0.5, 0.4), (0.4, 0.3)]):
        for kind in ("grad", "smoothgrad"):
            rows += [{"method": "ce", "seed": s, "measure": f"AOPC 20 ({kind})", "value": base},
                     {"method": "ce", "seed": s, "measure": f"AOPC 20 (sparsified {kind})", "value": sparse}]
        rows.append({"method": "ce", "seed": s, "measure": "AOPC 20 (sparse moreaugrad)", "value": base / 2})
    table, long = p3.aopc_table(pd.DataFrame(rows), ["ce"], [20])
    drops = long[long["post-processing"] == "sparsified grad"].sort_values("seed")["drop %"].tolist()
    assert drops == pytest.approx([20.0, 25.0])
    assert table.loc["sparsified grad — standard", "Δ AOPC 20 (%)"] == "22.5 ± 3.5"
    # Sparse MoreauGrad is scored against SmoothGrad, as P3 pairs them
    assert long[long["post-processing"] == "sparse moreaugrad"]["drop %"].tolist() == pytest.approx([50.0, 50.0])


def test_stability_is_one_for_a_model_and_its_copy():
    torch.manual_seed(0)
    from robust_saliency import data

    params = {**_smoke(), "eval_subset": 6}
    test = data.load("shapes", "test", size=16, n=10)
    net = models.build("small_cnn", 10, (3, 16, 16), width=3).eval()
    other = models.build("small_cnn", 10, (3, 16, 16), width=3).eval()
    rows = p3.stability(params, {("ce", 0): net, ("l1", 0): net}, {("ce", 0): net, ("l1", 0): other},
                        {0: test})
    got = {(r["method"], r["measure"]): r["value"] for r in rows}
    assert got["ce", "stability"] == pytest.approx(1.0) and got["ce", "SSIM with twin"] == pytest.approx(1.0)
    assert got["l1", "stability"] < 0.9


def test_regimes_and_their_settings():
    params = _smoke()
    assert params["pretrain_epochs"] == 0 and params["grad_clip"] is None  # P3's code: from scratch, no clip
    assert p3.regime_params(params, "scratch") is params
    ft = p3.regime_params(params, "finetune")
    assert ft["pretrain_epochs"] == params["finetune"]["pretrain_epochs"] >= 1
    assert ft["grid"] == params["finetune"]["grid"] != params["grid"] and ft["finetune"] is None
    with pytest.raises(ValueError, match="regime="):
        p3.regime_params(params, "pretrained")
    with pytest.raises(ValueError, match="regime="):
        p3.regime_params(ft, "finetune")  # no second regime inside the second
    with pytest.raises(ValueError, match="finetune="):
        _smoke(finetune={"grid": params["grid"], "lr": 0.1})
    with pytest.raises(ValueError, match="pretrain_epochs"):
        _smoke(finetune={"grid": params["grid"], "pretrain_epochs": 0})
    with pytest.raises(ValueError, match="eps"):
        _smoke(finetune={"grid": {**params["grid"], "l1": [{"eps": -1.0}]}, "pretrain_epochs": 1})
    # the harmonization models perturb [0, 1] pixels, as cub_train.py (no Normalize on CUB-GHA)
    assert p3._method(params, "weighted_l2", {"eps": 1.0})[1]["space"] == "pixel"
    assert p3._method(params, "l1_iterative_b4", {"eps": 0.1})[1]["init"] == "one_step"


def _rand_rows(share_true, share_perm, ssim_perm, names=("ce", "elastic")):
    rows = []
    for n in names:
        for s in range(3):
            for labels, share, ssim in (("true", share_true, 1.0), ("permuted", share_perm, ssim_perm)):
                rows += [{"method": n, "seed": s, "labels": labels, "measure": k, "value": v + 0.001 * s}
                         for k, v in (("share of the most frequent prediction", share), (p3.RAND_SSIM, ssim))]
    return pd.DataFrame(rows)


def test_random_label_claims_stand_only_on_the_true_label_control():
    params = {"random_labels_for": ["ce", "elastic"]}
    tw = pd.DataFrame([{"method": n, "seed": s, "measure": "SSIM with twin", "value": 0.3 + 0.01 * s}
                       for n in ("ce", "elastic") for s in range(3)])
    ok = p3._random_label_rows(params, tw, _rand_rows(0.15, 0.99, 0.05))
    assert [r["verdict"] for r in ok] == ["holds", "holds"]
    assert "true labels 0.151" in ok[1]["ours (mean ± std over seeds)"]
    both = p3._random_label_rows(params, tw, _rand_rows(0.99, 0.99, 0.05))  # the twin collapses too
    assert both[1]["verdict"] == "not testable here" and "collapses to one class too" in both[1]["not testable"]
    weak = p3._random_label_rows(params, tw, _rand_rows(0.15, 0.6, 0.05))  # contrast, but not one class
    assert weak[1]["verdict"] != "holds" and weak[1]["binding"] == "95% of the test set"


def _nb_rows():
    rows = []
    for s in range(3):
        rows += [{"method": "ce", "hparams": "–", "chosen": False, "seed": s, "measure": m, "value": v}
                 for m, v in (("gini", 0.30 + 0.001 * s), ("accuracy", 0.65), ("PGD ε2 accuracy", 0.1))]
        for eps, gain, chosen in (("eps=0.01", 0.05, False), ("eps=0.02", -0.05, True)):
            rows += [{"method": "l1", "hparams": eps, "chosen": chosen, "seed": s, "measure": m, "value": v}
                     for m, v in (("gini", 0.30 + gain + 0.002 * s * (s - 1)), ("accuracy", 0.66),
                                  ("PGD ε2 accuracy", 0.2 + 0.001 * s))]
            rows += [{"method": "l1_mifgsm", "hparams": eps, "chosen": chosen, "seed": s, "measure": m, "value": v}
                     for m, v in (("accuracy", 0.6), ("PGD ε2 accuracy", 0.2 + gain + 0.002 * s * s))]
    return pd.DataFrame(rows)


def test_verdicts_at_every_admissible_eps_and_mifgsm_at_every_magnitude():
    params = {"pgd_eps": 2, "variants": ["l1_mifgsm"], "group_size": 4}
    nb = _nb_rows()
    v = p3.neighbour_verdicts(params, nb[nb.method.isin(["ce", "l1", "l1_mifgsm"])])
    l1 = v[v.measure == "gini"].set_index("ε")
    assert l1.loc["eps=0.01", "verdict"] == "holds" and l1.loc["eps=0.02", "verdict"] == "contradicted"
    assert l1.loc["eps=0.02", "chosen"] == "✓" and l1.loc["eps=0.01", "chosen"] == ""
    mi = v[v.method == p3.LABELS["l1_mifgsm"]].set_index("ε")
    assert mi.loc["eps=0.01", "verdict"] == "holds" and mi.loc["eps=0.02", "verdict"] == "contradicted"
    row = p3._mifgsm_row(params, pd.DataFrame(columns=["method", "measure", "seed", "value"]), nb)
    assert row["binding"] == "eps=0.02" and row["verdict"] == "contradicted"  # every magnitude must hold


def test_harmonization_eps_compares_at_matched_accuracy():
    rows = [{"method": "ce", "eps": 0.0, "seed": 0, "split": "validation", "measure": "accuracy", "value": 0.66}]
    for eps, acc_w, acc_l2, overlap in ((0.125, 0.65, 0.65, 0.26), (0.25, 0.65, 0.20, 0.30), (0.5, 0.50, 0.1, 0.35)):
        rows += [{"method": "weighted_l2", "eps": eps, "seed": 0, "split": "validation", "measure": m, "value": v}
                 for m, v in (("accuracy", acc_w), ("top 5% overlap", overlap))]
        rows += [{"method": "l2", "eps": eps, "seed": 0, "split": "validation", "measure": m, "value": v}
                 for m, v in (("accuracy", acc_l2), ("top 5% overlap", 0.1))]
    df = pd.DataFrame(rows)
    assert p3.harmonization_eps(df, 0.05, 0) == 0.125  # 0.25 overlaps more, but plain l2 collapses there
    lifted = df.assign(value=df.value.where(~((df.method == "l2") & (df.measure == "accuracy")), 0.65))
    assert p3.harmonization_eps(lifted, 0.05, 0) == 0.25  # plain l2 in the band: weighted's best admissible
    none = df.assign(value=df.value.where(~((df.method == "l2") & (df.measure == "accuracy")), 0.1))
    assert p3.harmonization_eps(none, 0.05, 0) == 0.25  # no matched eps: the weighted model's own rule
