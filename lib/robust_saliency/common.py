"""Small helpers shared by the other modules (a leaf: imports nothing from the package)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["seeded", "generator", "resolve_k", "check_group_size", "target_logit_grad"]


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
