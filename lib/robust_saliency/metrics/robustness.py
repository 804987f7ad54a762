"""Random perturbation similarity (P1 "RPS"): how much a map changes under small uniform
input noise."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .. import attributions as _attributions
from .. import units
from ..common import generator, to_device_of
from ._common import _work_dtype
from .similarity import cosine, pcc, spearman, ssim, ssim_p1

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

def _abs_max(h):
    """P1's h (its released code): sum of |map| over channels / (per-image max + 1e-8)."""
    return _attributions.postprocess(h, "abs_max")


_POSTPROCESS = {"abs_max": _abs_max}
_SIMILARITIES = {"cosine": cosine, "pcc": pcc, "ssim": ssim, "ssim_p1": ssim_p1, "spearman": spearman}


def _similarity_fns(similarity):
    """{name: fn} for a similarity name, a callable, or a list/tuple of them."""
    items = list(similarity) if isinstance(similarity, (list, tuple)) else [similarity]
    if not items:
        raise ValueError("similarity=[] is not valid; accepted: a name in "
                         f"{sorted(_SIMILARITIES)}, a callable, or a non-empty list of them")
    fns = {}
    for s in items:
        if isinstance(s, str):
            if s not in _SIMILARITIES:
                raise ValueError(f"similarity={s!r} is not known; accepted: "
                                 f"{sorted(_SIMILARITIES)} or a callable")
            fns[s] = _SIMILARITIES[s]
        elif callable(s):
            fns[getattr(s, "__name__", repr(s))] = s
        else:
            raise ValueError(f"similarity={s!r} is not valid; accepted: a name in "
                             f"{sorted(_SIMILARITIES)} or a callable")
    return fns


def _postprocess_fn(postprocess):
    if postprocess is None:
        return lambda h: h
    if isinstance(postprocess, str):
        if postprocess not in _POSTPROCESS:
            raise ValueError(f"postprocess={postprocess!r} is not known; accepted: None, "
                             f"{sorted(_POSTPROCESS)} or a callable")
        return _POSTPROCESS[postprocess]
    return postprocess


def rps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
        attribution: str | Callable[..., torch.Tensor], eps: float, n: int = 10,
        similarity: str | Callable[..., torch.Tensor] | Sequence[str | Callable[..., torch.Tensor]] = "cosine",
        postprocess: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int | None = 0) -> torch.Tensor | dict[str, torch.Tensor]:
    """Random perturbation similarity per sample (P1 "RPS", after Dombrowski 2022).

    rps_i = 1/n sum_j S(h(x_i + delta_ij), h(x_i)), delta_ij ~ U[-eps/255, eps/255]^d (``eps``
    in 0-255 pixel units, in [0, 255]), with
    x + delta clamped to the valid range [0, 1] (P1's code clamps to the data range).
    The attribution targets the label ``y`` (as P1's code).  ``attribution``: a name for
    ``attributions.get`` or a fn ``(model, x, target) -> map``.  ``similarity``: 'cosine',
    'pcc', 'ssim', 'spearman' or a fn ``(a, b) -> (N,)``; a list of them scores the same noise
    draws with each and returns ``{name: (N,)}`` (a callable is named by its ``__name__``).
    ``postprocess`` maps the raw map to h: None (raw map), 'abs_max' (P1's code: sum_c |map| /
    per-image max; needed for SSIM) or a fn.  ``seed``: the noise draws use their own
    generator (None: the global RNG).  Returns a tensor (N,) (a dict for a list of
    similarities); P1 reports its mean over the test set.  ``x`` and ``y`` are moved to the model's
    device, where the noise is drawn.
    """
    x, y = to_device_of(model, x, y)
    radius = units.linf(eps)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int; got n={n}")
    if isinstance(attribution, str):
        attribution = _attributions.get(attribution)
    fns = _similarity_fns(similarity)
    post = _postprocess_fn(postprocess)
    gen = generator(seed, x.device)
    x = x.detach()
    h0 = post(attribution(model, x, y).detach())
    total = {k: torch.zeros(x.shape[0], dtype=_work_dtype(x), device=x.device) for k in fns}
    for _ in range(int(n)):  # loop over noise draws only; each draw is batched over samples
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        x_r = (x + (2 * u - 1) * radius).clamp(0.0, 1.0)
        h_r = post(attribution(model, x_r, y).detach())
        for k, fn in fns.items():
            total[k] = total[k] + fn(h_r, h0)
    out = {k: v / int(n) for k, v in total.items()}
    return out if isinstance(similarity, (list, tuple)) else next(iter(out.values()))
