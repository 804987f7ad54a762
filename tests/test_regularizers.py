"""Tests of robust_saliency.regularizers against independent float64 computations and P1's results."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import softmax as sp_softmax

from robust_saliency import attributions, methods, training
from robust_saliency import regularizers as R

DT = torch.float64
SIDE = 5


def softplus_net(seed=0, beta=3.0, classes=3, hidden=2):
    """Tiny float64 Conv-Softplus-Linear-Softplus-Linear net on 1x5x5 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, hidden, 3), nn.Softplus(beta=beta), nn.Flatten(),
        nn.Linear(hidden * (SIDE - 2) ** 2, 4), nn.Softplus(beta=beta), nn.Linear(4, classes),
    ).to(DT)


def make_batch(seed=1, n=4, classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, SIDE, SIDE, generator=g, dtype=DT)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def uniform(x, eps, seed):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1) * eps


def ref_grad(model, x, y):
    """grad_x g_y(x) per sample from the full Jacobian (torch.autograd.functional), one sample at a time."""
    rows = []
    for n in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xi: model(xi[None])[0], x[n])
        rows.append(jac[y[n]])
    return torch.stack(rows).detach()


def np_terms(g0, g1):
    a, b = g0.flatten(1).numpy(), g1.flatten(1).numpy()
    l2 = np.linalg.norm(b - a, axis=1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return l2, 0.5 * (1 - cos)


def scale_last_layer(model, alpha):
    """P1's alpha-transformation T_L(Theta, alpha) of the last (fully connected) layer."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[-1].weight.mul_(alpha)
        scaled[-1].bias.mul_(alpha)
    return scaled


# ------------------------------------------------------------------------------------------
# Gamma_l2, Gamma_cos (P1 Sec. 3, Def. 4)
# ------------------------------------------------------------------------------------------
def test_reference_gradient_matches_finite_differences_and_attributions():
    model = softplus_net()
    x, y = make_batch()
    g = ref_grad(model, x, y)
    h = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x[0].numel()):
            e = torch.zeros_like(x).flatten(1)
            e[:, i] = h
            e = e.view_as(x)
            fd.flatten(1)[:, i] = (model(x + e).gather(1, y[:, None]) -
                                   model(x - e).gather(1, y[:, None]))[:, 0] / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(attributions.get("grad")(model, x, y), g, rtol=1e-12, atol=1e-14)
    _, g_lib = R.terms._logits_and_input_grad(model, x, y, create_graph=False)
    torch.testing.assert_close(g_lib, g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [4 / 255, 32 / 255])
@pytest.mark.parametrize("detach_clean", [False, True])
def test_alignment_terms_match_direct_computation(seed, eps, detach_clean):
    model = softplus_net(seed)
    x, y = make_batch(seed + 10)
    delta = uniform(x, eps, seed + 20)
    l2, cosd = R.gradient_alignment_terms(model, x, y, delta, detach_clean=detach_clean)
    assert l2.shape == cosd.shape == (x.shape[0],)
    ref_l2, ref_cosd = np_terms(ref_grad(model, x, y), ref_grad(model, x + delta, y))
    np.testing.assert_allclose(l2.detach().numpy(), ref_l2, rtol=1e-9)
    np.testing.assert_allclose(cosd.detach().numpy(), ref_cosd, rtol=1e-7, atol=1e-15)
    assert l2.requires_grad and cosd.requires_grad
    assert (ref_l2 > 0).all() and (ref_cosd > 0).all()


def test_alignment_terms_are_zero_without_perturbation():
    model = softplus_net()
    x, y = make_batch()
    l2, cosd = R.gradient_alignment_terms(model, x, y, torch.zeros_like(x))
    assert torch.all(l2.abs() < 1e-14) and torch.all(cosd.abs() < 1e-14)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 3.0, 10.0])
def test_lemma3_last_layer_scaling(alpha):
    """P1 Lemma 3: alpha-scaling the last layer scales Gamma_l2 by alpha, Gamma_cos unchanged.

    Also the discussion after Theorem 6: ||H delta|| scales by alpha and the cosd upper bound
    (a ratio) does not.
    """
    model = softplus_net(3)
    scaled = scale_last_layer(model, alpha)
    x, y = make_batch(4)
    delta = uniform(x, 16 / 255, 5)
    l2, cosd = R.gradient_alignment_terms(model, x, y, delta)
    l2_a, cosd_a = R.gradient_alignment_terms(scaled, x, y, delta)
    torch.testing.assert_close(l2_a, alpha * l2, rtol=1e-10, atol=0)
    torch.testing.assert_close(cosd_a, cosd, rtol=1e-8, atol=1e-14)
    hv = R.hessian_vector_product(model, x, y, delta)
    torch.testing.assert_close(R.hessian_vector_product(scaled, x, y, delta), alpha * hv,
                               rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(R.cosd_upper_bound(scaled, x, y, delta),
                               R.cosd_upper_bound(model, x, y, delta), rtol=1e-10, atol=0)


@pytest.mark.parametrize("layer", [0, 3, 5])
def test_lemma3_relu_net_any_layer(layer):
    """P1 Sec. 3.1 (App. B): a bias-free ReLU net is non-negative homogeneous in every layer."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(27, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False)).to(DT)
    x, y = make_batch(8, n=6)
    delta = uniform(x, 0.5, 9)
    l2, cosd = R.gradient_alignment_terms(model, x, y, delta)
    assert (l2 > 0).any()
    for alpha in (0.2, 5.0):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            scaled[layer].weight.mul_(alpha)
        l2_a, cosd_a = R.gradient_alignment_terms(scaled, x, y, delta)
        torch.testing.assert_close(l2_a, alpha * l2, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(cosd_a, cosd, rtol=1e-8, atol=1e-14)


class Monotone(nn.Module):
    """f = phi(g) applied to every logit, phi strictly increasing: grad f_y = phi'(g_y) grad g_y."""

    def __init__(self, model, phi):
        super().__init__()
        self.model, self.phi = model, phi

    def forward(self, x):
        return self.phi(self.model(x))


@pytest.mark.parametrize("phi", [torch.exp, lambda z: z + z ** 3, lambda z: 2 * torch.sigmoid(z)])
def test_proposition5_cosd_is_normalization_invariant(phi):
    """P1 Prop. 5: Gamma_cos is equal for f, g whose input gradients have equal normalization.

    f = phi o g (phi' > 0) satisfies the hypothesis with an x-dependent factor phi'(g_y(x)),
    not a constant alpha as in Lemma 3; Gamma_l2 differs, by a ratio that varies over samples.
    """
    model = softplus_net(11)
    f = Monotone(model, phi)
    x, y = make_batch(12, n=6)
    delta = uniform(x, 32 / 255, 13)
    for point in (x, x + delta):  # the hypothesis, checked numerically
        gf, gg = ref_grad(f, point, y).flatten(1), ref_grad(model, point, y).flatten(1)
        for p in (1, 2, np.inf):
            torch.testing.assert_close(gf / gf.norm(p=p, dim=1, keepdim=True),
                                       gg / gg.norm(p=p, dim=1, keepdim=True), rtol=1e-9, atol=1e-12)
    l2_g, cos_g = R.gradient_alignment_terms(model, x, y, delta)
    l2_f, cos_f = R.gradient_alignment_terms(f, x, y, delta)
    torch.testing.assert_close(cos_f, cos_g, rtol=1e-7, atol=1e-13)
    ratio = (l2_f / l2_g).detach()
    assert (ratio.max() - ratio.min()) / ratio.mean() > 1e-3
    assert not torch.allclose(l2_f, l2_g, rtol=1e-3)


def test_theorem6_bounds():
    """P1 Theorem 6 / Fig. 3b.

    Exact: Gamma_cos <= ||grad g(x+d) - grad g(x)|| / ||grad g(x+d)|| (0.5(1 - cos) =
    ||a_hat - b_hat||^2 / 4 <= ||a_hat - b_hat|| / 2 <= ||a - b|| / ||b||), for any delta.
    First order: ||H delta|| = Gamma_l2 + O(eps^2), so cosd_upper_bound tends to the exact ratio and
    bounds Gamma_cos for small eps.
    """
    model = softplus_net(21)
    x, y = make_batch(22, n=8)
    base = uniform(x, 1.0, 23)
    for t in (1.0, 0.3):
        delta = t * base
        l2, cosd = R.gradient_alignment_terms(model, x, y, delta)
        g1 = ref_grad(model, x + delta, y).flatten(1).norm(dim=1)
        assert torch.all(cosd <= l2 / g1 + 1e-15)
    errs = []
    for t in (1e-2, 1e-3):
        delta = t * base
        l2, cosd = R.gradient_alignment_terms(model, x, y, delta)
        hv = R.hessian_vector_product(model, x, y, delta).flatten(1).norm(dim=1)
        errs.append(((hv - l2) / l2).abs().max().item())
        bound = R.cosd_upper_bound(model, x, y, delta)
        g1 = ref_grad(model, x + delta, y).flatten(1).norm(dim=1)
        torch.testing.assert_close(bound, hv / g1, rtol=1e-10, atol=0)
        assert torch.all(cosd <= bound)
    assert errs[1] < errs[0] / 5  # the gap shrinks like eps


# ------------------------------------------------------------------------------------------
# Hessian
# ------------------------------------------------------------------------------------------
def test_hessian_vector_product_matches_finite_differences():
    model = softplus_net(31)
    x, y = make_batch(32)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(33), dtype=DT)
    hv = R.hessian_vector_product(model, x, y, v)
    grad = attributions.get("grad")
    h = 1e-5
    fd = (grad(model, x + h * v, y) - grad(model, x - h * v, y)) / (2 * h)
    torch.testing.assert_close(hv, fd, rtol=1e-7, atol=1e-10)


def test_hessian_penalty_is_hutchinson_of_frobenius_norm():
    """With v running over the basis vectors, sum ||H e_i||^2 = ||H||_F^2 (autograd.functional.hessian)."""
    model = softplus_net(34)
    x, y = make_batch(35, n=1)
    d = x[0].numel()
    xs = x.repeat(d, 1, 1, 1)
    v = torch.eye(d, dtype=DT).view(d, 1, SIDE, SIDE)
    lam = 0.5
    pen = R.get("hessian", lam=lam).penalty(model, xs, y.repeat(d), v=v)
    full = torch.autograd.functional.hessian(lambda xi: model(xi[None])[0, y[0]], x[0])
    torch.testing.assert_close(pen, lam * full.pow(2).sum() / d, rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------------------
# Gradients reach the weights: gradcheck of each penalty w.r.t. the first conv weight
# ------------------------------------------------------------------------------------------
GRADCHECK_CASES = [
    ("l2", dict(eps=40, lam=1.0, detach_clean=False)),
    ("l2", dict(eps=40, lam=1.0, squared=True, detach_clean=False)),
    ("cosd", dict(eps=40, lam=1.0, detach_clean=False)),
    ("l2_cosd", dict(eps=40, lam_l2=0.3, lam_cos=1.0, detach_clean=False)),
    ("hessian", dict(lam=1.0)),
    ("maxent", dict(lam=1.0)),
    ("input_grad", dict(lam=1.0, p=2)),
    ("input_grad", dict(lam=1.0, p=3)),
    ("iga", dict(lam=1.0)),
    ("iga", dict(lam=1.0, pair_mining=True)),
    ("atex", dict(explain_with="teacher", n_shifts=3, n_orth=2, smooth_n=2, eps=60)),
]


@pytest.mark.parametrize("name,hp", GRADCHECK_CASES, ids=lambda v: str(v))
def test_penalty_gradcheck_wrt_weights(name, hp):
    """Analytic (double-backprop) weight gradients of each penalty equal finite differences.

    The random draws are fixed by seeding inside the function.  (``detach_clean=True`` and
    ATEX's student-explained direction deliberately drop parts of the gradient; see the tests
    below.  IGA's x_adv is piecewise constant in the weights.)
    """
    model = softplus_net(41)
    x, y = make_batch(42)
    if name == "atex":
        hp = dict(hp, teacher=softplus_net(43))
    method = R.get(name, **hp)
    pname = "0.weight"
    w = dict(model.named_parameters())[pname].detach().clone().requires_grad_(True)

    def fn(w):
        torch.manual_seed(123)
        return method.penalty(lambda inp: torch.func.functional_call(model, {pname: w}, (inp,)), x, y)

    value = fn(w)
    assert torch.isfinite(value) and value.abs() > 0
    (gw,) = torch.autograd.grad(value, w)
    assert gw.abs().sum() > 0
    assert torch.autograd.gradcheck(fn, (w,), eps=1e-6, atol=1e-8, rtol=1e-5)


def _functional_alignment_grads(model, x, y, delta, pname):
    """Independent composition: d/dw Gamma(g0(w), g1(w)), and the two chain-rule branches."""
    w = dict(model.named_parameters())[pname].detach().clone().requires_grad_(True)
    f = lambda inp: torch.func.functional_call(model, {pname: w}, (inp,))  # noqa: E731

    def input_grad(point):
        point = point.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(point).gather(1, y[:, None]).sum(), point, create_graph=True)
        return g.flatten(1)

    g0, g1 = input_grad(x), input_grad(x + delta)

    def gamma(a, b):
        return (b - a).norm(dim=1).mean() + 0.5 * (1 - F.cosine_similarity(b, a, dim=1)).mean()

    out = {}
    for key, (a, b) in {"total": (g0, g1), "pert": (g0.detach(), g1), "clean": (g0, g1.detach())}.items():
        (out[key],) = torch.autograd.grad(gamma(a, b), w, retain_graph=True)
    return out


def test_detach_clean_drops_the_clean_branch_of_the_gradient():
    """P1 training trick: detach_clean=True gives only the branch through grad g_y(x + delta)."""
    model = softplus_net(51)
    x, y = make_batch(52)
    delta = uniform(x, 40 / 255, 53)
    pname = "3.weight"
    ref = _functional_alignment_grads(model, x, y, delta, pname)
    torch.testing.assert_close(ref["total"], ref["pert"] + ref["clean"], rtol=1e-10, atol=1e-14)
    assert ref["clean"].abs().max() > 1e-3 * ref["total"].abs().max()
    param = dict(model.named_parameters())[pname]
    for detach, key in ((True, "pert"), (False, "total")):
        method = R.get("l2_cosd", form="paper", lam_l2=1.0, lam_cos=1.0, detach_clean=detach)
        (g,) = torch.autograd.grad(method.penalty(model, x, y, delta=delta), param)
        torch.testing.assert_close(g, ref[key], rtol=1e-9, atol=1e-13)
    # the penalty's value does not depend on the option
    a = R.get("l2_cosd", form="paper", detach_clean=True).penalty(model, x, y, delta=delta)
    b = R.get("l2_cosd", form="paper", detach_clean=False).penalty(model, x, y, delta=delta)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------
# Method totals
# ------------------------------------------------------------------------------------------
def test_l2_cosd_total_is_ce_plus_weighted_terms():
    """P1 Eq. 5: loss = CE + lam_l2 * mean Gamma_l2 + lam_cos * mean Gamma_cos."""
    model = softplus_net(61)
    x, y = make_batch(62)
    method = R.get("l2_cosd", form="paper", eps=8, lam_l2=0.7, lam_cos=0.3)
    torch.manual_seed(5)
    loss, logs = method(model, x, y)
    torch.manual_seed(5)
    delta = method.sample_delta(x)
    assert delta.abs().max() <= 8 / 255 and delta.abs().max() > 7 / 255
    l2, cosd = R.gradient_alignment_terms(model, x, y, delta)
    ce = F.cross_entropy(model(x), y)
    expected = ce + (0.7 * l2.mean() + 0.3 * cosd.mean())
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-15)
    loss2, _ = method(model, x, y, delta=delta)
    torch.testing.assert_close(loss2, loss, rtol=0, atol=0)
    assert set(logs) >= {"loss", "ce", "l2", "cosd", "penalty"}
    assert all(isinstance(v, float) for v in logs.values())
    assert logs["loss"] == pytest.approx(logs["ce"] + logs["penalty"], rel=1e-12)
    torch.testing.assert_close(method.penalty(model, x, y, delta=delta), expected - ce, rtol=0, atol=1e-15)
    # l2 and cosd alone are the two halves
    pl2 = R.get("l2", form="paper", eps=8, lam=0.7).penalty(model, x, y, delta=delta)
    pcos = R.get("cosd", form="paper", eps=8, lam=0.3).penalty(model, x, y, delta=delta)
    torch.testing.assert_close(pl2 + pcos, expected - ce, rtol=1e-12, atol=0)


def test_squared_option():
    model = softplus_net(63)
    x, y = make_batch(64)
    delta = uniform(x, 16 / 255, 65)
    l2, _ = R.gradient_alignment_terms(model, x, y, delta)
    plain = R.get("l2", form="paper", lam=2.0).penalty(model, x, y, delta=delta)
    squared = R.get("l2", form="paper", lam=2.0, squared=True).penalty(model, x, y, delta=delta)
    torch.testing.assert_close(plain, 2.0 * l2.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(squared, 2.0 * l2.pow(2).mean(), rtol=1e-12, atol=0)
    both = R.get("l2_cosd", form="paper", lam_l2=1.0, lam_cos=0.0, squared=True).penalty(model, x, y, delta=delta)
    torch.testing.assert_close(both, l2.pow(2).mean(), rtol=1e-12, atol=0)


def test_seeded_calls_repeat():
    model = softplus_net(66)
    x, y = make_batch(67)
    for name in ("l2_cosd", "hessian", "iga"):
        method = R.get(name)
        torch.manual_seed(3)
        a = method.penalty(model, x, y)
        torch.manual_seed(3)
        b = method.penalty(model, x, y)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.manual_seed(4)  # the draws do come from the global RNG: another seed, another value
        assert not torch.equal(method.penalty(model, x, y), a), name


def test_maxent_matches_manual_entropy():
    model = softplus_net(71)
    x, y = make_batch(72, n=6)
    lam = 0.37
    loss, logs = R.get("maxent", lam=lam)(model, x, y)
    logits = model(x).detach().numpy()
    p = sp_softmax(logits, axis=1)
    entropy = -(p * np.log(p)).sum(1).mean()
    ce = -sp_log_softmax(logits, axis=1)[np.arange(len(y)), y.numpy()].mean()
    assert logs["entropy"] == pytest.approx(entropy, rel=1e-12)
    assert loss.item() == pytest.approx(ce - lam * entropy, rel=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_input_grad_matches_reference(p):
    model = softplus_net(73)
    x, y = make_batch(74)
    pen = R.get("input_grad", lam=0.25, p=p).penalty(model, x, y)
    g = ref_grad(model, x, y).flatten(1).numpy()
    expected = 0.25 * (np.abs(g) ** p).sum(1) ** (1 / p)
    assert pen.item() == pytest.approx(expected.mean(), rel=1e-10)


# ------------------------------------------------------------------------------------------
# IGA (Singh 2020)
# ------------------------------------------------------------------------------------------
def test_iga_triplet_without_attack_matches_manual():
    """eps = 0 and no steps: x_adv = x, so the penalty is lam * mean softplus(d(x, g_y) - d(x, g_o))."""
    model = softplus_net(81)
    x, y = make_batch(82, n=6)
    method = R.get("iga", eps=0, steps=0, lam=0.5)
    loss, logs = method(model, x, y)
    logits = model(x).detach()
    other = logits.scatter(1, y[:, None], -np.inf).argmax(1)
    a = x.flatten(1).numpy()
    gp, gn = ref_grad(model, x, y).flatten(1).numpy(), ref_grad(model, x, other).flatten(1).numpy()

    def cd(u, v):
        return 1 - (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))

    triplet = np.log1p(np.exp(cd(a, gp) - cd(a, gn))).mean()
    assert logs["triplet"] == pytest.approx(triplet, rel=1e-10)
    ce = F.cross_entropy(logits, y).item()
    assert loss.item() == pytest.approx(ce + 0.5 * triplet, rel=1e-12)


def test_iga_attack_stays_in_ball_and_raises_its_objective():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(beta=3), nn.Flatten(),
                          nn.Linear(4 * 64, 5)).to(DT)
    g = torch.Generator().manual_seed(91)
    x = torch.rand(32, 1, 8, 8, generator=g, dtype=DT)
    y = torch.randint(0, 5, (32,), generator=g)
    method = R.get("iga")
    torch.manual_seed(1)
    adv = method.attack(model, x, y)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-12
    assert adv.min() >= 0 and adv.max() <= 1
    start_method = R.get("iga", steps=0)
    torch.manual_seed(1)
    start = start_method.attack(model, x, y)
    # the objective on the top-k features fixed at the start
    k = int(round(1000 / 3072 * 64))
    g0 = attributions.get("grad")(model, start, y)
    idx = g0.abs().flatten(1).topk(k, dim=1).indices

    def objective(point):
        _, gt, go = R.baselines._true_and_other_grads(model, point, y, create_graph=False)
        pick = lambda t: t.flatten(1).gather(1, idx)  # noqa: E731
        return R.baselines._soft_margin_triplet(pick(point), pick(gt), pick(go)).detach()

    assert objective(adv).mean() > objective(start).mean()


@pytest.mark.parametrize("pair_mining", [False, True])
def test_iga_training_step(pair_mining):
    model = softplus_net(92)
    x, y = make_batch(93, n=6)
    method = R.get("iga", pair_mining=pair_mining)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, logs = method(model, x, y)
    assert torch.isfinite(loss) and np.isfinite(list(logs.values())).all()
    opt.zero_grad()
    loss.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------------------------------
# ATEX (Tang 2022)
# ------------------------------------------------------------------------------------------
def test_atex_samples_geometry():
    x, _ = make_batch(101, n=3)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(102), dtype=DT)
    mag, s, r = 0.1, 5, 4
    torch.manual_seed(0)
    x_along, x_aug = R.baselines._atex_samples(x, direction, mag, s, r)
    assert x_along.shape == (s * 3,) + x.shape[1:] and x_aug.shape == (s * r * 3,) + x.shape[1:]
    along = direction.flatten(1) / direction.flatten(1).abs().amax(1, keepdim=True) * mag
    shifts = (x_along.view(s, 3, -1) - x.flatten(1)[None])
    coefs = torch.linspace(-0.5, 0.5, s, dtype=DT)
    torch.testing.assert_close(shifts, coefs.view(-1, 1, 1) * along[None], rtol=1e-12, atol=1e-15)
    noise = x_aug.view(s, r, 3, -1) - x_along.view(s, 1, 3, -1)
    dots = (noise * direction.flatten(1)).sum(-1)
    assert dots.abs().max() < 1e-12 * direction.flatten(1).norm(dim=1).max()
    assert noise.abs().max() <= 2 * mag and noise.abs().max() > 0.3 * mag


def test_atex_kl_matches_manual_and_vanishes_for_a_copy():
    teacher = softplus_net(111)
    x, y = make_batch(112, n=4)
    # eps = 0: all inputs are x; a copy of the teacher with tempered student gives KL = 0
    same = R.get("atex", teacher=teacher, eps=0, n_shifts=2, n_orth=3, smooth_n=2, temper_student=True)
    assert same.penalty(copy.deepcopy(teacher), x, y).abs().item() < 1e-14
    student = softplus_net(113)
    method = R.get("atex", teacher=teacher, eps=0, n_shifts=2, n_orth=3, smooth_n=2)
    loss, logs = method(student, x, y)
    pt = sp_softmax(teacher(x).detach().numpy() / 4.0, axis=1)
    logq = sp_log_softmax(student(x).detach().numpy(), axis=1)
    kl = (pt * (np.log(pt) - logq)).sum(1).mean()
    assert loss.item() == pytest.approx(kl, rel=1e-10)
    assert logs["kl"] == pytest.approx(kl, rel=1e-10)


@pytest.mark.parametrize("explain_with", ["student", "teacher"])
def test_atex_training_step(explain_with):
    teacher = softplus_net(121)
    student = copy.deepcopy(teacher)
    x, y = make_batch(122, n=4)
    method = R.get("atex", teacher=teacher, n_shifts=3, n_orth=2, smooth_n=2, explain_with=explain_with)
    loss, logs = method(student, x, y)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    for p in student.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_atex_teacher_is_identified_by_key_not_kept_in_hparams():
    t1, t2 = softplus_net(131), softplus_net(132)
    m1, m1b, m2 = R.get("atex", teacher=t1), R.get("atex", teacher=copy.deepcopy(t1)), R.get("atex", teacher=t2)
    assert "teacher" not in m1.hparams
    assert m1.hparams == m1b.hparams and m1.hparams != m2.hparams
    assert R.get("atex", teacher=t1, teacher_key="lenet-ce-seed0").hparams["teacher_key"] == "lenet-ce-seed0"
    assert "Sequential" not in repr(m1)
    with pytest.raises(ValueError, match="teacher"):
        R.get("atex")


# ------------------------------------------------------------------------------------------
# Registry and parameter checks
# ------------------------------------------------------------------------------------------
def test_registry():
    assert set(R.NAMES) == {"l2", "cosd", "l2_cosd", "hessian", "maxent", "input_grad", "iga", "atex",
                            "marginal_density", "score_matching", "cure"}
    for name in R.NAMES:
        assert methods.METHODS[name] is R.REGISTRY[name]
        assert methods.METHODS[name].name == name
        assert methods.METHODS[name].__doc__
    m = R.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1)
    assert isinstance(m, training.Method)
    assert m.hparams == {"eps": 4.0, "lam_l2": 0.01, "lam_cos": 1.0, "form": "reference_code", "squared": True,
                         "detach_clean": True}
    assert m.hparams == R.get("l2_cosd").hparams
    assert all(type(v) is float for k, v in m.hparams.items() if k not in ("form", "squared", "detach_clean"))


@pytest.mark.parametrize("call,match", [
    (lambda: R.get("nope"), "nope"),
    (lambda: R.get("l2", lam_l2=0.1), "lam_l2"),
    (lambda: R.get("l2_cosd", eps=-1), "eps=-1"),
    (lambda: R.get("l2", squared="yes"), "squared"),
    (lambda: R.get("hessian", lam=float("nan")), "lam"),
    (lambda: R.get("iga", k_frac=0), "k_frac"),
    (lambda: R.get("iga", steps=1.5), "steps"),
    (lambda: R.get("input_grad", p=0.5), "p=0.5"),
    (lambda: R.get("atex", teacher=softplus_net(), explain_with="both"), "explain_with"),
])
def test_bad_parameters_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_draw_raises():
    model = softplus_net()
    x, y = make_batch()
    with pytest.raises(ValueError, match="v"):
        R.get("l2").penalty(model, x, y, v=torch.zeros_like(x))


def test_alignment_terms_differentiable_wrt_delta():
    """An attack may ascend Gamma over delta: the terms are differentiable w.r.t. delta."""
    model = softplus_net(141)
    x, y = make_batch(142, n=2)
    delta = uniform(x, 16 / 255, 143).requires_grad_(True)

    def fn(d):
        l2, cosd = R.gradient_alignment_terms(model, x, y, d)
        return l2.sum() + cosd.sum()

    assert torch.autograd.gradcheck(fn, (delta,), eps=1e-6, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("name,key", [("l2", "eps"), ("cosd", "eps"), ("l2_cosd", "eps"),
                                      ("iga", "eps"), ("iga", "step"), ("atex", "smooth_sigma")])
def test_budgets_are_in_0_255_units(name, key):
    """Units (``units``): eps=4 means 4/255; a value above 255 is rejected with its unit named."""
    extra = {"teacher": nn.Linear(2, 2)} if name == "atex" else {}
    assert R.get(name, **{key: 255}, **extra).hparams[key] == 255.0
    for bad in (255.5, 1e4, -1, float("nan")):
        with pytest.raises(ValueError, match=rf"{key}=.*\[0, 255\] in 0-255 pixel units"):
            R.get(name, **{key: bad}, **extra)


def test_uniform_delta_is_eps_over_255():
    torch.manual_seed(0)
    d = R.get("l2", eps=8).sample_delta(torch.zeros(64, 3, 8, 8))
    assert d.abs().max() <= 8 / 255 and d.abs().max() > 0.95 * 8 / 255


# ----------------------------------------------------------------------------- P1's released code
def _normalized_pair(std=(0.2, 0.25, 0.3), mean=(0.5, 0.4, 0.45), batch_norm=False, dropout=False):
    """(model with a leading Normalize, the same network without it, mean, std), float64;
    ``batch_norm`` / ``dropout`` add a BatchNorm2d after the conv / a Dropout after the linear."""
    from robust_saliency.models import Normalize

    torch.manual_seed(11)
    inner = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *([nn.BatchNorm2d(4)] if batch_norm else []),
                          nn.Softplus(beta=3), nn.Flatten(), nn.Linear(4 * 5 * 5, 6),
                          *([nn.Dropout(0.3)] if dropout else []), nn.Softplus(beta=3), nn.Linear(6, 4)).double()
    model = nn.Sequential(Normalize(mean, std), *inner).double()
    # the buffers hold float32-rounded values: transcribe with exactly those
    return model, inner, model[0].mean.view(1, 3, 1, 1), model[0].std.view(1, 3, 1, 1)


def _reference_l2_cosd_step(inner, x_n, y, z, eps, lamb_l2, lamb_cos, std=None):
    """P1's released LitL2PlusCosdClassifier.default_step (perturb uniform, detach_source_grad),
    transcribed: ``x_n`` normalized input, ``z`` the perturbation in normalized space, or None:
    drawn where the released step draws it, eps / (255 std) (2 U[0, 1) - 1)."""
    x_n = x_n.clone().requires_grad_(True)
    y_hat = inner(x_n)
    grad = torch.autograd.grad(y_hat[range(len(y)), y].sum(), x_n, create_graph=True)[0]
    ce = F.cross_entropy(y_hat, y)
    if z is None:
        z = eps / (255 * std) * (2 * torch.rand_like(x_n) - 1)
    grad = grad.detach()
    x_r = (x_n + z).clone().detach().requires_grad_()
    grad_r = torch.autograd.grad(inner(x_r)[range(len(y)), y].sum(), x_r, create_graph=True)[0]
    cosd = (1 - F.cosine_similarity(grad.flatten(1), grad_r.flatten(1)).mean()) / 2
    l2 = (grad - grad_r).flatten(start_dim=1).norm(dim=1).square().mean()
    return ce + lamb_l2 * l2 + lamb_cos * cosd


def _reference_hessian_step(inner, x_n, y, v, lamb):
    """P1's released LitHessianClassifier.default_step, transcribed (v given)."""
    x_n = x_n.clone().requires_grad_(True)
    y_hat = inner(x_n)
    grad1 = torch.autograd.grad(y_hat[range(len(y)), y].sum(), x_n, create_graph=True)[0]
    grad2 = torch.autograd.grad(torch.einsum("nchw,nchw->n", v, grad1).sum(), x_n, create_graph=True)[0]
    return F.cross_entropy(y_hat, y) + lamb * torch.einsum("nchw,nchw->n", grad2, grad2).mean()


def test_reference_code_form_gives_p1s_released_loss_for_the_same_pixel_delta():
    model, inner, mu, sd = _normalized_pair()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    delta = (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1) * 4 / 255  # pixel space
    ours, _ = R.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1.0, form="reference_code")(model, x, y, delta=delta)
    ref = _reference_l2_cosd_step(inner, (x - mu) / sd, y, delta / sd, 4, 0.01, 1.0)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    paper, _ = R.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1.0, form="paper")(model, x, y, delta=delta)
    assert not torch.allclose(paper, ref, rtol=1e-6)  # the forms differ on a normalized model
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    ours_h, _ = R.get("hessian", lam=1e-3, form="reference_code")(model, x, y, v=v)
    torch.testing.assert_close(ours_h, _reference_hessian_step(inner, (x - mu) / sd, y, v, 1e-3),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_norm,dropout", [(False, False), (True, False), (True, True)])
def test_l2_cosd_step_equals_p1s_released_step_under_the_same_rng(batch_norm, dropout):
    """Drawing its own perturbation from the same RNG state, our step gives the released step's
    loss, parameter gradients and BatchNorm statistics: without batch-coupled layers, with
    BatchNorm in training mode (the clean and perturbed batches normalized separately, as the
    released code does) and with dropout (its masks and delta drawn in the released order)."""
    model, _, mu, sd = _normalized_pair(batch_norm=batch_norm, dropout=dropout)
    ref_model = copy.deepcopy(model)
    model.train(), ref_model.train()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(7)
    ours, _ = R.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1.0)(model, x, y)
    ours.backward()
    torch.manual_seed(7)
    ref = _reference_l2_cosd_step(ref_model[1:], (x - mu) / sd, y, None, 4, 0.01, 1.0, std=sd)
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
    for (name, b), c in zip(model.named_buffers(), ref_model.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-12, atol=0, msg=name)
    torch.manual_seed(8)  # another draw gives another loss: the draw is what was matched
    other, _ = R.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1.0)(copy.deepcopy(ref_model), x, y)
    assert not torch.allclose(other, ref, rtol=1e-9)


def test_forms_relate_by_the_normalizations_std():
    """With one std s for every channel: reference Hessian penalty = s^4 x paper's, reference
    (squared) l2 = s^2 x paper's squared l2, cosd unchanged; without Normalize the forms agree."""
    s = 0.25
    model, inner, _, _ = _normalized_pair(std=(s, s, s))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    pen = {f: R.get("hessian", lam=1.0, form=f).penalty(model, x, y, v=v) for f in ("paper", "reference_code")}
    torch.testing.assert_close(pen["reference_code"], s ** 4 * pen["paper"], rtol=1e-10, atol=0)
    delta = (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1) * 8 / 255
    l2 = {f: R.get("l2", lam=1.0, form=f, squared=True).penalty(model, x, y, delta=delta) for f in ("paper", "reference_code")}
    torch.testing.assert_close(l2["reference_code"], s ** 2 * l2["paper"], rtol=1e-10, atol=0)
    cos = {f: R.get("cosd", lam=1.0, form=f).penalty(model, x, y, delta=delta) for f in ("paper", "reference_code")}
    torch.testing.assert_close(cos["reference_code"], cos["paper"], rtol=1e-10, atol=1e-15)
    assert R.get("l2", form="reference_code").hparams["squared"] is True   # the code squares
    assert R.get("l2", form="paper").hparams["squared"] is False
    for f in ("paper", "reference_code"):  # no Normalize: the same space
        pen[f] = R.get("hessian", lam=1.0, form=f).penalty(inner, x, y, v=v)
    torch.testing.assert_close(pen["reference_code"], pen["paper"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="form"):
        R.get("l2", form="code")
