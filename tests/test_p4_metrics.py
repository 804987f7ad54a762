"""P4's metrics (metrics.density) and activation maximization, against hand computations,
float64 re-implementations written from the paper's definitions, and closed forms."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score

from robust_saliency import evaluation, metrics
from robust_saliency.metrics import density

H = 4  # block side: images (N, 1, 2H, H) as block_digits


def _linear(w, b=None):
    """g(x) = W x.flatten() + b, for images of any shape; w: (K, D)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0])).to(w.dtype)
    with torch.no_grad():
        net[1].weight.copy_(w)
        net[1].bias.copy_(torch.zeros(w.shape[0]) if b is None else b)
    return net.eval()


def _mlp(d, k=3, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.Softplus(beta=3), nn.Linear(16, 16),
                         nn.Softplus(beta=3), nn.Linear(16, k)).to(dtype).eval()


def _blocks(n, seed=0, dtype=torch.float32):
    """block_digits-shaped images (N, 1, 2H, H) and a null_mask, null block top/bottom at random."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2 * H, H, generator=g, dtype=dtype)
    null_top = torch.rand(n, generator=g) < 0.5
    null_top[:2] = torch.tensor([True, False])  # both kinds present
    rows = torch.arange(2 * H).view(1, 1, -1, 1)
    mask = torch.where(null_top.view(-1, 1, 1, 1), rows < H, rows >= H).expand(n, 1, 2 * H, H)
    return x, mask.contiguous(), null_top


def _top_zero_weights(k=3, seed=0, dtype=torch.float32):
    """(K, 2H*H) weights that are 0 on the top block (rows < H)."""
    w = torch.randn(k, 2 * H * H, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    w.view(k, 2 * H, H)[:, :H] = 0
    return w


# ----------------------------------------------------------------------------------------------
# feature_leakage (P4 Eq. 9)
# ----------------------------------------------------------------------------------------------

def test_feature_leakage_of_a_linear_model_is_the_norm_of_x_times_w_on_the_null_block():
    w = _top_zero_weights()
    net = _linear(w)
    x, mask, null_top = _blocks(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    got = metrics.feature_leakage(net, x, y, mask, steps=8)
    assert got.shape == (6,)
    # IG of a linear model from 0 is x * w_y exactly, for any number of steps
    want = (x * w[y].view(6, 1, 2 * H, H) * mask).flatten(1).norm(dim=1)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    # the model ignores the top block: samples whose null block is on top leak nothing ...
    assert (got[null_top] == 0).all()
    # ... and the others (null block at the bottom, where it reads) leak
    assert (got[~null_top] > 0.1).all()


def test_feature_leakage_is_zero_for_a_nonlinear_model_that_ignores_the_null_block():
    net = _mlp(2 * H * H)
    with torch.no_grad():
        net[1].weight.view(16, 2 * H, H)[:, :H] = 0  # the first layer never reads the top block
    x, _, _ = _blocks(4)
    top = torch.zeros(4, 1, 2 * H, H, dtype=torch.bool)
    top[:, :, :H] = True
    y = torch.tensor([0, 1, 2, 1])
    assert torch.all(metrics.feature_leakage(net, x, y, top) <= 1e-7)
    assert torch.all(metrics.feature_leakage(net, x, y, ~top) > 1e-3)


def _riemann_ig_by_hand(net, x, y, steps):
    """Sundararajan's Eq. 3 literally, float64: x * (1/m) sum_{k=1..m} grad g_y(k/m x)."""
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        xa = (k / steps * x).requires_grad_(True)
        (g,) = torch.autograd.grad(net(xa).gather(1, y.view(-1, 1)).sum(), xa)
        total += g
    return x * total / steps


def test_feature_leakage_equals_a_float64_riemann_sum_and_captum():
    net = _mlp(2 * H * H, dtype=torch.float64, seed=1)
    x, mask, _ = _blocks(5, seed=2, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 1, 0])
    ig = _riemann_ig_by_hand(net, x, y, 7)
    want = (ig * mask).flatten(1).norm(dim=1)
    got = metrics.feature_leakage(net, x, y, mask, steps=7)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    chunked = metrics.feature_leakage(net, x, y, mask, steps=7, internal_batch_size=3)
    assert torch.allclose(chunked, want, rtol=1e-10, atol=1e-12)
    # (N, H, W) and x-shaped masks mean the same
    assert torch.allclose(metrics.feature_leakage(net, x, y, mask[:, 0], steps=7), want, rtol=1e-10)
    from captum.attr import IntegratedGradients

    cap = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=7,
                                             method="riemann_right")
    # (captum builds its alphas with a float32 linspace: agreement to ~1e-8)
    assert torch.allclose(density.riemann_integrated_gradients(net, x, y, steps=7), cap,
                          rtol=1e-6, atol=1e-9)
    # a coarse sum differs from a fine one for a non-linear model (steps is used)
    assert not torch.allclose(metrics.feature_leakage(net, x, y, mask, steps=1), want, rtol=1e-4)


def test_feature_leakage_on_block_digits_and_bad_parameters():
    from robust_saliency import data

    ds = data.load("block_digits", "test", n=6)
    x, y, mask = ds.x[:6], ds.y[:6], ds.null_mask[:6]
    assert mask.shape == (6, 1, x.shape[2], x.shape[3]) and mask.dtype == torch.bool
    net = _mlp(x[0].numel(), k=10)
    leak = metrics.feature_leakage(net, x, y, mask, steps=4)
    assert leak.shape == (6,) and (leak > 0).all()  # the MLP reads the whole image
    with pytest.raises(ValueError, match="null_mask.shape"):
        metrics.feature_leakage(net, x, y, mask[:, :, :4])
    with pytest.raises(ValueError, match="steps"):
        metrics.feature_leakage(net, x, y, mask, steps=0)
    with pytest.raises(ValueError, match="null_mask"):
        metrics.feature_leakage(net, x, y, mask.float() * 0.5)


# ----------------------------------------------------------------------------------------------
# ood_auroc (P4 A.4)
# ----------------------------------------------------------------------------------------------

def test_ood_auroc_equals_sklearn_on_given_logits():
    g = torch.Generator().manual_seed(0)
    logits_in = torch.randn(40, 5, generator=g, dtype=torch.float64) * 2 + 0.5
    logits_out = torch.randn(30, 5, generator=g, dtype=torch.float64) * 2
    net = nn.Identity()  # the "inputs" are the logits
    labels = np.r_[np.ones(40), np.zeros(30)]
    by_hand = {
        "logsumexp": lambda z: np.log(np.exp(z).sum(1)),
        "max_logit": lambda z: z.max(1),
        "max_softmax": lambda z: (np.exp(z) / np.exp(z).sum(1, keepdims=True)).max(1),
    }
    for score, fn in by_hand.items():
        want = roc_auc_score(labels, np.r_[fn(logits_in.numpy()), fn(logits_out.numpy())])
        got = metrics.ood_auroc(net, logits_in, logits_out, score=score)
        assert isinstance(got, float) and got == pytest.approx(want, abs=1e-12)
        assert metrics.ood_auroc(net, logits_in, logits_out, score=score, batch_size=7) == pytest.approx(want)
        assert 0.0 < got < 1.0
    assert metrics.ood_auroc(net, logits_in + 100, logits_out) == 1.0
    assert metrics.ood_auroc(net, logits_out, logits_in + 100) == 0.0
    assert metrics.ood_auroc(net, logits_in, logits_in.clone()) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="score='energy'"):
        metrics.ood_auroc(net, logits_in, logits_out, score="energy")


def test_ood_auroc_max_logit_and_logsumexp_disagree_on_a_crafted_case():
    net = nn.Identity()
    x_in = torch.tensor([[3.0, 3.0, 3.0]])  # lse = 3 + log 3 = 4.10, max = 3
    x_out = torch.tensor([[3.5, -10.0, -10.0]])  # lse = 3.5, max = 3.5
    assert metrics.ood_auroc(net, x_in, x_out, score="logsumexp") == 1.0
    assert metrics.ood_auroc(net, x_in, x_out, score="max_logit") == 0.0
    assert metrics.ood_auroc(net, x_in, x_out, score="max_softmax") == 0.0


# ----------------------------------------------------------------------------------------------
# pixel_perturbation (P4 Fig. 6a)
# ----------------------------------------------------------------------------------------------

def _pp_setup():
    g = torch.Generator().manual_seed(3)
    w = torch.rand(2, 2 * 4 * 4, generator=g, dtype=torch.float64) + 0.1  # positive weights
    x = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64) + 0.1  # positive pixels
    y = torch.tensor([0, 1, 1])
    maps = w[y].view(3, 2, 4, 4)  # the map is the weights of the class
    return _linear(w, torch.tensor([0.3, -0.2], dtype=torch.float64)), w, x, y, maps


def test_pixel_perturbation_of_a_linear_model_by_hand():
    net, w, x, y, maps = _pp_setup()
    fr = (0.0, 0.25, 0.5)
    out = metrics.pixel_perturbation(net, x, y, maps, fractions=fr)
    assert set(out) == {"fractions", "top", "bottom", "difference"}
    assert torch.equal(out["fractions"], torch.tensor(fr, dtype=torch.float64))
    assert out["top"].shape == out["bottom"].shape == out["difference"].shape == (3, 3)
    assert (out["top"][:, 0] == 0).all() and (out["bottom"][:, 0] == 0).all()  # fraction 0
    assert torch.equal(out["difference"], out["top"] - out["bottom"])
    # removing the most salient pixels (largest weights) moves the logit more
    assert (out["difference"][:, 1:] > 0).all()
    # sample 1, fraction 0.25: k = 4 of the 16 pixels, ranked by |w_y| summed over channels
    i, k = 1, 4
    wy = w[y[i]].view(2, 16)
    order = np.argsort(-wy.abs().sum(0).numpy(), kind="stable")
    g0 = float((wy * x[i].view(2, 16)).sum() + net[1].bias.detach()[y[i]])
    for side, idx in (("top", order[:k]), ("bottom", order[-k:])):
        change = float((wy[:, idx] * x[i].view(2, 16)[:, idx]).sum())
        assert float(out[side][i, 1]) == pytest.approx(abs(change) / abs(g0), rel=1e-12)
    # a constant baseline of 0.5: the change is sum w (x - 0.5) over the removed pixels
    half = metrics.pixel_perturbation(net, x, y, maps, fractions=(0.25,), baseline=0.5)
    change = float((wy[:, order[:k]] * (x[i].view(2, 16)[:, order[:k]] - 0.5)).sum())
    assert float(half["top"][i, 0]) == pytest.approx(abs(change) / abs(g0), rel=1e-12)


def test_pixel_perturbation_score_and_chunks():
    net, _, x, y, maps = _pp_setup()
    full = metrics.pixel_perturbation(net, x, y, maps)
    assert torch.allclose(full["fractions"], torch.tensor([0.05, 0.1, 0.2, 0.3, 0.5], dtype=torch.float64))
    small = metrics.pixel_perturbation(net, x, y, maps, batch_size=2)
    assert torch.allclose(small["top"], full["top"]) and torch.allclose(small["bottom"], full["bottom"])
    score = metrics.pixel_perturbation_score(net, x, y, maps)
    assert torch.allclose(score, full["difference"].mean(1))
    assert torch.allclose(metrics.get("pixel_perturbation")(net, x, y, maps), score)
    # a map that ranks the least used pixels first scores below one that ranks them last
    assert (metrics.pixel_perturbation_score(net, x, y, -1 / maps) < score).all()
    with pytest.raises(ValueError, match="fractions"):
        metrics.pixel_perturbation(net, x, y, maps, fractions=(0.1, 1.5))


# ----------------------------------------------------------------------------------------------
# relative_gradient_change / relative_density_change (P4 Sec. 7.3, A.5)
# ----------------------------------------------------------------------------------------------

def test_relative_gradient_change_zero_for_linear_positive_for_softplus():
    x = torch.rand(4, 1, 2 * H, H, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    lin = _linear(torch.randn(3, 2 * H * H, generator=torch.Generator().manual_seed(1)))
    r = metrics.relative_gradient_change(lin, x, y, [0.0, 0.1, 1.0], n=3)
    assert r.shape == (4, 3) and (r == 0).all()
    net = _mlp(2 * H * H)
    r = metrics.relative_gradient_change(net, x, y, [0.0, 0.05, 0.5], n=3)
    assert r.shape == (4, 3)
    assert (r[:, 0].abs() < 1e-5).all() and (r[:, 1:] > 1e-3).all()


def test_relative_gradient_change_by_hand_with_the_same_draws():
    net = _mlp(2 * H * H, dtype=torch.float64, seed=2)
    x = torch.rand(3, 1, 2 * H, H, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.tensor([1, 0, 2])
    sigma, n, seed = 0.2, 5, 11
    state = torch.get_rng_state()
    got = metrics.relative_gradient_change(net, x, y, [0.05, sigma], n=n, seed=seed, batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    eps = torch.randn((n, *x.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def grad(z):
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(net(z).gather(1, y.view(-1, 1)).sum(), z)[0].flatten(1)

    g0 = grad(x)
    want = torch.stack([(grad(x + sigma * eps[j]) - g0).norm(dim=1) / g0.norm(dim=1)
                        for j in range(n)]).mean(0)
    assert torch.allclose(got[:, 1], want, rtol=1e-10)
    again = metrics.relative_gradient_change(net, x, y, [0.05, sigma], n=n, seed=seed)
    assert torch.allclose(again, got, rtol=1e-12)  # repeatable, whatever the chunking
    other = metrics.relative_gradient_change(net, x, y, [0.05, sigma], n=n, seed=seed + 1)
    assert not torch.allclose(other, got)
    with pytest.raises(ValueError, match="sigmas"):
        metrics.relative_gradient_change(net, x, y, [-0.1])
    with pytest.raises(ValueError, match="n=0"):
        metrics.relative_gradient_change(net, x, y, [0.1], n=0)


class _SharedLinear(nn.Module):
    """g_i(x) = c_i + w . x: every logit moves by the same w . delta."""

    def __init__(self, w, c):
        super().__init__()
        self.w, self.c = nn.Parameter(w), nn.Parameter(c)

    def forward(self, x):
        return self.c + (x.flatten(1) @ self.w).unsqueeze(1)


def test_relative_density_change_closed_form_for_a_shared_linear_term():
    d, k = 2 * H * H, 4
    w = torch.randn(d, generator=torch.Generator().manual_seed(5), dtype=torch.float64) / d ** 0.5
    c = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    net = _SharedLinear(w, c)
    x = torch.rand(3, 1, 2 * H, H, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sigmas, n, seed = [0.0, 0.3, 1.0], 6, 2
    ratio = metrics.relative_density_change(net, x, sigmas, n=n, seed=seed)
    printed = metrics.relative_density_change(net, x, sigmas, n=n, seed=seed, form="printed", batch_size=5)
    assert ratio.shape == printed.shape == (3, 3)
    assert (ratio[:, 0] < 1e-12).all() and torch.allclose(printed[:, 0], torch.full((3,), float(k), dtype=torch.float64))
    eps = torch.randn((n, *x.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for s, sigma in enumerate(sigmas):
        wd = (sigma * eps).flatten(2) @ w  # (n, N): lse(x + delta) - lse(x) = w . delta
        assert torch.allclose(ratio[:, s], (wd.exp() - 1).abs().mean(0), rtol=1e-10, atol=1e-14)
        assert torch.allclose(printed[:, s], (k * wd.exp()).mean(0), rtol=1e-10)
    # many draws: E[sum_i exp(w . delta)] = C exp(sigma^2 ||w||^2 / 2)
    many = metrics.relative_density_change(net, x[:1], [0.5], n=4000, seed=0, form="printed")
    assert float(many) == pytest.approx(k * float(torch.exp(0.125 * w.square().sum())), rel=0.05)
    with pytest.raises(ValueError, match="form='exact'"):
        metrics.relative_density_change(net, x, sigmas, form="exact")


def test_relative_density_change_of_a_network_at_zero_noise():
    net = _mlp(2 * H * H, k=5)
    x = torch.rand(4, 1, 2 * H, H, generator=torch.Generator().manual_seed(7))
    r = metrics.relative_density_change(net, x, [0.0, 0.2], n=2)
    p = metrics.relative_density_change(net, x, [0.0, 0.2], n=2, form="printed")
    assert (r[:, 0].abs() < 1e-5).all() and (r[:, 1] > 0).all()
    assert torch.allclose(p[:, 0], torch.full((4,), 5.0), atol=1e-4)
    assert not torch.allclose(p[:, 1], torch.full((4,), 5.0), atol=1e-3)


# ----------------------------------------------------------------------------------------------
# activation_maximization (P4 A.6)
# ----------------------------------------------------------------------------------------------

def test_activation_maximization_raises_the_logits_and_is_seeded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(beta=3), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 3))
    net.train()  # the mode is restored after
    classes = [2, 0, 1]
    start = evaluation.activation_maximization(net, classes, (1, 8, 8), steps=0, seed=3)
    assert start.shape == (3, 1, 8, 8) and start.min() >= 0.4 and start.max() <= 0.6
    out = evaluation.activation_maximization(net, classes, (1, 8, 8), steps=40, lr=0.05, seed=3)
    assert net.training and all(p.grad is None for p in net.parameters())
    assert out.shape == (3, 1, 8, 8) and not out.requires_grad
    assert out.min() >= 0 and out.max() <= 1
    idx = torch.tensor(classes).view(-1, 1)
    with torch.no_grad():
        before = net.eval()(start).gather(1, idx).squeeze(1)
        after = net(out).gather(1, idx).squeeze(1)
    assert (after > before + 0.1).all()
    same = evaluation.activation_maximization(net, classes, (1, 8, 8), steps=40, lr=0.05, seed=3)
    assert torch.equal(out, same)
    assert not torch.equal(out, evaluation.activation_maximization(net, classes, (1, 8, 8), steps=40, seed=4))
    jit = evaluation.activation_maximization(net, classes, (1, 8, 8), steps=10, jitter=2)
    assert jit.min() >= 0 and jit.max() <= 1
    gray = evaluation.activation_maximization(net, classes, (1, 8, 8), steps=0, init="gray")
    assert (gray == 0.5).all()
    with pytest.raises(ValueError, match="init='zeros'"):
        evaluation.activation_maximization(net, classes, (1, 8, 8), init="zeros")


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

def test_registry_entries():
    expect = {"feature_leakage": False, "ood_auroc": True, "pixel_perturbation": True,
              "relative_gradient_change": False, "relative_density_change": False}
    for name, higher in expect.items():
        m = metrics.get(name)
        assert m.higher_is_better is higher and metrics.HIGHER_IS_BETTER[name] is higher
        assert m.units and m.__doc__.strip().splitlines()[0].startswith("P4")
    assert metrics.get("pixel_perturbation").kind == "game"
    assert {metrics.get(n).n_args for n in ("feature_leakage", "ood_auroc", "relative_gradient_change",
                                           "relative_density_change")} == {4, 3, 3, 2}
    assert metrics.get("relative_gradient_change").missing() == ["sigmas"]
    net = _mlp(2 * H * H)
    x, mask, _ = _blocks(3)
    y = torch.tensor([0, 1, 2])
    r = metrics.get("relative_gradient_change", sigmas=[0.1], n=2)(net, x, y)
    assert torch.equal(r, metrics.relative_gradient_change(net, x, y, [0.1], n=2))
    d = metrics.get("relative_density_change", sigmas=0.1, form="printed")(net, x)
    assert d.shape == (3, 1)  # a scalar sigma: one column
    assert torch.equal(d, metrics.relative_density_change(net, x, [0.1], form="printed"))
    assert not torch.allclose(d, metrics.relative_density_change(net, x, [0.1]))  # form was bound
    assert torch.equal(metrics.get("feature_leakage", steps=4)(net, x, y, mask),
                       metrics.feature_leakage(net, x, y, mask, steps=4))
    assert metrics.get("ood_auroc", score="max_logit")(net, x, x + 1) == metrics.ood_auroc(
        net, x, x + 1, score="max_logit")


def test_feature_leakage_scores_a_given_map_as_it_would_compute_it():
    from robust_saliency.metrics.density import riemann_integrated_gradients

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 8), torch.nn.Softplus(), torch.nn.Linear(8, 3))
    x, y = torch.rand(4, 1, 8, 4), torch.tensor([0, 1, 2, 0])
    mask = torch.zeros(4, 1, 8, 4, dtype=torch.bool)
    mask[:, :, :4] = True
    ig = riemann_integrated_gradients(net, x, y, steps=8)
    assert torch.allclose(metrics.feature_leakage(net, x, y, mask, steps=8, maps=ig),
                          metrics.feature_leakage(net, x, y, mask, steps=8))
    with pytest.raises(ValueError, match="maps.shape"):
        metrics.feature_leakage(net, x, y, mask, maps=ig[:2])


# ----------------------------------------------------------------------------------------------
# pixel_perturbation's form: 'fractional_logit' (P4 Fig. 6a) and 'log_prob'
# ----------------------------------------------------------------------------------------------

class _Shifted(nn.Module):
    """``net`` with the same constant added to every logit (a logit offset)."""

    def __init__(self, net, shift):
        super().__init__()
        self.net, self.shift = net, shift

    def forward(self, x):
        return self.net(x) + self.shift


class _NoCalls(nn.Module):
    """A model whose evaluation fails: a check must come before it."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        raise AssertionError("the model was evaluated")


def _pp_small():
    """A float64 linear model with 3 classes on 1x4x4 images and explicit maps with no ties."""
    g = torch.Generator().manual_seed(11)
    w = torch.randn(3, 16, generator=g, dtype=torch.float64)
    b = torch.tensor([0.4, -0.3, 0.1], dtype=torch.float64)
    x = torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64) + 0.1
    y = torch.tensor([0, 1, 2, 1])
    maps = torch.stack([torch.randperm(16, generator=g) for _ in range(4)]).to(torch.float64)
    maps = ((maps + 1) * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1)).view(4, 1, 4, 4)  # |.| ranks
    return _linear(w, b), w, b, x, y, maps


def test_pixel_perturbation_log_prob_is_invariant_to_a_logit_offset_and_fractional_is_not():
    net = _mlp(16, k=3, seed=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    maps = torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64)
    shifted = _Shifted(net, 5.0)
    lp = metrics.pixel_perturbation(net, x, y, maps, form="log_prob")
    lp_s = metrics.pixel_perturbation(shifted, x, y, maps, form="log_prob")
    for key in ("top", "bottom", "difference"):
        assert torch.allclose(lp[key], lp_s[key], rtol=1e-9, atol=1e-12)
    assert (lp["top"][:, 1:] > 0).all()  # the removals do move the log-probability
    fl = metrics.pixel_perturbation(net, x, y, maps, form="fractional_logit")
    fl_s = metrics.pixel_perturbation(shifted, x, y, maps, form="fractional_logit")
    assert not torch.allclose(fl["top"], fl_s["top"])
    assert not torch.allclose(fl["difference"], fl_s["difference"])


def test_pixel_perturbation_forms_by_hand_on_a_linear_model():
    net, w, b, x, y, maps = _pp_small()
    fr = (0.25, 0.5)
    frac = metrics.pixel_perturbation(net, x, y, maps, fractions=fr, form="fractional_logit")
    lp = metrics.pixel_perturbation(net, x, y, maps, fractions=fr, form="log_prob")
    for i in range(x.shape[0]):
        order = np.argsort(-maps[i].abs().view(16).numpy(), kind="stable")  # most salient first
        logits0 = w @ x[i].view(16) + b
        for f, fraction in enumerate(fr):
            k = round(fraction * 16)
            for side, idx in (("top", order[:k]), ("bottom", order[-k:])):
                xr = x[i].view(16).clone()
                xr[torch.as_tensor(idx)] = 0.0  # baseline 'zero'
                logits = w @ xr + b
                yi = int(y[i])
                want = abs(float(logits0[yi] - logits[yi])) / abs(float(logits0[yi]))
                assert float(frac[side][i, f]) == pytest.approx(want, rel=1e-12, abs=1e-14)
                want_lp = abs(float(torch.log_softmax(logits0, 0)[yi] - torch.log_softmax(logits, 0)[yi]))
                assert float(lp[side][i, f]) == pytest.approx(want_lp, rel=1e-10, abs=1e-14)
    assert torch.equal(lp["difference"], lp["top"] - lp["bottom"])
    assert torch.equal(lp["fractions"], frac["fractions"])


def test_pixel_perturbation_default_form_is_fractional_logit_bitwise():
    assert density.PIXEL_FORMS == ("fractional_logit", "log_prob")
    assert "PIXEL_FORMS" in density.__all__
    net, _, x, y, maps = _pp_setup()
    for bs in (256, 2):
        d = metrics.pixel_perturbation(net, x, y, maps, batch_size=bs)
        e = metrics.pixel_perturbation(net, x, y, maps, batch_size=bs, form="fractional_logit")
        assert all(torch.equal(d[key], e[key]) for key in ("fractions", "top", "bottom", "difference"))
    assert torch.equal(metrics.pixel_perturbation_score(net, x, y, maps),
                       metrics.pixel_perturbation_score(net, x, y, maps, form="fractional_logit"))
    # log_prob chunks as fractional_logit does
    lp = metrics.pixel_perturbation(net, x, y, maps, form="log_prob")
    lp2 = metrics.pixel_perturbation(net, x, y, maps, form="log_prob", batch_size=2)
    assert torch.allclose(lp["top"], lp2["top"]) and torch.allclose(lp["bottom"], lp2["bottom"])


def test_pixel_perturbation_bad_form_raises_before_any_model_evaluation():
    _, _, x, y, maps = _pp_setup()
    for bad in ("x", "logprob", None):
        with pytest.raises(ValueError, match="form") as err:
            metrics.pixel_perturbation(_NoCalls(), x, y, maps, form=bad)
        assert "fractional_logit" in str(err.value) and "log_prob" in str(err.value)
        with pytest.raises(ValueError, match="form"):
            metrics.pixel_perturbation_score(_NoCalls(), x, y, maps, form=bad)


def test_pixel_perturbation_score_passes_form_through():
    net, _, _, x, y, maps = _pp_small()
    fr = (0.125, 0.25, 0.5)
    lp = metrics.pixel_perturbation(net, x, y, maps, fractions=fr, form="log_prob")
    score = metrics.pixel_perturbation_score(net, x, y, maps, fractions=fr, form="log_prob")
    assert score.shape == (4,)
    assert torch.equal(score, lp["difference"].mean(1))
    assert not torch.allclose(score, metrics.pixel_perturbation_score(net, x, y, maps, fractions=fr))
    assert torch.equal(metrics.get("pixel_perturbation", form="log_prob")(net, x, y, maps),
                       metrics.pixel_perturbation_score(net, x, y, maps, form="log_prob"))
