"""Functional terms, batched, per sample, differentiable w.r.t. the weights: the input
gradient of the target logit, P1's Gamma_l2 and Gamma_cos (Def. 4), Hessian-vector products
and P1's Theorem 6 bound.  ``delta`` here is in input units (not 0-255)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import units
from ..common import target_logit_grad
from ..models import leading_normalize

_COS_EPS = 1e-12  # floor of the norms in cosine similarities
_TINY = 1e-12


def _select(logits, target):
    """Sum over the batch of the target logits g_{target_n}(x_n)."""
    return logits.gather(1, target.view(-1, 1)).sum()


def _logits_and_input_grad(model, x, target, create_graph):
    """One forward pass: (logits, grad_x g_target(x)) (the ``grad`` attribution of P1).

    Same value as ``attributions.get("grad")``; also returns the logits so that a method can
    reuse the forward pass for its cross-entropy.  ``x`` is used as is if it requires grad
    (so the result is differentiable w.r.t. it), else a detached leaf is made.
    """
    return target_logit_grad(model, x, target, create_graph=create_graph, retain_graph=True)


def _f(t):
    """A scalar tensor as a float for logs (detached)."""
    return float(t.detach())


FORMS = ("paper", "reference_code")
_REFERENCE_COS_EPS = 1e-8  # torch's F.cosine_similarity default, as P1's released code


def input_scale(model: torch.nn.Module, x: torch.Tensor, form: str) -> torch.Tensor | None:
    """The factor that takes a pixel-space input gradient to the space P1's penalties are
    computed in: None for ``form="paper"`` (pixels) or a model without a leading ``Normalize``;
    for ``form="reference_code"`` the per-channel std of the model's ``Normalize``, shaped to
    broadcast with ``x`` (grad w.r.t. (x - mu)/sigma = sigma * grad w.r.t. x)."""
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not known; accepted: {list(FORMS)}")
    norm = leading_normalize(model) if form == "reference_code" else None
    return None if norm is None else norm._view(norm.std, x)


def _alignment(g_clean, g_pert, squared=False, cos_eps=_COS_EPS):
    """Per-sample (Gamma_l2, Gamma_cos) of two gradient batches (P1 Sec. 3, Def. 4)."""
    a = g_clean.flatten(1)
    b = g_pert.flatten(1)
    diff = b - a
    l2 = diff.pow(2).sum(1) if squared else torch.linalg.vector_norm(diff, dim=1)
    cos = F.cosine_similarity(b, a, dim=1, eps=cos_eps)
    return l2, 0.5 * (1.0 - cos)


def gradient_alignment_terms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                             detach_clean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample P1 Gamma_l2 = ||grad g_y(x+delta) - grad g_y(x)||_2 and Gamma_cos (Def. 4).

    ``delta`` is in input units (not 0-255).  Returns two tensors of shape (N,), differentiable
    w.r.t. the weights (create_graph); with ``detach_clean=True`` grad g_y(x) is a constant
    (P1's training trick).  Differentiable w.r.t. ``delta`` too if it requires grad.
    """
    _, g0 = _logits_and_input_grad(model, x, y, create_graph=not detach_clean)
    if detach_clean:
        g0 = g0.detach()
    _, g1 = _logits_and_input_grad(model, x + delta, y, create_graph=True)
    return _alignment(g0, g1)


def hessian_vector_product(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
                           create_graph: bool = False) -> torch.Tensor:
    """H_{g_y}(x) v per sample by double backprop of v . grad g_y(x) (Dombrowski 2022; P1 Eq. 3).

    Same shape as ``x``; ``create_graph=True`` keeps it differentiable w.r.t. the weights.
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    _, g = _logits_and_input_grad(model, x, y, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=create_graph)
    return hv


def cosd_upper_bound(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     delta: torch.Tensor) -> torch.Tensor:
    """P1 Fig. 3b bound eps ||H delta_hat||_2 / ||grad g_y(x + eps delta_hat)||_2 per sample.

    With eps = ||delta||_2 and delta_hat = delta / eps this is ||H delta|| / ||grad g_y(x+delta)||,
    the first-order form of Theorem 6 (Eq. 3) without its O(eps^2) term; ``delta`` in input
    units.  Detached (an evaluation quantity).  Compare with ``gradient_alignment_terms(...)[1]``.
    """
    hv = hessian_vector_product(model, x, y, delta)
    _, g1 = _logits_and_input_grad(model, x + delta, y, create_graph=False)
    num = torch.linalg.vector_norm(hv.flatten(1), dim=1)
    den = torch.linalg.vector_norm(g1.flatten(1), dim=1)
    return (num / den.clamp_min(_TINY)).detach()


def _uniform_delta(x, eps):
    """delta ~ U[-eps/255, eps/255]^d, one draw per sample (P1 Eq. 4-5)."""
    return (2.0 * torch.rand_like(x) - 1.0) * units.linf(eps)
