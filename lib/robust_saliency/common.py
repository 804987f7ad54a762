"""Small helpers shared by the other modules (a leaf: imports nothing from the package)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["seeded", "generator", "device_of", "to_device_of", "resolve_k", "check_group_size",
           "target_logit_grad"]


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global RNG seeded by ``seed`` and restore its state after.

    For code that draws from the global RNG (captum's NoiseTunnel in SmoothGrad, regularizers
    that sample perturbations): its numbers then do not depend on what ran before (for example
    on whether a model came from the cache or was trained).  ``seed=None`` leaves the global
    RNG alone.  CUDA generators are forked and seeded too when CUDA is in use.
    """
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def generator(seed: int | None, device: torch.device | str | None = None) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``; None for ``seed=None`` (the
    global RNG then draws)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def device_of(model: object, default: torch.device | str | None = None) -> torch.device | None:
    """The device of ``model``: that of its first parameter, else of its first buffer; ``default``
    (as a ``torch.device``, or None) for a model without either, or for a callable that is not a
    module.

    This reads where a model *is*; it never chooses a device.  The one decision of which device
    to use ("cuda if available") is ``profiles.resolve_device``, applied once when a notebook's
    parameters are built; ``training.train`` puts the model there and everything after follows
    the model through this helper.
    """
    for get in ("parameters", "buffers"):
        tensors = getattr(model, get, None)
        first = next(iter(tensors()), None) if callable(tensors) else None
        if first is not None:
            return first.device
    return None if default is None else torch.device(default)


def to_device_of(model: object, *tensors: object) -> tuple:
    """``tensors`` moved to ``device_of(model)``, as a tuple (``x, y = to_device_of(model, x, y)``).

    Every entry point of the library that takes a model and data (metrics, attacks, attributions,
    evaluation, cost, the paper modules) calls it first, so that data held on the CPU (datasets,
    ``runs.batch``) meets a model on a GPU.  A tensor already there is returned as it is (the same
    object: its graph and ``requires_grad`` are kept); what is not a tensor (None, an int target,
    a string baseline) passes unchanged, and so does everything for a model without parameters or
    buffers (nothing tells where it runs).  Moving keeps the dtype and is differentiable.
    """
    device = device_of(model)
    if device is None:
        return tuple(tensors)
    return tuple(t.to(device) if torch.is_tensor(t) and t.device != device else t for t in tensors)


def resolve_k(k: int | float, p: int, name: str = "k") -> int:
    """``k`` as a count of the ``p`` positions: an int in [1, p] as given, a float fraction in
    (0, 1] as ``max(1, round(k * p))``; anything else raises ValueError naming ``name``."""
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise ValueError(f"{name} must be an int count in [1, {p}] or a float fraction in (0, 1]; "
                         f"got {name}={k!r}")
    if isinstance(k, float):
        if not 0 < k <= 1:
            raise ValueError(f"{name} as a fraction must be in (0, 1]; got {name}={k}")
        return max(1, int(round(k * p)))
    if not 1 <= k <= p:
        raise ValueError(f"{name} as a count must be in [1, {p}]; got {name}={k}")
    return k


def check_group_size(group_size: int, h: int, w: int, what: str = "images") -> int:
    """``group_size`` as an int that divides both ``h`` and ``w`` (P3's square groups), or a
    ValueError naming it."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 \
            or h % group_size or w % group_size:
        raise ValueError(f"group_size={group_size!r} is not valid for {h}x{w} {what}; accepted: a "
                         f"positive int that divides both {h} and {w}")
    return group_size


def target_logit_grad(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                      create_graph: bool = False,
                      retain_graph: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, grad)``: one forward pass of ``model`` at ``x`` and the gradient of the target
    logits ``sum_n g_{target_n}(x_n)`` w.r.t. ``x`` (P1's "Grad"; every input-gradient map and
    penalty of the library starts here).

    ``target``: a (N,) LongTensor.  ``x`` is used as is if it requires grad (so the gradient is
    differentiable w.r.t. it with ``create_graph=True``), else a detached leaf is made.
    """
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        logits = model(x)
        selected = logits.gather(1, target.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(selected, x, create_graph=create_graph,
                                   retain_graph=retain_graph)
    return logits, g
