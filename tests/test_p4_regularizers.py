"""Tests of P4's regularizers (regularizers.density): marginal_density (Eq. 4-6), score_matching,
cure and group_dro, against independent float64 computations (autograd of logsumexp, full
Hessians, finite differences, per-sample autograd, hand-computed exp-weights)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import logsumexp as sp_logsumexp

from robust_saliency import cache, data, methods, training
from robust_saliency import regularizers as R
from robust_saliency.regularizers import density as D

DT = torch.float64
VARIANTS = ("basic", "stable", "efficient")


def mlp(seed=0, d=4, classes=3, hidden=6, beta=3.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.Softplus(beta=beta), nn.Linear(hidden, classes)).to(DT)


def conv(seed=0, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softplus(beta=3.0), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, 4), nn.Softplus(beta=3.0), nn.Linear(4, classes)).to(DT)


def batch(shape, seed=1, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=DT), torch.randint(0, classes, (shape[0],), generator=g)


class Scaled(nn.Module):
    """``net``'s logits times ``s`` (to push them to +-1e4)."""

    def __init__(self, net, s):
        super().__init__()
        self.net, self.s = net, s

    def forward(self, x):
        return self.s * self.net(x)


class Shifted(nn.Module):
    """``net``'s logits plus ``c``."""

    def __init__(self, net, c):
        super().__init__()
        self.net, self.c = net, c

    def forward(self, x):
        return self.net(x) + self.c


def lse_grad(model, x):
    """grad_x logsumexp(model(x_n)) per sample from a per-sample Jacobian (torch.autograd.functional)."""
    return torch.stack([torch.autograd.functional.jacobian(
        lambda xi: torch.logsumexp(model(xi[None])[0], 0), x[n]) for n in range(len(x))])


def logit_grad(model, x, y):
    return torch.stack([torch.autograd.functional.jacobian(lambda xi: model(xi[None])[0, y[n]], x[n])
                        for n in range(len(x))])


CASES = [(mlp, (5, 4)), (conv, (3, 1, 5, 5))]


# ------------------------------------------------------------------------------------------
# marginal_density_grad
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape", CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_the_gradient_of_logsumexp(make, shape, variant):
    net, (x, _) = make(), batch(shape)
    ref = lse_grad(net, x)
    got = R.marginal_density_grad(net, x, variant=variant)
    assert got.shape == x.shape and torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make,shape", CASES)
def test_stable_equals_efficient_and_does_not_depend_on_the_class(make, shape):
    net, (x, _) = make(), batch(shape)
    n = shape[0]
    per_class = []
    for c in range(3):
        cls = torch.full((n,), c, dtype=torch.long)
        stable = R.marginal_density_grad(net, x, "stable", classes=cls)
        efficient = R.marginal_density_grad(net, x, "efficient", classes=cls)
        assert torch.allclose(stable, efficient, rtol=1e-10, atol=1e-13)
        per_class.append(stable)
    for other in per_class[1:]:
        assert torch.allclose(per_class[0], other, rtol=1e-10, atol=1e-13)
    # g_c alone (InputGrad's term) does depend on the class: the check above is not vacuous
    assert not torch.allclose(logit_grad(net, x, torch.zeros(n, dtype=torch.long)),
                              logit_grad(net, x, torch.ones(n, dtype=torch.long)))
    torch.manual_seed(3)
    drawn = R.marginal_density_grad(net, x)  # random classes from the global RNG
    assert torch.allclose(drawn, per_class[0], rtol=1e-10, atol=1e-13)


def test_finite_differences_of_logsumexp():
    net, (x, _) = conv(seed=2), batch((2, 1, 5, 5), seed=4)
    flat = x.flatten(1)
    h = 1e-6
    eye = torch.eye(flat.shape[1], dtype=DT)
    lse = lambda z: torch.logsumexp(net(z.view(-1, 1, 5, 5)), 1)  # noqa: E731
    fd = torch.stack([(lse(flat + h * e) - lse(flat - h * e)) / (2 * h) for e in eye], 1)
    for variant in VARIANTS:
        got = R.marginal_density_grad(net, x, variant).flatten(1)
        assert torch.allclose(got, fd, rtol=1e-6, atol=1e-8), variant


def test_large_logits_overflow_basic_but_not_stable_or_efficient():
    base, (x, _) = mlp(seed=1), batch((6, 4), seed=2)
    with torch.no_grad():
        s = float(1e4 / base(x).abs().amax(1).min())
    big = Scaled(base, s)
    logits = big(x).detach()
    assert logits.abs().amax(1).min() >= 1e4 - 1e-6  # every sample has a logit of size >= 1e4
    basic = R.marginal_density_grad(big, x, "basic")
    assert (~torch.isfinite(basic)).flatten(1).any(1).all()  # every sample non-finite
    ref = lse_grad(big, x)
    assert torch.isfinite(ref).all()
    for variant in ("stable", "efficient"):
        got = R.marginal_density_grad(big, x, variant)
        assert torch.isfinite(got).all(), variant
        assert torch.allclose(got, ref, rtol=1e-8, atol=1e-6 * ref.abs().max()), variant
    # a constant shift of the logits leaves the gradient unchanged; in float32 the ratio
    # already overflows at a shift of 100
    net32, x32 = mlp(seed=1).float(), x.float()
    shifted = Shifted(net32, 100.0)
    assert not torch.isfinite(R.marginal_density_grad(shifted, x32, "basic")).any()
    unshifted = R.marginal_density_grad(net32, x32, "basic")
    for variant in ("stable", "efficient"):
        assert torch.allclose(R.marginal_density_grad(shifted, x32, variant), unshifted, atol=1e-5)


def test_graph_options_and_an_input_that_requires_grad():
    net, (x, _) = mlp(), batch((3, 4))
    assert R.marginal_density_grad(net, x).grad_fn is None
    xr = x.clone().requires_grad_(True)
    g = R.marginal_density_grad(net, xr, "efficient", create_graph=True)
    u = torch.randn_like(x)
    (hu,) = torch.autograd.grad((g * u).sum(), xr)  # differentiable w.r.t. the given x
    ref = torch.stack([torch.autograd.functional.hessian(
        lambda xi: torch.logsumexp(net(xi[None])[0], 0), x[n]) @ u[n] for n in range(3)])
    assert torch.allclose(hu, ref, rtol=1e-9, atol=1e-12)
    with torch.no_grad():  # works under no_grad (evaluation code)
        assert torch.allclose(R.marginal_density_grad(net, x, "stable"), lse_grad(net, x))


def test_bad_variant_and_classes():
    net, (x, _) = mlp(), batch((3, 4))
    with pytest.raises(ValueError, match=r"variant='exact'.*\['basic', 'stable', 'efficient', 'basic_max', "
                                         r"'random_class'\]"):
        R.marginal_density_grad(net, x, variant="exact")
    for bad in (torch.tensor([0, 1]), torch.tensor([0, 1, 3]), torch.tensor([0.0, 1.0, 2.0])):
        with pytest.raises(ValueError, match="classes"):
            R.marginal_density_grad(net, x, classes=bad)
    assert R.DENSITY_VARIANTS == D.VARIANTS == VARIANTS + ("basic_max", "random_class")


# ------------------------------------------------------------------------------------------
# The methods: values, p-norms, gradients reaching the weights
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1.2, 2.0, 2.8])
@pytest.mark.parametrize("variant", VARIANTS)
def test_marginal_density_penalty_is_lam_times_the_mean_p_norm(p, variant):
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    m = R.get("marginal_density", lam=0.3, p=p, variant=variant)
    loss, logs = m(net, x, y, classes=torch.tensor([0, 2, 1]))
    norms = torch.linalg.vector_norm(lse_grad(net, x).flatten(1), ord=p, dim=1)
    ce = F.cross_entropy(net(x), y)
    assert torch.allclose(m.penalty(net, x, y), 0.3 * norms.mean(), rtol=1e-10)
    assert torch.allclose(loss, ce + 0.3 * norms.mean(), rtol=1e-10)
    assert logs["density_grad_norm"] == pytest.approx(float(norms.mean()), rel=1e-9)
    assert logs["ce"] == pytest.approx(ce.item(), rel=1e-12) and set(logs) == {
        "loss", "ce", "density_grad_norm", "penalty"}


def _all_grads(model, penalty):
    model.zero_grad()
    penalty.backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("name,kw", [("marginal_density", {"variant": v}) for v in VARIANTS]
                         + [("cure", {"h": 0.5}), ("score_matching", {"lam": 1.0, "sigma": 0.1})])
def test_the_penalty_gradient_reaches_every_weight(name, kw):
    net, (x, y) = conv(), batch((4, 1, 5, 5))
    torch.manual_seed(0)
    grads = _all_grads(net, R.get(name, **kw).penalty(net, x, y))
    last_bias = "5.bias"
    for n, g in grads.items():
        if name == "score_matching" and n == last_bias:
            # tr H, g_y(x+v) - g_y(x) and grad g_y do not depend on the output bias
            assert g is None or torch.count_nonzero(g) == 0
        else:
            assert g is not None and torch.count_nonzero(g) == g.numel(), n


def _ce_grad_graph(net, x, y):
    """grad_x CE per sample (one sample at a time), differentiable w.r.t. the weights."""
    out = []
    for n in range(len(x)):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(net(xi), y[n:n + 1]), xi, create_graph=True)
        out.append(g[0])
    return torch.stack(out)


def _lse_grad_graph(net, x):
    out = []
    for n in range(len(x)):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.logsumexp(net(xi), 1).sum(), xi, create_graph=True)
        out.append(g[0])
    return torch.stack(out)


def _independent_penalty(name, net, x, y, v):
    if name == "marginal_density":
        return 0.3 * _lse_grad_graph(net, x).flatten(1).norm(dim=1).mean()
    if name == "cure":
        g0 = _ce_grad_graph(net, x, y)
        s = g0.detach().sign()
        z = 0.5 * s / s.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return 2.0 * (_ce_grad_graph(net, x + z, y) - g0).flatten(1).norm(dim=1).mean()
    idx = torch.arange(len(x))
    tr = 2 / 0.1 ** 2 * (net(x + v)[idx, y] - net(x)[idx, y])
    gy = []
    for n in range(len(x)):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi)[0, y[n]], xi, create_graph=True)
        gy.append(g[0])
    gsq = torch.stack(gy).flatten(1).pow(2).sum(1)
    return 0.6 * (tr + 0.5 * gsq + 0.2 * tr ** 2).mean()


@pytest.mark.parametrize("name,kw", [("marginal_density", {"variant": v, "lam": 0.3}) for v in VARIANTS]
                         + [("cure", {"h": 0.5, "lam": 2.0}),
                            ("score_matching", {"lam": 0.6, "sigma": 0.1, "tau": 0.2})])
def test_the_penalty_weight_gradient_matches_an_independent_penalty(name, kw):
    """Both input gradients stay in the weight graph (a detached term would change this)."""
    net, (x, y) = conv(seed=3), batch((3, 1, 5, 5), seed=6)
    v = 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=DT)
    draws = {"v": v} if name == "score_matching" else {}
    got = _all_grads(net, R.get(name, **kw).penalty(net, x, y, **draws))
    want = _all_grads(net, _independent_penalty(name, net, x, y, v))
    for n in got:
        if want[n] is None:
            assert got[n] is None or torch.count_nonzero(got[n]) == 0
        else:
            assert torch.allclose(got[n], want[n], rtol=1e-8, atol=1e-12), n


# ------------------------------------------------------------------------------------------
# score_matching
# ------------------------------------------------------------------------------------------
def test_hessian_trace_estimate_is_the_finite_difference_and_tends_to_the_exact_trace():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Softplus(beta=2.0), nn.Linear(16, 3)).to(DT)
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[2].weight.mul_(3)
    x, y = torch.rand(2, 3, dtype=DT), torch.tensor([0, 2])
    exact = torch.stack([torch.autograd.functional.hessian(lambda xi: net(xi[None])[0, y[n]], x[n]).trace()
                         for n in range(2)])
    assert exact.abs().min() > 1.5  # a trace well away from zero
    sigma, v = 0.05, 0.05 * torch.randn(2, 3, dtype=DT)
    by_hand = 2 / sigma ** 2 * (net(x + v)[torch.arange(2), y] - net(x)[torch.arange(2), y])
    assert torch.equal(R.hessian_trace_estimate(net, x, y, sigma, v=v), by_hand)
    with pytest.raises(ValueError, match="sigma=0"):
        R.hessian_trace_estimate(net, x, y, 0)
    k = 400_000
    torch.manual_seed(1)
    with torch.no_grad():
        est = R.hessian_trace_estimate(net, x.repeat(k, 1), y.repeat(k), sigma).view(k, 2)
    se = est.std(0) / k ** 0.5
    tol = 4 * se + 0.03  # sampling error + the O(sigma^2) bias of the one-sided difference
    assert (tol < 0.2 * exact.abs()).all()  # a factor error (e.g. 1/sigma^2 for 2/sigma^2) fails
    assert ((est.mean(0) - exact).abs() < tol).all(), (est.mean(0), exact, tol)


def test_score_matching_penalty_by_hand():
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    sigma, tau, lam = 0.2, 0.5, 0.7
    v = sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=DT)
    m = R.get("score_matching", sigma=sigma, tau=tau, lam=lam)
    loss, logs = m(net, x, y, v=v)
    idx = torch.arange(3)
    with torch.no_grad():
        tr = 2 / sigma ** 2 * (net(x + v)[idx, y] - net(x)[idx, y])
    gsq = logit_grad(net, x, y).flatten(1).pow(2).sum(1)
    want = lam * (tr + 0.5 * gsq + tau * tr ** 2).mean()
    assert torch.allclose(m.penalty(net, x, y, v=v), want, rtol=1e-10)
    assert torch.allclose(loss, F.cross_entropy(net(x), y) + want, rtol=1e-10)
    assert logs["trace"] == pytest.approx(float(tr.mean()), rel=1e-9)
    assert logs["grad_sq"] == pytest.approx(float(gsq.mean()), rel=1e-9)
    assert set(logs) == {"loss", "ce", "trace", "grad_sq", "penalty"}
    torch.manual_seed(9)
    a = m.penalty(net, x, y)
    torch.manual_seed(9)
    assert torch.equal(a, m.penalty(net, x, y)) and not torch.allclose(a, want)


# ------------------------------------------------------------------------------------------
# cure
# ------------------------------------------------------------------------------------------
def _ce_grad(net, x, y):
    """grad_x CE(net(x_n), y_n), one sample at a time on fresh leaves."""
    out = []
    for n in range(len(x)):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(net(xi), y[n:n + 1]), xi)
        out.append(g[0])
    return torch.stack(out)


@pytest.mark.parametrize("squared", [False, True])
def test_cure_penalty_by_hand(squared):
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    h, lam = 0.4, 2.5
    m = R.get("cure", h=h, lam=lam, squared=squared)
    g0 = _ce_grad(net, x, y)
    s = g0.sign()
    z = h * s / s.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(m.direction(g0), z) and torch.allclose(z.flatten(1).norm(dim=1), torch.full((3,), h, dtype=DT))
    diff = (_ce_grad(net, x + z, y) - g0).flatten(1).norm(dim=1)
    want = lam * (diff ** 2 if squared else diff).mean()
    loss, logs = m(net, x, y)
    assert torch.allclose(m.penalty(net, x, y), want, rtol=1e-9)
    assert torch.allclose(loss, F.cross_entropy(net(x), y) + want, rtol=1e-9)
    assert logs["penalty"] == pytest.approx(float(want), rel=1e-9)
    assert R.get("cure").hparams == {"lam": 4.0, "h": 3.0, "squared": False}


# ------------------------------------------------------------------------------------------
# group_dro
# ------------------------------------------------------------------------------------------
LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-1.0, 3.0, 0.0],
                       [0.0, 0.0, 0.0], [1.0, -2.0, 4.0], [0.3, 0.3, -0.6]], dtype=DT)
LABELS = torch.tensor([0, 2, 1, 1, 0, 2])
GROUPS = torch.tensor([0, 0, 1, 2, 2, 2])  # group 3 absent


def per_group_ce():
    ce = -sp_log_softmax(LOGITS.numpy(), axis=1)[np.arange(6), LABELS.numpy()]
    return ce, np.array([ce[:2].mean(), ce[2], ce[3:].mean(), 0.0])


def test_group_dro_online_steps_are_the_exp_weights():
    ce, lg = per_group_ce()
    m = methods.get("group_dro", eta=0.5)
    assert torch.equal(m.q, torch.full((4,), 0.25, dtype=DT))
    q = np.full(4, 0.25)
    for step in range(2):
        loss, logs = m(nn.Identity(), LOGITS, LABELS, groups=GROUPS)
        q = q * np.exp(0.5 * lg)
        q /= q.sum()
        assert np.allclose(m.q.numpy(), q, rtol=1e-12), step
        assert float(loss) == pytest.approx(float((q * lg).sum()), rel=1e-12)
        assert [logs[f"q{g}"] for g in range(4)] == pytest.approx(list(q), rel=1e-12)
        assert logs["ce"] == pytest.approx(ce.mean(), rel=1e-12)
        assert logs["worst_group_loss"] == pytest.approx(lg[:3].max(), rel=1e-12)
        assert logs["dro_loss"] == pytest.approx(float(loss), rel=1e-12) and logs["penalty"] == 0
    assert q[3] < 0.25 / 2  # the absent group lost weight to renormalization only
    before = m.q
    m.penalty(nn.Identity(), LOGITS, LABELS, groups=GROUPS)  # the penalty alone is not a step
    assert torch.equal(m.q, before)
    assert torch.equal(methods.get("group_dro", eta=0.0)(nn.Identity(), LOGITS, LABELS, groups=GROUPS)[0],
                       (torch.tensor(lg) * 0.25).sum())


def test_group_dro_balanced_is_the_mean_over_present_groups():
    ce, lg = per_group_ce()
    m = methods.get("group_dro", mode="balanced")
    loss, logs = m(nn.Identity(), LOGITS, LABELS, groups=GROUPS)
    assert float(loss) == pytest.approx(lg[:3].mean(), rel=1e-12)
    assert float(loss) != pytest.approx(ce.mean(), rel=1e-3)  # differs from the plain mean
    assert [logs[f"q{g}"] for g in range(4)] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert torch.equal(m.q, torch.full((4,), 0.25, dtype=DT))  # q unused


def test_group_dro_with_marginal_density_adds_its_penalty():
    net, (x, y) = mlp(), batch((6, 4))
    cls = torch.tensor([0, 1, 2, 0, 1, 2])
    kw = {"lam": 0.4, "variant": "efficient"}
    m = methods.get("group_dro", regularizer="marginal_density", reg_kw=kw, eta=0.3)
    plain = methods.get("group_dro", eta=0.3)
    loss, logs = m(net, x, y, groups=GROUPS, classes=cls)
    dro, _ = plain(net, x, y, groups=GROUPS)
    pen = R.get("marginal_density", **kw).penalty(net, x, y, classes=cls)
    assert torch.allclose(loss, dro + pen, rtol=1e-12)
    assert logs["penalty"] == pytest.approx(pen.item(), rel=1e-12)
    assert torch.allclose(m.penalty(net, x, y, groups=GROUPS, classes=cls), pen)
    assert m.extras == ("groups",) and m.draws == ("classes",)
    with pytest.raises(ValueError, match="delta"):
        m(net, x, y, groups=GROUPS, delta=x)
    assert {f"q{g}" for g in range(4)} <= set(logs)


def test_group_dro_state_round_trip():
    m = methods.get("group_dro", eta=1.0)
    m(nn.Identity(), LOGITS, LABELS, groups=GROUPS)
    state = m.state_dict()
    state["q"][0] = 7.0  # a copy: does not touch the method
    assert m.q[0] != 7.0
    state = m.state_dict()
    fresh = methods.get("group_dro", eta=1.0)
    assert not torch.equal(fresh.q, m.q)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.q, m.q)
    a, b = m(nn.Identity(), LOGITS, LABELS, groups=GROUPS), fresh(nn.Identity(), LOGITS, LABELS, groups=GROUPS)
    assert torch.equal(a[0], b[0]) and torch.equal(m.q, fresh.q)
    with pytest.raises(ValueError, match="q"):
        fresh.load_state_dict({"q": torch.ones(3)})


def test_group_dro_hparams_are_canonical_and_hash():
    a = methods.get("group_dro", regularizer="marginal_density", reg_kw={"lam": 0.5})
    b = methods.get("group_dro", regularizer="marginal_density", reg_kw={"variant": "stable", "lam": 0.5, "p": 2})
    c = methods.get("group_dro", regularizer="marginal_density", reg_kw={"lam": 0.2})
    d = methods.get("group_dro", regularizer="input_grad", reg_kw={"lam": 0.5})
    assert a.hparams == b.hparams and a.hparams["reg_kw"] == {"lam": 0.5, "p": 2.0, "variant": "stable"}
    hashes = {cache.config_hash(m.hparams) for m in (a, c, d, methods.get("group_dro"))}
    assert cache.config_hash(a.hparams) == cache.config_hash(b.hparams) and len(hashes) == 4
    assert methods.get("group_dro").hparams == {"n_groups": 4, "eta": 0.01, "mode": "online",
                                                "regularizer": None, "reg_kw": None}
    assert type(methods.GroupDRO(**a.hparams).inner) is R.MarginalDensity  # hparams rebuild the method


@pytest.mark.parametrize("kw,match", [
    ({"regularizer": "nope"}, "regularizer='nope'"),
    ({"regularizer": "group_dro"}, "regularizer='group_dro'"),
    ({"regularizer": "marginal_density", "reg_kw": {"lam": -1}}, "reg_kw"),
    ({"regularizer": "marginal_density", "reg_kw": {"eps": 1}}, "reg_kw"),
    ({"regularizer": "marginal_density", "reg_kw": [("lam", 1)]}, "reg_kw"),
    ({"reg_kw": {"lam": 1}}, "reg_kw"),
    ({"n_groups": 0}, "n_groups"),
    ({"eta": -0.1}, "eta"),
    ({"mode": "worst"}, "mode"),
    ({"q": 1}, "unknown"),
])
def test_group_dro_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        methods.get("group_dro", **kw)


def test_group_dro_bad_groups():
    m = methods.get("group_dro")
    for bad in (torch.tensor([0, 0, 1, 2, 4, 2]), torch.tensor([0, 0, 1, 2, -1, 2]),
                torch.tensor([0, 1, 2]), GROUPS.double(), None):
        with pytest.raises(ValueError, match="groups"):
            m(nn.Identity(), LOGITS, LABELS, groups=bad)


def test_group_dro_composes_with_adversarial_training():
    """group DRO over at_pgd: the per-sample CE at the inner method's PGD input (same draw)."""
    net, (x, y) = mlp(), batch((6, 4))
    x = x.clamp(0, 1)
    m = methods.get("group_dro", regularizer="at_pgd", reg_kw={"eps": 8, "steps": 2}, mode="balanced")
    assert m.hparams["reg_kw"] == {"alpha": 2.0, "eps": 8.0, "steps": 2}
    torch.manual_seed(3)
    loss, logs = m(net, x, y, groups=GROUPS)
    torch.manual_seed(3)
    x_adv = methods.get("at_pgd", eps=8, steps=2).attack(net, x, y)
    ce = nn.functional.cross_entropy(net(x_adv), y, reduction="none").detach().numpy()
    g = GROUPS.numpy()
    want = np.mean([ce[g == k].mean() for k in range(3)])
    assert loss.item() == pytest.approx(want, rel=1e-10)
    clean = methods.get("group_dro", mode="balanced")(net, x, y, groups=GROUPS)[0]
    assert loss.item() > clean.item()  # the attacked batch, not the clean one
    with pytest.raises(ValueError, match="free"):
        methods.get("group_dro", regularizer="norm_regularized_at", reg_kw={"training": "free"})
    with pytest.raises(ValueError, match="inner"):
        R.GroupDRO(inner=methods.get("group_dro"))


def _group_set(n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] > 0.5).long()
    groups = 2 * y + (x[:, 0, -1, -1] > 0.5).long()
    return data.ArrayDataset(x, y, num_classes=2, classes=("a", "b"), extras={"groups": groups})


def _small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Softplus(), nn.Linear(6, 2))


def test_group_dro_trains_end_to_end_and_resumes_with_its_q(tmp_path):
    loader = torch.utils.data.DataLoader(_group_set(), batch_size=8)
    m = methods.get("group_dro", regularizer="marginal_density", reg_kw={"lam": 0.1}, eta=1.0)
    net = training.train(_small_net(), m, loader, num_epochs=1, cache_dir=None, progress=False)
    rec = net.train_history[0]
    assert np.isfinite(rec["loss"]) and {"ce", "dro_loss", "worst_group_loss", "penalty", "q0", "q3"} <= set(rec)
    assert not torch.equal(m.q, torch.full((4,), 0.25, dtype=DT))
    k1 = training.train_key(_small_net(), m, loader, num_epochs=1)
    k2 = training.train_key(_small_net(), methods.get("group_dro", regularizer="marginal_density",
                                                      reg_kw={"lam": 0.2}, eta=1.0), loader, num_epochs=1)
    assert k1 != k2
    # a run stopped after epoch 1 resumes (q from the checkpoint) to the uninterrupted weights
    cfg = dict(num_epochs=2, lr=0.1, optimizer="sgd", progress=False)
    whole = training.train(_small_net(), methods.get("group_dro", eta=1.0), loader, cfg,
                           cache_dir=str(tmp_path / "a"))

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(_small_net(), methods.get("group_dro", eta=1.0), loader, cfg,
                       cache_dir=str(tmp_path / "b"), callback=stop)
    resumed_m = methods.get("group_dro", eta=1.0)
    resumed = training.train(_small_net(), resumed_m, loader, cfg, cache_dir=str(tmp_path / "b"))
    assert resumed.train_info["resumed_from_epoch"] == 1
    for p, q in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="groups"):
        plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 1, 4, 4),
                                                                           torch.zeros(8).long()), batch_size=4)
        training.train(_small_net(), m, plain, num_epochs=1, cache_dir=None, progress=False)


# ------------------------------------------------------------------------------------------
# Registry and hyperparameter checks
# ------------------------------------------------------------------------------------------
def test_registry_and_defaults():
    for name, cls in [("marginal_density", R.MarginalDensity), ("score_matching", R.ScoreMatching),
                      ("cure", R.Cure)]:
        assert R.REGISTRY[name] is cls and methods.METHODS[name] is cls and cls.name == name
        assert cls.__doc__.splitlines()[0].strip()
    # group_dro wraps other methods: methods builds it, the regularizers' registry does not list it
    assert "group_dro" not in R.REGISTRY and issubclass(methods.METHODS["group_dro"], R.GroupDRO)
    assert methods.METHODS["group_dro"].name == "group_dro"
    assert R.get("marginal_density").hparams == {"lam": 0.1, "p": 2.0, "variant": "stable"}
    assert R.get("score_matching").hparams == {"lam": 1e-5, "sigma": 0.01, "tau": 1e-3, "n_noise": 1}
    assert R.get("marginal_density").draws == ("classes",) and R.get("score_matching").draws == ("v",)


@pytest.mark.parametrize("name,kw,match", [
    ("marginal_density", {"variant": "exact"}, "variant='exact'"),
    ("marginal_density", {"p": 0.5}, "p=0.5"),
    ("marginal_density", {"lam": -1}, "lam=-1"),
    ("score_matching", {"sigma": 0}, "sigma=0"),
    ("score_matching", {"tau": -1}, "tau=-1"),
    ("cure", {"h": -1}, "h=-1"),
    ("cure", {"squared": "yes"}, "squared"),
])
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        R.get(name, **kw)


# ------------------------------------------------------------------------------------------
# marginal_density's basic_max (Eq. 4 max-subtracted) and random_class (not the density)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape", CASES)
def test_basic_max_is_the_gradient_of_logsumexp(make, shape):
    net, (x, _) = make(), batch(shape)
    got = R.marginal_density_grad(net, x, "basic_max")
    assert got.shape == x.shape and torch.allclose(got, lse_grad(net, x), rtol=1e-9, atol=1e-12)
    # it ignores classes (no draw): the global RNG is left as it was
    state = torch.get_rng_state()
    R.marginal_density_grad(net, x, "basic_max", classes=torch.zeros(shape[0], dtype=torch.long))
    assert torch.equal(state, torch.get_rng_state())


def test_basic_max_stays_finite_at_large_logits_where_basic_overflows():
    base, (x, _) = mlp(seed=1), batch((6, 4), seed=2)
    with torch.no_grad():
        s = float(1e4 / base(x).abs().amax(1).min())
    big = Scaled(base, s)
    assert big(x).detach().abs().amax(1).min() >= 1e4 - 1e-6
    assert (~torch.isfinite(R.marginal_density_grad(big, x, "basic"))).flatten(1).any(1).all()
    ref = lse_grad(big, x)
    got = R.marginal_density_grad(big, x, "basic_max")
    assert torch.isfinite(ref).all() and torch.isfinite(got).all()
    assert torch.allclose(got, ref, rtol=1e-8, atol=1e-6 * ref.abs().max())
    # float32 with every logit shifted by 100: basic overflows, basic_max does not move
    net32, x32 = mlp(seed=1).float(), x.float()
    shifted = Shifted(net32, 100.0)
    assert not torch.isfinite(R.marginal_density_grad(shifted, x32, "basic")).any()
    assert torch.allclose(R.marginal_density_grad(shifted, x32, "basic_max"),
                          R.marginal_density_grad(net32, x32, "basic"), atol=1e-5)


@pytest.mark.parametrize("make,shape", CASES)
def test_random_class_is_the_gradient_of_the_chosen_logit_not_of_logsumexp(make, shape):
    net, (x, _) = make(), batch(shape)
    n = shape[0]
    cls = torch.arange(n) % 3
    got = R.marginal_density_grad(net, x, "random_class", classes=cls)
    assert got.shape == x.shape and torch.allclose(got, logit_grad(net, x, cls), rtol=1e-10, atol=1e-12)
    stable = R.marginal_density_grad(net, x, "stable", classes=cls)
    assert torch.allclose(stable, lse_grad(net, x), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, stable, rtol=1e-3, atol=1e-6)  # not the marginal density's gradient
    # the class draw is the one of stable / efficient (global torch RNG, after the forward pass)
    torch.manual_seed(7)
    drawn = torch.randint(0, 3, (n,))
    torch.manual_seed(7)
    assert torch.equal(R.marginal_density_grad(net, x, "random_class"),
                       R.marginal_density_grad(net, x, "random_class", classes=drawn))
    with pytest.raises(ValueError, match="classes"):
        R.marginal_density_grad(net, x, "random_class", classes=torch.full((n,), 3))


def test_random_class_penalty_and_its_weight_gradient_by_hand():
    net, (x, y) = conv(seed=3), batch((3, 1, 5, 5), seed=6)
    cls = torch.tensor([2, 0, 1])
    m = methods.get("marginal_density", variant="random_class", lam=0.3)
    pen = m.penalty(net, x, y, classes=cls)
    gy = []
    for n in range(3):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi)[0, cls[n]], xi, create_graph=True)
        gy.append(g[0])
    want = 0.3 * torch.stack(gy).flatten(1).norm(dim=1).mean()
    assert torch.allclose(pen, want, rtol=1e-10)
    got, ref = _all_grads(net, pen), _all_grads(net, want)
    for n in got:
        if ref[n] is None:
            assert got[n] is None or torch.count_nonzero(got[n]) == 0
        else:
            assert torch.allclose(got[n], ref[n], rtol=1e-8, atol=1e-12), n
    md = 0.3 * _lse_grad_graph(net, x).flatten(1).norm(dim=1).mean()
    assert not torch.allclose(pen, md, rtol=1e-3)


@pytest.mark.parametrize("variant", ["basic_max", "random_class"])
def test_new_variants_build_through_methods_and_train_a_step(variant):
    net, (x, y) = conv(seed=4), batch((4, 1, 5, 5), seed=8)
    m = methods.get("marginal_density", variant=variant)
    assert isinstance(m, R.MarginalDensity) and m.hparams == {"lam": 0.1, "p": 2.0, "variant": variant}
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(0)
    loss, logs = m(net, x, y)
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in logs.values()) and logs["penalty"] > 0
    opt.zero_grad()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and torch.count_nonzero(p.grad) > 0, name
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_a_bad_variant_lists_all_five():
    with pytest.raises(ValueError, match="variant='exact'") as err:
        methods.get("marginal_density", variant="exact")
    for name in ("basic", "stable", "efficient", "basic_max", "random_class"):
        assert repr(name) in str(err.value), name
    net, (x, _) = mlp(), batch((3, 4))
    with pytest.raises(ValueError, match="variant='max'") as err:
        R.marginal_density_grad(net, x, variant="max")
    assert str(list(D.VARIANTS)) in str(err.value) and len(D.VARIANTS) == 5


# ------------------------------------------------------------------------------------------
# score_matching's n_noise
# ------------------------------------------------------------------------------------------
def test_score_matching_n_noise_1_is_bitwise_the_default():
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    default = R.get("score_matching", lam=0.5, sigma=0.1)
    one = R.get("score_matching", lam=0.5, sigma=0.1, n_noise=1)
    assert one.hparams == default.hparams and one.hparams["n_noise"] == 1
    torch.manual_seed(4)
    a, logs_a = default(net, x, y)
    state_a = torch.get_rng_state()
    torch.manual_seed(4)
    b, logs_b = one(net, x, y)
    assert torch.equal(a, b) and logs_a == logs_b
    assert torch.equal(state_a, torch.get_rng_state())  # the same RNG consumption
    # the draw: one 0.1 * randn_like(x); a fixed v of x's shape or (1, *x.shape) gives the same
    torch.manual_seed(4)
    v = 0.1 * torch.randn_like(x)
    torch.manual_seed(4)
    assert torch.equal(one.penalty(net, x, y), one.penalty(net, x, y, v=v))
    assert torch.equal(one.penalty(net, x, y, v=v[None]), one.penalty(net, x, y, v=v))


def test_score_matching_n_noise_averages_the_trace_estimates():
    net, (x, y) = conv(seed=2), batch((3, 1, 5, 5), seed=3)
    k, sigma, tau, lam = 4, 0.2, 5.0, 0.7
    v = sigma * torch.randn((k,) + tuple(x.shape), generator=torch.Generator().manual_seed(1), dtype=DT)
    m = R.get("score_matching", lam=lam, sigma=sigma, tau=tau, n_noise=k)
    loss, logs = m(net, x, y, v=v)
    with torch.no_grad():
        each = torch.stack([R.hessian_trace_estimate(net, x, y, sigma, v=v[j]) for j in range(k)])
    tr = each.mean(0)
    gsq = logit_grad(net, x, y).flatten(1).pow(2).sum(1)
    want = lam * (tr + 0.5 * gsq + tau * tr ** 2).mean()
    assert logs["trace"] == pytest.approx(float(tr.mean()), rel=1e-10)
    assert torch.allclose(m.penalty(net, x, y, v=v), want, rtol=1e-10)
    assert torch.allclose(loss, F.cross_entropy(net(x), y) + want, rtol=1e-10)
    # (tr H)^2 squares the averaged estimate, not the mean of the squared single-draw estimates
    mean_sq = lam * (tr + 0.5 * gsq + tau * each.pow(2).mean(0)).mean()
    assert not torch.allclose(want, mean_sq, rtol=1e-3)
    # every draw counts: dropping one changes the estimate
    assert not torch.allclose(tr, each[:-1].mean(0), rtol=1e-3)
    # the weight gradient is that of the independent penalty
    got = _all_grads(net, m.penalty(net, x, y, v=v))
    idx = torch.arange(3)
    tr_graph = torch.stack([2 / sigma ** 2 * (net(x + v[j])[idx, y] - net(x)[idx, y]) for j in range(k)]).mean(0)
    gy = []
    for n in range(3):
        xi = x[n:n + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi)[0, y[n]], xi, create_graph=True)
        gy.append(g[0])
    ref = _all_grads(net, lam * (tr_graph + 0.5 * torch.stack(gy).flatten(1).pow(2).sum(1)
                                 + tau * tr_graph ** 2).mean())
    for n in got:
        if ref[n] is None:
            assert got[n] is None or torch.count_nonzero(got[n]) == 0
        else:
            assert torch.allclose(got[n], ref[n], rtol=1e-8, atol=1e-12), n


def test_score_matching_n_noise_draws_sigma_scaled_noise_of_the_stacked_shape():
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    k, sigma = 3, 0.1
    m = R.get("score_matching", lam=1.0, sigma=sigma, n_noise=k)
    torch.manual_seed(5)
    drawn = m.penalty(net, x, y)
    torch.manual_seed(5)
    v = sigma * torch.randn((k,) + tuple(x.shape), dtype=DT)
    assert torch.allclose(drawn, m.penalty(net, x, y, v=v), rtol=1e-12)
    assert torch.isfinite(drawn)
    torch.manual_seed(5)
    assert not torch.allclose(drawn, R.get("score_matching", lam=1.0, sigma=sigma).penalty(net, x, y))


@pytest.mark.parametrize("bad", [0, 2.5, -1, True, "2"])
def test_score_matching_bad_n_noise(bad):
    with pytest.raises(ValueError, match="n_noise"):
        R.get("score_matching", n_noise=bad)
    with pytest.raises(ValueError, match="n_noise"):
        methods.get("score_matching", n_noise=bad)


def test_score_matching_wrong_v_shape():
    net, (x, y) = conv(), batch((3, 1, 5, 5))
    shape = tuple(x.shape)
    for n_noise, bad in [(2, torch.zeros(shape, dtype=DT)), (3, torch.zeros((2,) + shape, dtype=DT)),
                         (1, torch.zeros((2,) + shape, dtype=DT)), (2, torch.zeros((2, 2, 1, 5, 5), dtype=DT))]:
        m = R.get("score_matching", n_noise=n_noise)
        with pytest.raises(ValueError, match=r"v=") as err:
            m(net, x, y, v=bad)
        assert str((n_noise,) + shape) in str(err.value)
    with pytest.raises(ValueError, match=r"v="):
        R.hessian_trace_estimate(net, x, y, 0.1, v=torch.zeros(3, 1, 5, 4, dtype=DT))


def _bn_net(seed=0, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Softplus(beta=3.0),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, classes)).to(DT)


def test_with_batchnorm_in_train_mode_basic_weighs_the_batch_by_its_exp_sums():
    """P4 Fig. 2a's setting: BatchNorm in train mode couples the samples.  Stable and efficient stay
    the gradient of the batch's summed logsumexp; the basic form becomes
    sum_m (S_m / S_n) d lse(x_m) / d x_n with S_m = sum_i exp g_i(x_m) (each term by autograd);
    in eval mode all three are the per-sample gradient of logsumexp again."""
    net = _bn_net().train()
    torch.manual_seed(1)
    x = torch.randn(5, 1, 4, 4, dtype=DT) * 2
    xl = x.clone().requires_grad_(True)
    lse = torch.logsumexp(net(xl), 1)
    parts = [torch.autograd.grad(lse[m], xl, retain_graph=True)[0] for m in range(len(x))]  # d lse_m / d x
    s = lse.detach().exp()
    basic_ref = sum(s[m] * parts[m] for m in range(len(x))) / s.view(-1, 1, 1, 1)
    summed_ref = sum(parts)
    assert torch.allclose(R.marginal_density_grad(net, x, "basic"), basic_ref, rtol=1e-9, atol=1e-12)
    for v in ("stable", "efficient"):
        assert torch.allclose(R.marginal_density_grad(net, x, v), summed_ref, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(basic_ref, summed_ref, rtol=1e-3)  # the coupling is not vacuous here
    net.eval()
    ref = lse_grad(net, x)
    for v in VARIANTS:
        assert torch.allclose(R.marginal_density_grad(net, x, v), ref, rtol=1e-10, atol=1e-12)
