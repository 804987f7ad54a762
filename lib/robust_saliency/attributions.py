"""Attribution maps: ``get(name) -> fn(model, x, target, create_graph=False) -> map``.

STUB: only ``grad`` so far; the full module (input_x_grad, guided_backprop, lrp, captum-based
methods) replaces this file.
"""
import torch


def _select(out, target):
    return out.gather(1, target.view(-1, 1)).sum()


def grad(model, x, target, create_graph=False):
    """Gradient of the target logit w.r.t. the input (P1 "Grad")."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(_select(out, target), x, create_graph=create_graph)
    return g


_REGISTRY = {"grad": grad}
NAMES = tuple(_REGISTRY)


def get(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"attribution={name!r} is not known; accepted: {sorted(_REGISTRY)}") from None
