"""Gradient maps on torch.autograd, differentiable w.r.t. x and the weights with
``create_graph=True``: grad (P1 "Grad", P3's simple gradient), input_x_grad (P1 "xGrad"),
guided_backprop.  ``grad`` and ``input_x_grad`` take ``space`` (``SPACES``): the pixel input or
the model's normalized input (after its leading ``Normalize``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..common import target_logit_grad, to_device_of
from ..models import leading_normalize
from ._common import _input, _select, _swap, _target

SPACES = ("pixel", "normalized")

_ACTIVATIONS = (nn.ReLU, nn.Softplus)


def _check_space(space):
    if space not in SPACES:
        raise ValueError(f"space={space!r} is not known; accepted: {list(SPACES)}")


# ----------------------------------------------------------------------------- gradient-based
def grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
         space: str = "pixel") -> torch.Tensor:
    """Gradient of the target logit w.r.t. the input (P1 "Grad", P3 "simple gradient"; Simonyan 2014).

    ``space="pixel"`` (default): grad_x g_y(x), x in [0, 1].  ``space="normalized"``: the
    gradient w.r.t. the model's normalized input x_n = (x - mu)/sigma, grad_{x_n} g_y =
    sigma_c * grad_x g_y per channel c, for a model whose first module is ``Normalize`` (the
    pixel gradient without one), as P3's released ``utils.simplegrad`` (and P1's code)
    differentiate w.r.t. the normalized input.  Differentiable with ``create_graph=True``.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.

    Returns
    -------
    torch.Tensor
        The gradient map, same shape as ``x``.
    """
    x, target = to_device_of(model, x, target)
    return in_space(model, target_logit_grad(model, x, _target(target, x), create_graph=create_graph)[1], space)


def in_space(model: nn.Module, g: torch.Tensor, space: str = "normalized") -> torch.Tensor:
    """A pixel-space input gradient ``g`` in the input ``space`` of ``grad``: sigma_c * g for
    ``"normalized"`` and a model whose first module is ``Normalize`` (d/dx_n = sigma d/dx), else g."""
    _check_space(space)
    norm = leading_normalize(model) if space == "normalized" else None
    return g if norm is None else g * norm._view(norm.std, g)


def input_x_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
                 space: str = "normalized") -> torch.Tensor:
    """Input times gradient (P1 "xGrad", Shrikumar et al. 2017).

    ``space="normalized"`` (default, P1's released code, whose models take x_n = (x - mu)/sigma):
    x_n * grad_{x_n} g_y = (x - mu) * grad_x g_y for a model whose first module is ``Normalize``
    (the pixel form without one).  ``space="pixel"``: x * grad_x g_y(x), x in [0, 1].
    """
    x, target = to_device_of(model, x, target)
    with torch.enable_grad():
        x = _input(x)
        return times_input(model, x, grad(model, x, target, create_graph=create_graph), space)


def times_input(model: nn.Module, x: torch.Tensor, g: torch.Tensor,
                space: str = "normalized") -> torch.Tensor:
    """``x * g`` in the input ``space`` of ``input_x_grad`` (``g``: the pixel-space gradient)."""
    _check_space(space)
    norm = leading_normalize(model) if space == "normalized" else None
    return x * g if norm is None else (x - norm._view(norm.mean, x)) * g


class _GuidedGrad(torch.autograd.Function):
    """Value of ``z``; backward ``relu(grad_out) * slope`` (slope given; twice differentiable in it)."""

    @staticmethod
    def forward(ctx, z, slope):
        ctx.save_for_backward(slope)
        return z.clone()

    @staticmethod
    def backward(ctx, grad_out):
        (slope,) = ctx.saved_tensors
        return torch.relu(grad_out) * slope, None


def _slope(module, z):
    """Derivative of the activation module at ``z``: 1[z > 0] (ReLU) or sigmoid(beta z) (Softplus)."""
    if isinstance(module, nn.ReLU):
        return (z > 0).to(z.dtype)
    return torch.sigmoid(module.beta * z)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int,
                    create_graph: bool = False) -> torch.Tensor:
    """Guided backprop (Springenberg et al. 2015; P1 Sec. "Attribution methods").

    Backward through each ``nn.ReLU`` / ``nn.Softplus`` module keeps only positive upstream
    gradients: grad_z = relu(grad_a) * 1[z > 0] (ReLU) or relu(grad_a) * sigmoid(beta z)
    (Softplus). Other layers use their true gradient. With ``create_graph=True`` the model
    runs twice: a value pass on x (true graph: the slopes' dependence on x) and a pass whose
    backward is the guided rule, so the map is twice differentiable for softplus nets
    (in train mode, BatchNorm statistics are then updated twice).
    """
    x, target = to_device_of(model, x, target)
    acts = [m for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    records, calls = {}, {}

    def record(module, args, out):
        records.setdefault(module, []).append(args[0].clone())  # safe from later in-place ops

    def guide(module, args, out):
        z = args[0]
        if create_graph:
            k = calls.get(module, 0)
            calls[module] = k + 1
            slope = _slope(module, records[module][k])
        else:
            slope = _slope(module, z.detach())
        return _swap(_GuidedGrad.apply(z, slope), out)

    handles = []
    try:
        if create_graph:
            handles = [m.register_forward_hook(record) for m in acts]
            with torch.enable_grad():
                model(x)
            for h in handles:
                h.remove()
        handles = [m.register_forward_hook(guide) for m in acts]
        x2 = x.clone() if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(x2)
            (g,) = torch.autograd.grad(_select(out, target), x2, create_graph=create_graph)
        return g
    finally:
        for h in handles:
            h.remove()

