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
    table, long = p3.aopc_table(pd.DataFrame(rows), ["ce"], [20])
    drops = long[long["post-processing"] == "sparsified grad"].sort_values("seed")["drop %"].tolist()
    assert drops == pytest.approx([20.0, 25.0])
    assert table.loc["sparsified grad — standard", "Δ AOPC 20 (%)"] == "22.5 ± 3.5"


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
