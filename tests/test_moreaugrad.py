"""Sparse MoreauGrad (attributions.moreau): the proximal solver against the closed-form minimiser
of a separable quadratic, the map against its limits (zero for a large eta, the gradient for a
tiny rho) and the envelope's optimality conditions on a network, determinism, parameter checks
and side effects."""
import math

import pytest
import torch
from scipy.optimize import minimize_scalar

from robust_saliency import attributions as A
from robust_saliency import models
from robust_saliency.attributions.moreau import _prox_descent

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = (0.45, 0.5, 0.4), (0.25, 0.2, 0.3)


def net(normalize=False, seed=0):
    """small_cnn, softplus (smooth), float64, inputs (3, 6, 6), 4 classes."""
    torch.manual_seed(seed)
    kw = {"mean": MEAN, "std": STD} if normalize else {}
    return models.build("small_cnn", 4, (3, 6, 6), activation="softplus", width=3, **kw).double().eval()


def rand_x(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 6, 6, generator=g, dtype=torch.float64) * 0.9 + 0.05


T = torch.tensor([0, 3])


def logit_grad(model, x, t):
    """grad_x of the target logits, straight from autograd."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, t.view(-1, 1)).sum(), x)
    return g


# ----------------------------------------------------------------------------- the solver
def test_prox_descent_matches_the_closed_form_minimiser_of_a_separable_quadratic():
    """f(z) = 1/2 sum a_i z_i^2 + b.z: per coordinate, min_v c/2 v^2 + d v + eta |v| with
    c = a + 1/rho, d = a x + b has v* = -sign(d) max(|d| - eta, 0) / c."""
    g = torch.Generator().manual_seed(0)
    shape = (3, 2, 4, 4)
    a = torch.rand(shape, generator=g, dtype=torch.float64) * 1.5 + 0.5
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    rho, eta = 0.5, 0.3
    c, d = a + 1 / rho, a * x + b
    want = -torch.sign(d) * torch.clamp(d.abs() - eta, min=0) / c
    assert 0 < (want == 0).sum() < want.numel()  # both cases of the soft threshold occur
    # the closed form against a numerical 1-D minimisation of the full objective (a few coordinates)
    for i in range(0, want.numel(), 17):
        ai, bi, xi = a.flatten()[i].item(), b.flatten()[i].item(), x.flatten()[i].item()
        res = minimize_scalar(lambda v: 0.5 * ai * (xi + v) ** 2 + bi * (xi + v) + v * v / (2 * rho)
                              + eta * abs(v), bracket=(-5, 5), tol=1e-12)
        assert res.x == pytest.approx(want.flatten()[i].item(), abs=1e-6)
    v = _prox_descent(lambda z: a * z + b, x, rho, eta, step=0.2, steps=200)
    torch.testing.assert_close(v, want, rtol=0, atol=1e-6)
    assert torch.equal(v == 0, want == 0)  # exact zeros where the minimiser is 0
    # eta = 0: the Moreau envelope's minimiser, v* = -(a x + b) / (a + 1/rho)
    v0 = _prox_descent(lambda z: a * z + b, x, rho, 0.0, step=0.2, steps=200)
    torch.testing.assert_close(v0, -d / c, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- limits of the map
def test_large_eta_gives_an_exactly_zero_map():
    model, x = net(), rand_x()
    h = A.sparse_moreaugrad(model, x, T, eta=1e6, sigma=0.1, n=4, steps=5)
    assert h.shape == x.shape and torch.equal(h, torch.zeros_like(x))


def test_positive_eta_gives_some_exact_zeros():
    model, x = net(), rand_x()
    eta = float(logit_grad(model, x, T).abs().median())
    h = A.sparse_moreaugrad(model, x, T, rho=0.1, eta=eta, step=0.05, steps=50, sigma=0.0)
    assert 0 < (h == 0).sum() < h.numel()
    dense = A.sparse_moreaugrad(model, x, T, rho=0.1, eta=0.0, step=0.05, steps=50, sigma=0.0)
    assert (dense != 0).all()


def test_per_sample_eta_equals_each_sample_alone():
    model, x = net(), rand_x()
    eta = torch.tensor([0.05, 1e6], dtype=torch.float64)
    kw = {"rho": 0.1, "step": 0.05, "steps": 30, "sigma": 0.0}
    both = A.sparse_moreaugrad(model, x, T, eta=eta, **kw)
    for i in range(2):
        alone = A.sparse_moreaugrad(model, x[i:i + 1], T[i:i + 1], eta=float(eta[i]), **kw)
        assert torch.allclose(both[i:i + 1], alone, atol=1e-12)
    assert torch.equal(both[1], torch.zeros_like(both[1])) and (both[0] != 0).any()
    with pytest.raises(ValueError, match="eta"):
        A.sparse_moreaugrad(model, x, T, eta=torch.tensor([0.1, -1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="eta"):
        A.sparse_moreaugrad(model, x, T, eta=torch.tensor([0.1], dtype=torch.float64))


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_tiny_rho_without_noise_or_sparsity_gives_the_gradient(space):
    model, x = net(normalize=space == "normalized"), rand_x()
    h = A.sparse_moreaugrad(model, x, T, rho=1e-5, eta=0.0, step=5e-6, steps=60, sigma=0.0, space=space)
    g = logit_grad(model, x, T)
    if space == "normalized":  # d/dx_n = std * d/dx, independently of the library's grad
        g = g * torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    torch.testing.assert_close(h, g, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(h, A.get("grad", space=space)(model, x, T), rtol=1e-3, atol=1e-6)


def test_map_satisfies_the_sparse_envelope_optimality_conditions():
    """sigma = 0: with z* = x - rho h, grad f(z*) + (z* - x)/rho + eta s = 0 for s in the
    subdifferential of |.|_1 at z* - x: grad f(z*) = h + eta sign(h) where h != 0, and
    |grad f(z*)| <= eta where h = 0 (autograd at z*, not the solver's iterates)."""
    model, x = net(), rand_x()
    rho, eta = 0.05, 0.5 * float(logit_grad(model, x, T).abs().median())
    h = A.sparse_moreaugrad(model, x, T, rho=rho, eta=eta, step=0.02, steps=300, sigma=0.0)
    g = logit_grad(model, x - rho * h, T)
    nz = h != 0
    assert nz.any() and (~nz).any()
    torch.testing.assert_close(g[nz], (h + eta * torch.sign(h))[nz], rtol=0, atol=1e-8)
    assert (g[~nz].abs() <= eta + 1e-8).all()


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_map_other_seed_other_map_global_rng_untouched():
    model, x = net(), rand_x()
    kw = {"sigma": 0.2, "n": 3, "steps": 4}
    state = torch.random.get_rng_state()
    h = A.sparse_moreaugrad(model, x, T, **kw)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(h, A.sparse_moreaugrad(model, x, T, **kw))
    assert torch.equal(h, A.get("sparse_moreaugrad", **kw)(model, x, T))
    assert not torch.equal(h, A.sparse_moreaugrad(model, x, T, seed=1, **kw))
    assert h.dtype == x.dtype and h.device == x.device and not h.requires_grad


# ----------------------------------------------------------------------------- checks, registry
@pytest.mark.parametrize("name, value", [
    ("rho", 0.0), ("rho", -1.0), ("rho", math.nan), ("rho", math.inf), ("eta", -0.1), ("eta", "0.1"),
    ("step", 0), ("step", -0.1), ("steps", 0), ("steps", 2.0), ("steps", True), ("n", 0), ("n", 1.5),
    ("sigma", -0.01), ("sigma", None), ("space", "logit"), ("seed", 0.5), ("create_graph", True),
])
def test_bad_parameters_raise_value_errors_naming_them(name, value):
    model, x = net(), rand_x()
    with pytest.raises(ValueError, match=rf"{name}=.*accepted"):
        A.sparse_moreaugrad(model, x, T, **{name: value})


def test_registered_evaluation_only_and_fitted_per_input():
    ex = A.get("sparse_moreaugrad", steps=2, n=2)
    assert "sparse_moreaugrad" in A.NAMES and ex.fn is A.sparse_moreaugrad
    assert not ex.differentiable and ex.needs_fit and ex.source == "optimised"
    assert set(ex.accepted()) == {"rho", "eta", "step", "steps", "n", "sigma", "space", "seed"}


# ----------------------------------------------------------------------------- side effects
@pytest.mark.parametrize("train", [True, False])
def test_parameters_grad_and_model_mode_untouched(train):
    model = net().train(train)
    x = rand_x()
    h = A.sparse_moreaugrad(model, x, 1, n=2, steps=3)
    assert h.shape == x.shape
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training is train for m in model.modules())
    assert not x.requires_grad
