"""Sparse MoreauGrad (Zhang & Farnia 2023, "MoreauGrad: Sparse and Robust Interpretation of
Neural Networks via Moreau Envelope"; a post-processing baseline of P3's Table 5, next to
SmoothGrad): the gradient of the sparse Moreau envelope of the Gaussian-smoothed target logit,
computed by proximal gradient descent.  Evaluation-only (the map is detached)."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import torch

from ..common import to_device_of
from ._common import _target
from .gradient import _check_space
from .smooth import _check_int, _score, _space_maps

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch.nn as nn


def _check_number(name, value, low, strict):
    """``value`` a finite real > ``low`` (``strict``) or >= ``low``, else ValueError naming ``name``."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if strict else value >= low))
    if not ok:
        op = ">" if strict else ">="
        raise ValueError(f"{name}={value!r} is not valid; accepted: a finite number {op} {low}")


def _soft_threshold(u, tau):
    """ST_tau(u) = sign(u) * max(|u| - tau, 0), the proximal operator of tau * ||.||_1."""
    return torch.sign(u) * torch.clamp(u.abs() - tau, min=0)


def _prox_descent(grad_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rho: float,
                  eta: float | torch.Tensor, step: float, steps: int) -> torch.Tensor:
    """v* ~ argmin_v f(x + v) + ||v||^2 / (2 rho) + eta ||v||_1 by ``steps`` proximal gradient
    steps from v = 0: v <- ST_{step * eta}(v - step * (grad_fn(x + v) + v / rho)).

    ``grad_fn(z)`` returns the gradient of f at z (per sample for a batch: f is a sum over
    samples).  Converges when f + ||.||^2 / (2 rho) is convex (f convex, or rho L < 1) and
    step < 2 / (L + 1 / rho), L the Lipschitz constant of grad f.  ``eta``: a number or a
    tensor broadcastable to x (one weight per sample: shape (N, 1, ...)).
    """
    v = torch.zeros_like(x)
    for _ in range(steps):
        v = _soft_threshold(v - step * (grad_fn(x + v) + v / rho), step * eta)
    return v


def sparse_moreaugrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int,
                      create_graph: bool = False, rho: float = 1.0, eta: float | torch.Tensor = 0.1,
                      step: float = 0.1,
                      steps: int = 20, n: int = 16, sigma: float = 0.15, space: str = "pixel",
                      seed: int = 0) -> torch.Tensor:
    """Sparse MoreauGrad (Zhang & Farnia 2023): the gradient of the sparse Moreau envelope of
    the smoothed target logit.

    With f(x) = g_y(x) the target logit and f~(z) = E f(z + sigma * N(0, I)) its Gaussian
    smoothing, the sparse Moreau envelope is

        f_{rho,eta}(x) = min_z f~(z) + ||z - x||^2 / (2 rho) + eta ||z - x||_1,

    solved per sample by proximal gradient descent on v = z - x from v = 0 (``_prox_descent``):
    v <- ST_{step*eta}(v - step * (grad f~(x + v) + v / rho)), ST_tau(u) = sign(u) max(|u| - tau, 0).
    The map is -v* / rho = (x - z*) / rho, the envelope's gradient: sparse (exact zeros) for
    eta > 0; MoreauGrad for eta = 0; the smoothed gradient grad f~(x) (SmoothGrad) as rho -> 0,
    and ``grad`` with sigma = 0 too.  Each step estimates grad f~ as SmoothGrad does, by the
    mean gradient over ``n`` noisy copies, with fresh noise at every step drawn from a
    ``torch.Generator`` seeded with ``seed`` on x's device (the same call gives the same map);
    sigma = 0 takes one noiseless copy.  Unlike ``smoothgrad``, ``sigma`` is the noise's std
    itself (in ``space``'s units), not a fraction of the input's range.  The loop stops after
    ``steps`` iterations (no convergence test); for a small ``rho`` take ``step < rho``.
    Only input gradients are taken: parameters' ``.grad`` and the model's mode are untouched.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.
    create_graph : bool
        Only False (an optimised map, evaluation-only); True raises ``ValueError``.
    rho : float
        Moreau envelope parameter, > 0 (larger: more smoothing of f~).
    eta : float or torch.Tensor
        L1 weight, >= 0 (larger: sparser map; 0: MoreauGrad); a tensor of shape (N,) gives each
        sample its own.  The map is 0 wherever
        |grad f~| stays <= eta, and entirely 0 for eta >= max |grad f~(x)| at the first step.
    step : float
        Proximal gradient step size gamma, > 0.
    steps : int
        Proximal gradient iterations, >= 1.
    n : int
        Noisy copies per input and step, >= 1.
    sigma : float
        Std of the Gaussian noise, >= 0, in the units of ``space``'s input.
    space : {"pixel", "normalized"}
        ``"pixel"`` (default): z, the noise and the map on x in [0, 1].  ``"normalized"``: on
        the model's normalized input (x - mean)/std after its leading ``models.Normalize``
        (the map then tends to ``grad(..., space="normalized")`` as rho -> 0, sigma = 0, eta
        = 0); without one it equals ``"pixel"``.
    seed : int
        Seed of the noise generator.

    Returns
    -------
    torch.Tensor
        The detached map, same shape, device and dtype as ``x``: target logit per unit of
        ``space``'s input.
    """
    if create_graph:
        raise ValueError("create_graph=True is not supported by 'sparse_moreaugrad' (an optimised map); "
                         "accepted: False")
    _check_number("rho", rho, 0, strict=True)
    if isinstance(eta, torch.Tensor):
        if eta.shape != (x.shape[0],) or not (torch.isfinite(eta).all() and (eta >= 0).all()):
            raise ValueError(f"eta of shape {tuple(eta.shape)} is not valid; accepted: a number >= 0 or a "
                             f"tensor of {x.shape[0]} finite values >= 0 (one per sample)")
    else:
        _check_number("eta", eta, 0, strict=False)
    _check_number("step", step, 0, strict=True)
    _check_int("steps", steps)
    _check_int("n", n)
    _check_number("sigma", sigma, 0, strict=False)
    _check_space(space)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r} is not valid; accepted: an int")
    to_z, from_z = _space_maps(model, space)
    x, target = to_device_of(model, x, target)
    target = _target(target, x)
    with torch.no_grad():
        z0 = to_z(x.detach())
    copies = n if sigma > 0 else 1
    targets = target.repeat_interleave(copies)
    gen = torch.Generator(device=z0.device).manual_seed(seed)

    def smoothed_grad(z):
        noisy = z.repeat_interleave(copies, 0)
        if sigma > 0:
            noisy = noisy + sigma * torch.randn(noisy.shape, generator=gen, device=z.device, dtype=z.dtype)
        noisy = noisy.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(_score(model, from_z(noisy), targets, "logit"), noisy)
        return g.view(z.shape[0], copies, *z.shape[1:]).mean(1)

    if isinstance(eta, torch.Tensor):
        eta = eta.to(z0.device, z0.dtype).view(-1, *([1] * (z0.dim() - 1)))
    v = _prox_descent(smoothed_grad, z0, rho, eta, step, steps)
    return (-v / rho).detach()
