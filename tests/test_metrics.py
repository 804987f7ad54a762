"""Tests of robust_saliency.metrics against independent computations and invariants."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from robust_saliency import attributions, metrics


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (conftest.py)


def _conv_model(c=3, k=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.Softplus(beta=3), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, k)).double().eval()


def _linear_model(c=3, k=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * 6 * 6, k)).double().eval()


def _data(n=5, c=3, seed=1, k=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


# ------------------------------------------------------------------ similarities

@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (4, 17), (3, 8, 8)])
def test_cosine_pcc_match_numpy(shape):
    torch.manual_seed(0)
    a, b = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    cos, r = metrics.cosine(a, b), metrics.pcc(a, b)
    assert cos.shape == r.shape == (shape[0],)
    for i in range(shape[0]):
        u, v = a[i].numpy().ravel(), b[i].numpy().ravel()
        assert cos[i].item() == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-12)
        assert r[i].item() == pytest.approx(np.corrcoef(u, v)[0, 1], abs=1e-12)
    # invariants: symmetry, self-similarity, pcc invariant to affine maps, cosine to scaling
    assert torch.allclose(metrics.cosine(b, a), cos)
    assert torch.allclose(metrics.pcc(a, a), torch.ones(shape[0], dtype=torch.float64))
    assert torch.allclose(metrics.pcc(3 * a + 2, b), r)
    assert torch.allclose(metrics.cosine(5 * a, b), cos)


def test_degenerate_maps_give_zero_not_nan():
    a = torch.zeros(2, 10)
    b = torch.randn(2, 10)
    for fn in (metrics.cosine, metrics.pcc, metrics.spearman):
        assert torch.equal(fn(a, b), torch.zeros(2))
    assert torch.equal(metrics.gini(a), torch.zeros(2))
    assert torch.equal(metrics.top_mass(a), torch.zeros(2))


@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 2, 13, 11), (2, 1, 20, 12)])
@pytest.mark.parametrize("data_range", [None, 2.0])
def test_ssim_matches_skimage(shape, data_range):
    torch.manual_seed(0)
    a = torch.rand(shape, dtype=torch.float64)
    b = (a + 0.3 * torch.randn(shape, dtype=torch.float64)).clamp(-0.5, 1.5)
    s = metrics.ssim(a, b, data_range=data_range)
    assert s.shape == (shape[0],)
    for i in range(shape[0]):
        u, v = a[i].numpy(), b[i].numpy()
        dr = data_range if data_range is not None else max(u.max(), v.max()) - min(u.min(), v.min())
        ref = structural_similarity(u, v, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=dr, channel_axis=0 if u.ndim == 3 else None)
        assert s[i].item() == pytest.approx(ref, abs=1e-6)
    # float32 input stays within 1e-4 of the float64 reference
    s32 = metrics.ssim(a.float(), b.float(), data_range=data_range)
    assert torch.allclose(s32.double(), s, atol=1e-4)
    assert torch.allclose(metrics.ssim(b, a, data_range=data_range), s, atol=1e-12)
    assert torch.allclose(metrics.ssim(a, a, data_range=data_range), torch.ones(shape[0], dtype=torch.float64))


def test_ssim_rejects_small_maps():
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.rand(2, 10, 10), torch.rand(2, 10, 10))


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 3, 4, 4), generator=g).double()  # many ties
    b = (a + torch.randint(0, 4, a.shape, generator=g)).double()
    rho = metrics.spearman(a, b)
    for i in range(a.shape[0]):
        ref = spearmanr(a[i].numpy().ravel(), b[i].numpy().ravel()).statistic
        assert rho[i].item() == pytest.approx(ref, abs=1e-12)
    c = torch.randn(4, 30, dtype=torch.float64, generator=g)
    d = torch.randn(4, 30, dtype=torch.float64, generator=g)
    for i, r in enumerate(metrics.spearman(c, d)):
        assert r.item() == pytest.approx(spearmanr(c[i].numpy(), d[i].numpy()).statistic, abs=1e-12)
    # monotone transforms keep the ranks
    assert torch.allclose(metrics.spearman(c.exp(), d ** 3), metrics.spearman(c, d))


@pytest.mark.parametrize("k", [1, 7, 25, 0.1, 0.4, 1.0])
def test_topk_intersection_brute_force(k):
    torch.manual_seed(0)
    a, b = torch.randn(5, 2, 5, 5), torch.randn(5, 2, 5, 5)  # continuous: no ties
    b[0] = a[0]
    b[1] = -a[1]
    out = metrics.topk_intersection(a, b, k)
    p = 50
    kk = k if isinstance(k, int) else max(1, round(k * p))
    for i in range(5):
        u, v = a[i].flatten().tolist(), b[i].flatten().tolist()
        top_u = set(sorted(range(p), key=lambda j: -u[j])[:kk])
        top_v = set(sorted(range(p), key=lambda j: -v[j])[:kk])
        assert out[i].item() == pytest.approx(len(top_u & top_v) / kk)
    assert out[0].item() == 1.0
    assert ((out >= 0) & (out <= 1)).all()


def test_topk_intersection_rejects_bad_k():
    a = torch.randn(2, 10)
    for k in (0, 11, 0.0, 1.5, True, "3"):
        with pytest.raises(ValueError, match="k"):
            metrics.topk_intersection(a, a, k)


def test_gini_literal_formula_and_known_values():
    torch.manual_seed(0)
    a = torch.randn(4, 3, 5, dtype=torch.float64)
    out = metrics.gini(a)
    for i in range(4):
        c = sorted(abs(v) for v in a[i].flatten().tolist())
        n, s = len(c), sum(abs(v) for v in c)
        ref = 1 - 2 * sum((c[k - 1] / s) * ((n - k + 0.5) / n) for k in range(1, n + 1))
        assert out[i].item() == pytest.approx(ref, abs=1e-12)
    n = 20
    assert metrics.gini(torch.full((1, n), 3.0)).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(1, n)
    one_hot[0, 7] = -2.0
    assert metrics.gini(one_hot).item() == pytest.approx(1 - 1 / n, abs=1e-6)
    assert ((out >= 0) & (out <= 1)).all()


def _group_gini_loop(a, s, per_channel=False):
    """Written out: per sample, per patch (and per channel with ``per_channel``), the L2 norm over
    its entries; then the Gini formula."""
    a = a.numpy()
    if a.ndim == 3:
        a = a[:, None]
    out = []
    for sample in a:
        c_, h, w = sample.shape
        chans = [slice(k, k + 1) for k in range(c_)] if per_channel else [slice(None)]
        norms = [np.sqrt((sample[ch, i:i + s, j:j + s] ** 2).sum())
                 for ch in chans for i in range(0, h, s) for j in range(0, w, s)]
        c, n = sorted(norms), len(norms)
        total = sum(c)
        out.append(0.0 if total == 0 else
                   1 - 2 * sum(c[k - 1] / total * (n - k + 0.5) / n for k in range(1, n + 1)))
    return np.array(out)


@pytest.mark.parametrize("shape, s", [((3, 3, 8, 8), 2), ((2, 1, 12, 8), 4), ((3, 6, 9), 3),
                                      ((2, 2, 6, 6), 1), ((2, 3, 8, 8), 8)])
def test_group_gini_matches_a_loop_over_patches(shape, s):
    torch.manual_seed(3)
    a = torch.randn(shape, dtype=torch.float64)
    out = metrics.group_gini(a, s)
    assert out.shape == (shape[0],)
    np.testing.assert_allclose(out.numpy(), _group_gini_loop(a, s), rtol=0, atol=1e-12)
    assert torch.equal(metrics.get("group_gini", group_size=s)(a), out)  # registry, hyperparameter bound
    trained = metrics.group_gini(a, s, per_channel=True)  # P3's training groups: each channel apart
    np.testing.assert_allclose(trained.numpy(), _group_gini_loop(a, s, per_channel=True), rtol=0, atol=1e-12)


def test_group_gini_known_values_and_errors():
    torch.manual_seed(4)
    one = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    one[0, :, 4:6, 2:4] = torch.randn(3, 2, 2, dtype=torch.float64)  # sample 0: one 2x2 patch (16 groups)
    one[1, 1, 7, 7] = -3.0
    assert torch.allclose(metrics.group_gini(one, 2), torch.full((2,), 1 - 1 / 16, dtype=torch.float64))
    assert torch.allclose(metrics.group_gini(torch.full((2, 3, 8, 8), -0.7), 4), torch.zeros(2), atol=1e-6)
    assert torch.equal(metrics.group_gini(torch.zeros(2, 1, 4, 4), 2), torch.zeros(2))  # zero map: 0
    a = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    # group_size=1: one channel -> gini of |a| (= gini(a)); several -> gini of the per-pixel channel norm
    torch.testing.assert_close(metrics.group_gini(a, 1), metrics.gini(a.abs()), rtol=0, atol=1e-14)
    torch.testing.assert_close(metrics.group_gini(a[:, 0], 1), metrics.gini(a[:, 0]), rtol=0, atol=1e-14)
    b = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(metrics.group_gini(b, 1), metrics.gini(b.pow(2).sum(1).sqrt()), rtol=0, atol=1e-14)
    assert not torch.allclose(metrics.group_gini(b, 1), metrics.gini(b))
    # concentrating the mass in fewer patches raises it
    spread = torch.ones(1, 1, 8, 8)
    spread[..., :4, :] = 0.0
    assert metrics.group_gini(spread, 2) > metrics.group_gini(torch.ones(1, 1, 8, 8), 2)
    entry = metrics.REGISTRY.entry("group_gini")
    assert entry.kind == "concentration" and entry.higher_is_better is True and "patches" in entry.units
    for bad in (3, 0, -2, 2.0, True, None):
        with pytest.raises(ValueError, match=rf"group_size={bad!r} is not valid for 8x8 maps; accepted: a "
                                             r"positive int that divides both 8 and 8"):
            metrics.group_gini(torch.rand(2, 3, 8, 8), bad)
    with pytest.raises(ValueError, match=r"group_gini needs \(N, C, H, W\) or \(N, H, W\) maps"):
        metrics.group_gini(torch.rand(2, 16), 2)


def test_top_mass():
    a = torch.tensor([[4.0, -1.0, 0.0, 1.0, 2.0] * 4])  # 20 values, |a| sum = 32
    assert metrics.top_mass(a, frac=0.05).item() == pytest.approx(4 / 32)
    assert metrics.top_mass(a, frac=0.2).item() == pytest.approx(16 / 32)
    assert metrics.top_mass(a, frac=1.0).item() == pytest.approx(1.0)


# ------------------------------------------------------------------ RPS

def test_rps_is_one_for_linear_model_cosine():
    model = _linear_model()
    x, y = _data()
    r = metrics.rps(model, x, y, "grad", eps=16, n=3, similarity="cosine")
    assert r.shape == (5,)
    assert torch.allclose(r, torch.ones(5, dtype=torch.float64), atol=1e-12)
    r = metrics.rps(model, x, y, "grad", eps=16, n=2, similarity="pcc", postprocess="abs_max")
    assert torch.allclose(r, torch.ones(5, dtype=torch.float64), atol=1e-12)


def test_rps_range_determinism_and_eps_dependence():
    model = _conv_model()
    x, y = _data()
    grad = attributions.get("grad")
    r8 = metrics.rps(model, x, y, grad, eps=8, n=4, seed=3)
    assert ((r8 >= -1) & (r8 <= 1)).all() and (r8 < 1).any()
    assert torch.equal(r8, metrics.rps(model, x, y, "grad", eps=8, n=4, seed=3))
    assert not torch.equal(r8, metrics.rps(model, x, y, "grad", eps=8, n=4, seed=4))
    r0 = metrics.rps(model, x, y, grad, eps=0, n=2, seed=3)
    assert torch.allclose(r0, torch.ones(5, dtype=torch.float64))
    r255 = metrics.rps(model, x, y, grad, eps=255, n=4, seed=3)
    assert r255.mean() < r8.mean()
    # pcc / spearman are correlations: also within [-1, 1]
    for sim in ("pcc", "spearman"):
        r = metrics.rps(model, x, y, grad, eps=64, n=2, similarity=sim)
        assert ((r >= -1 - 1e-12) & (r <= 1 + 1e-12)).all()


def test_rps_reference_loop_with_clamping():
    model = _conv_model()
    x, y = _data(n=3)
    x[0] = 0.0  # at the border of [0, 1]: clamping matters
    grad = attributions.get("grad")
    out = metrics.rps(model, x, y, grad, eps=16, n=3, seed=7)
    g = torch.Generator().manual_seed(7)
    h0 = grad(model, x, y)
    ref = torch.zeros(3, dtype=torch.float64)
    for _ in range(3):
        d = (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1) * 16 / 255
        h = grad(model, (x + d).clamp(0, 1), y)
        for i in range(3):
            ref[i] += torch.nn.functional.cosine_similarity(h[i].flatten(), h0[i].flatten(), dim=0) / 3
    assert torch.allclose(out, ref, atol=1e-12)


def test_rps_ssim_with_p1_postprocess():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Softplus(beta=3), nn.Flatten(),
                          nn.Linear(2 * 12 * 12, 3)).double().eval()
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    y = torch.tensor([0, 2])
    r = metrics.rps(model, x, y, "grad", eps=8, n=2, similarity="ssim", postprocess="abs_max")
    assert r.shape == (2,) and ((r > 0) & (r <= 1)).all()


def test_rps_bad_parameters():
    model, (x, y) = _linear_model(), _data()
    with pytest.raises(ValueError, match="similarity"):
        metrics.rps(model, x, y, "grad", eps=4, similarity="l2")
    for bad in (-1, 256, float("inf")):
        with pytest.raises(ValueError, match=r"eps=.*\[0, 255\] in 0-255 pixel units"):
            metrics.rps(model, x, y, "grad", eps=bad)
    with pytest.raises(ValueError, match="postprocess"):
        metrics.rps(model, x, y, "grad", eps=4, postprocess="nope")


# ------------------------------------------------------------------ insertion / deletion

def _p_y(model, xi, yi):
    with torch.no_grad():
        return model(xi[None]).softmax(1)[0, yi].item()


def _reference_curve(model, x, y, maps, fractions, base, mode):
    """Literal per-sample, per-fraction loop with numpy ranking."""
    n, c, h, w = x.shape
    p = h * w
    out = np.zeros((n, len(fractions)))
    for i in range(n):
        s = np.abs(maps[i].numpy()).sum(0).ravel()
        order = np.argsort(-s, kind="stable")  # most relevant first
        for j, f in enumerate(fractions):
            k = int(round(f * p))
            keep = np.zeros(p, dtype=bool)
            if mode == "insertion":
                keep[order[:k]] = True
            elif mode == "deletion":
                keep[order[k:]] = True
            else:  # preservation: remove the k least relevant
                keep[order[:p - k]] = True
            m = torch.from_numpy(keep.reshape(1, h, w))
            xi = x[i] * m + base[i] * (~m)
            out[i, j] = _p_y(model, xi, y[i])
    return out


@pytest.mark.parametrize("baseline", ["zero", "mean", "tensor"])
def test_insertion_curve_brute_force_and_endpoints(baseline):
    model = _conv_model()
    x, y = _data(n=4)
    torch.manual_seed(5)
    maps = torch.randn_like(x)
    if baseline == "zero":
        base, arg = torch.zeros_like(x), "zero"
    elif baseline == "mean":
        base, arg = x.mean(dim=(2, 3), keepdim=True).expand_as(x), "mean"
    else:
        arg = torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64).view(3, 1, 1)
        base = arg.expand_as(x)
    fr = np.linspace(0, 1, 21)
    curve = metrics.insertion_curve(model, x, y, maps, baseline=arg, batch_size=9)
    assert curve.shape == (4, 21)
    ref = _reference_curve(model, x, y, maps, fr, base, "insertion")
    assert np.allclose(curve.numpy(), ref, atol=1e-12)
    for i in range(4):
        assert curve[i, -1].item() == pytest.approx(_p_y(model, x[i], y[i]), abs=1e-12)
        assert curve[i, 0].item() == pytest.approx(_p_y(model, base[i], y[i]), abs=1e-12)
    score = metrics.insertion_score(model, x, y, maps, baseline=arg)
    assert torch.allclose(score, curve.mean(1))
    # chunking does not change the result; (N, H, W) maps equal the channel-reduced map
    big = metrics.insertion_curve(model, x, y, maps, baseline=arg, batch_size=1000)
    assert torch.allclose(big, curve, atol=1e-12)
    red = metrics.insertion_curve(model, x, y, maps.abs().sum(1), baseline=arg)
    assert torch.allclose(red, curve, atol=1e-12)


def test_adv_insertion_ranks_by_adv_map_but_inserts_clean_x():
    model = _conv_model()
    x, y = _data(n=3)
    torch.manual_seed(2)
    maps_adv = torch.randn_like(x)
    out = metrics.adv_insertion_score(model, x, y, maps_adv, fractions=[0, 0.3, 0.6, 1])
    ref = _reference_curve(model, x, y, maps_adv, [0, 0.3, 0.6, 1], torch.zeros_like(x), "insertion")
    assert np.allclose(out.numpy(), ref.mean(1), atol=1e-12)
    assert torch.allclose(metrics.adv_insertion_curve(model, x, y, maps_adv),
                          metrics.insertion_curve(model, x, y, maps_adv))


def test_deletion_and_preservation_brute_force():
    model = _conv_model()
    x, y = _data(n=3)
    torch.manual_seed(4)
    maps = torch.randn_like(x)
    fr = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0]
    base = torch.zeros_like(x)
    for mode, score_fn, curve_fn in (("deletion", metrics.deletion_score, metrics.deletion_curve),
                                     ("preservation", metrics.preservation_score,
                                      metrics.preservation_curve)):
        ref = _reference_curve(model, x, y, maps, fr, base, mode)
        curve = curve_fn(model, x, y, maps, fractions=fr, batch_size=4)
        assert np.allclose(curve.numpy(), ref, atol=1e-12)
        score = score_fn(model, x, y, maps, fractions=fr)
        assert np.allclose(score.numpy(), np.trapezoid(ref, fr, axis=1), atol=1e-12)
        # endpoints: nothing removed -> p_y(x); everything removed -> p_y(baseline)
        for i in range(3):
            assert curve[i, 0].item() == pytest.approx(_p_y(model, x[i], y[i]), abs=1e-12)
            assert curve[i, -1].item() == pytest.approx(_p_y(model, base[i], y[i]), abs=1e-12)


def test_deletion_rewards_faithful_maps():
    # linear model: the gradient x input map is the exact contribution of each pixel
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2)).double().eval()
    x = torch.rand(8, 1, 6, 6, dtype=torch.float64)
    y = model(x).argmax(1)
    w = model[1].weight.detach()
    contrib = (x.flatten(1) * (w[y] - w[1 - y])).view_as(x)
    good_del = metrics.deletion_score(model, x, y, contrib, signed=True)
    bad_del = metrics.deletion_score(model, x, y, -contrib, signed=True)
    assert (good_del < bad_del).all()
    good_pres = metrics.preservation_score(model, x, y, contrib, signed=True)
    bad_pres = metrics.preservation_score(model, x, y, -contrib, signed=True)
    assert (good_pres > bad_pres).all()
    assert (metrics.insertion_score(model, x, y, contrib, signed=True)
            > metrics.insertion_score(model, x, y, -contrib, signed=True)).all()


def test_perturbation_bad_parameters():
    model, (x, y) = _conv_model(), _data(n=2)
    maps = torch.randn_like(x)
    with pytest.raises(ValueError, match="baseline"):
        metrics.insertion_curve(model, x, y, maps, baseline="blur")
    with pytest.raises(ValueError, match="fractions"):
        metrics.insertion_curve(model, x, y, maps, fractions=[0, 1.5])
    with pytest.raises(ValueError, match="maps.shape"):
        metrics.insertion_curve(model, x, y, maps[:, :, :5])


# ------------------------------------------------------------------ accuracies, localisation

def test_accuracy_adversarial_accuracy():
    model = _conv_model()
    x, _ = _data(n=10)
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[:3] = (y[:3] + 1) % 4
    assert metrics.accuracy(model, (x, y)) == pytest.approx(0.7)
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    assert metrics.accuracy(model, loader, device="cpu") == pytest.approx(0.7)
    assert metrics.adversarial_accuracy(model, x, y, lambda m, xx, yy: xx) == pytest.approx(0.7)
    assert metrics.adversarial_accuracy(model, x, y, lambda m, xx, yy: torch.zeros_like(xx)) == \
        pytest.approx((model(torch.zeros_like(x)).argmax(1) == y).double().mean().item())


def test_object_share_and_worst_group_accuracy():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, :, :2] = 1.0
    maps[0, 0, 3, 3] = -2.0  # |.| counts
    maps[1] = 1.0
    masks = torch.zeros(2, 4, 4)
    masks[:, :2] = 1
    share = metrics.object_share(maps, masks)
    assert share[0].item() == pytest.approx(24 / 26)
    assert share[1].item() == pytest.approx(0.5)
    assert torch.allclose(metrics.object_share(maps, masks[:, None]), share)

    preds = torch.tensor([0, 1, 1, 0, 2, 2, 1])
    y = torch.tensor([0, 1, 0, 0, 2, 1, 1])
    groups = torch.tensor([5, 5, 5, 9, 9, 7, 7])
    worst, per = metrics.worst_group_accuracy(preds, y, groups, per_group=True)
    assert per == {5: pytest.approx(2 / 3), 7: pytest.approx(0.5), 9: pytest.approx(1.0)}
    assert worst == pytest.approx(0.5)
    logits = torch.nn.functional.one_hot(preds, 3).float()
    assert metrics.worst_group_accuracy(logits, y, groups) == pytest.approx(0.5)


def test_registry():
    assert set(metrics.NAMES) == set(metrics.HIGHER_IS_BETTER)
    assert metrics.HIGHER_IS_BETTER["deletion"] is False
    assert metrics.HIGHER_IS_BETTER["preservation"] and metrics.HIGHER_IS_BETTER["insertion"]
    for name in metrics.NAMES:
        fn = metrics.get(name)
        assert callable(fn) and fn.__doc__ and fn.__doc__.strip().splitlines()[0]
    assert metrics.get("insertion").fn is metrics.insertion_score
    with pytest.raises(ValueError, match="metric='nope'"):
        metrics.get("nope")
    assert {metrics.get(n).kind for n in metrics.NAMES} == set(metrics.KINDS)
    assert metrics.get("deletion").higher_is_better is False


def test_metric_binds_hyperparameters_in_its_kinds_call_shape():
    a, b = torch.rand(3, 1, 6, 6), torch.rand(3, 1, 6, 6)
    top = metrics.get("topk_intersection", k=0.25)
    assert torch.equal(top(a, b), metrics.topk_intersection(a, b, 0.25))
    assert not torch.equal(top(a, b), metrics.topk_intersection(a, b, 0.75))
    model = _tiny_net()
    x, y = torch.rand(2, 2, 12, 12), torch.tensor([0, 1])
    r = metrics.get("rps", attribution="grad", eps=8, n=2)
    assert torch.equal(r(model, x, y), metrics.rps(model, x, y, "grad", 8, n=2))
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['sigma_noise'\]; accepted: .*'eps'"):
        metrics.get("rps", sigma_noise=1)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        metrics.get("cosine", b=a)  # a data argument, not a hyperparameter


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Softplus(beta=3),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 3)).eval()


def test_rps_several_similarities_share_the_draws():
    net = _tiny_net()
    x, y = torch.rand(5, 2, 12, 12), torch.randint(0, 3, (5,))
    both = metrics.rps(net, x, y, "grad", 8, n=3, similarity=["cosine", "ssim"],
                       postprocess="abs_max", seed=3)
    assert set(both) == {"cosine", "ssim"}
    for s in ("cosine", "ssim"):
        one = metrics.rps(net, x, y, "grad", 8, n=3, similarity=s, postprocess="abs_max", seed=3)
        assert torch.allclose(both[s], one, atol=1e-6)
    # abs_max post-processing is P1's code: sum_c |map|, divided by the per-image max
    def by_hand(h):
        a = h.abs().sum(1)
        return a / a.flatten(1).amax(1).view(-1, 1, 1)

    hand = metrics.rps(net, x, y, "grad", 8, n=3, similarity=[metrics.ssim], postprocess=by_hand,
                       seed=3)
    assert torch.allclose(hand["ssim"], both["ssim"], atol=1e-5)
    with pytest.raises(ValueError, match="similarity='nope'"):
        metrics.rps(net, x, y, "grad", 8, n=1, similarity=["cosine", "nope"])


def test_insertion_images_are_what_the_curve_scores():
    net = _tiny_net()
    x, y = torch.rand(4, 2, 12, 12), torch.randint(0, 3, (4,))
    maps = torch.randn(4, 2, 12, 12)
    fr = [0.0, 0.25, 0.5, 1.0]
    imgs = metrics.insertion_images(x, maps, fractions=fr)
    assert imgs.shape == (4, 4, 2, 12, 12)
    assert torch.equal(imgs[:, 0], torch.zeros_like(x)) and torch.equal(imgs[:, -1], x)
    # a quarter of the 144 pixels (both channels together) at fraction 0.25
    kept = (imgs[:, 1] != 0).any(1).flatten(1).sum(1)
    assert torch.equal(kept, torch.full((4,), 36))
    with torch.no_grad():
        p = net(imgs.flatten(0, 1)).softmax(1).view(4, 4, 3).gather(2, y.view(4, 1, 1).expand(4, 4, 1))
    assert torch.allclose(p[..., 0], metrics.insertion_curve(net, x, y, maps, fractions=fr), atol=1e-6)


def test_ssim_is_scale_invariant_and_finite_for_tiny_maps():
    torch.manual_seed(0)
    a, b = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    ref = metrics.ssim(a, b)
    for scale in (1e-11, 1e-20, 1e6):  # float32 variances of 1e-11 maps underflowed before
        got = metrics.ssim(a * scale, b * scale)
        assert torch.isfinite(got).all()
        assert torch.allclose(got, ref, atol=1e-4)
    same = metrics.ssim(a * 1e-20, a * 1e-20)
    assert torch.allclose(same, torch.ones(3), atol=1e-5)


def _p1_ssim(img1, img2, window_size=7):
    """P1's released metrics.ssim (gaussian window 7, sigma 1.5, zero padding, C from img1's
    range over the batch, mean over everything), transcribed."""
    import math

    g = torch.tensor([math.exp(-((x - window_size // 2) ** 2) / float(2 * 1.5 ** 2)) for x in range(window_size)],
                     dtype=img1.dtype)
    g = (g / g.sum()).unsqueeze(1)
    channel = img1.shape[1]
    win = (g @ g.t()).expand(channel, 1, window_size, window_size).contiguous()
    conv = lambda t: torch.nn.functional.conv2d(t, win, padding=window_size // 2, groups=channel)  # noqa: E731
    mu1, mu2 = conv(img1), conv(img2)
    s1, s2, s12 = conv(img1 * img1) - mu1 ** 2, conv(img2 * img2) - mu2 ** 2, conv(img1 * img2) - mu1 * mu2
    C1, C2 = (0.01 * (img1.max() - img1.min())) ** 2, (0.03 * (img1.max() - img1.min())) ** 2
    return (((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1 ** 2 + mu2 ** 2 + C1) * (s1 + s2 + C2))).mean()


def test_ssim_p1_matches_p1s_released_ssim():
    g = torch.Generator().manual_seed(3)
    for shape in ((1, 1, 16, 16), (1, 1, 6, 9)):  # 6 x 9: smaller than the default window
        a = torch.rand(shape, generator=g, dtype=torch.float64)
        b = (a + 0.3 * torch.rand(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        ours = metrics.ssim_p1(a, b, data_range=float(a.max() - a.min()))
        torch.testing.assert_close(ours[0], _p1_ssim(a, b), rtol=1e-12, atol=1e-14)
    a16 = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    b16 = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    assert not torch.allclose(metrics.ssim_p1(a16, b16), metrics.ssim(a16, b16))   # not the default
    torch.testing.assert_close(metrics.ssim_p1(a16, a16), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="window=6 is not valid"):
        metrics.ssim(a16, b16, window=6)
    with pytest.raises(ValueError, match="padding='same' is not known"):
        metrics.ssim(a16, b16, padding="same")
