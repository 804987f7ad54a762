"""Tests of robust_saliency.evaluation: reports that attack, attribute and score, checked
against direct calls of the library's attacks, attributions and metrics."""
import pytest
import torch
import torch.nn as nn

from robust_saliency import attacks, attributions, evaluation, metrics


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (conftest.py)


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Softplus(beta=3),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 3)).eval()


def test_attribution_scores_match_direct_calls_and_chunking():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Softplus(beta=3),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()
    x, y = torch.rand(10, 1, 6, 6), torch.randint(0, 3, (10,))
    out = evaluation.attribution_scores(net, x, y, ["grad", "input_x_grad"], rps_eps=8, rps_n=3,
                               seed=5, chunk=4)
    for name in ["grad", "input_x_grad"]:
        fn = attributions.get(name)
        h = fn(net, x, y)
        assert torch.allclose(out[name]["map"], h, atol=1e-6)
        ins = metrics.insertion_curve(net, x, y, h)
        assert torch.allclose(out[name]["insertion_curve"], ins, atol=1e-6)
        assert torch.allclose(out[name]["insertion"], ins.mean(1), atol=1e-6)
        # each chunk's rps is rps on that chunk with seed + offset
        ref = torch.cat([metrics.rps(net, x[i:i + 4], y[i:i + 4], fn, 8, n=3, seed=5 + i)
                         for i in range(0, 10, 4)])
        assert torch.allclose(out[name]["rps"], ref, atol=1e-6)
        assert out[name]["rps"].shape == (10,)


def test_saliency_report_structure_and_adv_insertion():
    net = _tiny_net()
    x, y = torch.rand(6, 2, 12, 12), torch.randint(0, 3, (6,))
    kw = {"eps": 8, "steps": 3}  # 0-255 units
    rep = evaluation.saliency_report(net, x, y, ["grad", "lrp"], rps_eps=(4, 16),
                                  similarities=("cosine", "pcc"), rps_n=2,
                                  attack="targeted_attribution", attack_kw=kw, seed=1, chunk=4)
    assert set(rep) == {"grad", "lrp"}
    for name, r in rep.items():
        assert set(r["rps"]) == {"cosine", "pcc"} and set(r["rps"]["pcc"]) == {4, 16}
        ref = torch.cat([metrics.rps(net, x[i:i + 4], y[i:i + 4], name, 16, n=2,
                                     similarity="pcc", postprocess="abs_max", seed=1 + i)
                         for i in (0, 4)])
        assert torch.allclose(r["rps"]["pcc"][16], ref, atol=1e-6)
        # the attack is the library's, per attribution, and stays in the eps-ball
        x_adv = torch.cat([attacks.get("targeted_attribution", attribution=name, **kw)(
            net, x[i:i + 4], y[i:i + 4]) for i in (0, 4)])
        assert torch.allclose(r["x_adv"], x_adv)
        assert (r["x_adv"] - x).abs().max() <= 8 / 255 + 1e-6
        h_adv = attributions.get(name)(net, x_adv, y)
        assert torch.allclose(r["map_adv"], h_adv, atol=1e-6)
        ref_adv = metrics.adv_insertion_curve(net, x, y, h_adv)
        assert torch.allclose(r["adv_insertion_curve"], ref_adv, atol=1e-6)
        assert torch.allclose(r["adv_insertion"], ref_adv.mean(1), atol=1e-6)
        assert r["label_kept"].dtype == torch.bool and r["label_kept"].all()  # AAM keeps labels
        assert r["insertion"].shape == (6,) and r["insertion_curve"].shape == (6, 21)


def test_saliency_report_rejects_bad_attack_before_work():
    net = _tiny_net()
    x, y = torch.rand(2, 2, 12, 12), torch.randint(0, 3, (2,))
    with pytest.raises(ValueError, match="attack='nope'"):
        evaluation.saliency_report(net, x, y, ["grad"], attack="nope")
    with pytest.raises(ValueError, match="deeplift"):
        evaluation.saliency_report(net, x, y, ["deeplift"], attack="targeted_attribution")


def test_saliency_report_smoothgrad_does_not_depend_on_the_global_rng():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus(), nn.Flatten(),
                        nn.Linear(3 * 6 * 6, 4)).eval()
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(5) % 4
    runs = []
    for s in (3, 4):
        torch.manual_seed(s)
        runs.append(evaluation.saliency_report(net, x, y, ["smoothgrad"], rps_n=2, seed=0)["smoothgrad"])
    assert torch.equal(runs[0]["map"], runs[1]["map"])
    assert torch.equal(runs[0]["rps"]["cosine"][16], runs[1]["rps"]["cosine"][16])
    other = evaluation.saliency_report(net, x, y, ["smoothgrad"], rps_n=2, seed=1)["smoothgrad"]
    assert not torch.equal(other["map"], runs[0]["map"])


def test_attribution_maps_are_the_methods_maps_and_reproducible():
    net = _tiny_net()
    x, y = torch.rand(3, 2, 12, 12), torch.randint(0, 3, (3,))
    runs = []
    for s in (1, 2):
        torch.manual_seed(s)
        runs.append(evaluation.attribution_maps(net, x, y, ["grad", "smoothgrad"]))
    assert torch.equal(runs[0]["smoothgrad"], runs[1]["smoothgrad"])
    assert torch.allclose(runs[0]["grad"], attributions.get("grad")(net, x, y), atol=1e-7)
    other = evaluation.attribution_maps(net, x, y, ["smoothgrad"], seed=1)["smoothgrad"]
    assert not torch.equal(other, runs[0]["smoothgrad"])
