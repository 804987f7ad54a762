"""From a raw attribution map to the per-pixel map that papers show and score: the sum of
``|map|`` over channels, scaled per image.  One function, three modes:

* ``max`` (figures; P1): divided by the per-image max, floored at 1e-12; keeps a channel axis.
* ``abs_max`` (P1's released code, what ``metrics.rps(postprocess="abs_max")`` scores):
  divided by ``max + 1e-8``, channel axis dropped for (N, C, H, W) maps.  It differs from
  ``max`` only in that floor (so a flat map gives 0 instead of NaN either way) and in the
  shape; both are kept because changing either would move committed numbers (SSIM digits,
  figure pixels).
* ``p99`` (P2, SmoothGrad's convention for SimGrad, SmGrad, IntGrad, DeepLIFT): clipped at
  the per-image ``q`` quantile and divided by it.
* ``minmax`` (P2, GradCAM): channel mean, ``(a - min) / (max - min)`` per image (no ``|.|``).
* ``mean`` (P2, RelEx "used directly"): the channel mean of the raw map, not rescaled.

``sparsify(h, q)`` (P3 C.2.4 / Table 5, "sparsified simple gradient" and "Sparsified-SmoothGrad",
after MoreauGrad, Zhang et al. 2023) is a separate post-processing of the raw map: soft
thresholding at the per-sample q-quantile of ``|h|``; it keeps the shape and the sign of ``h``.
"""
from __future__ import annotations

import numbers

import torch

MODES = ("max", "abs_max", "p99", "minmax", "mean")


def postprocess(h: torch.Tensor, mode: str = "max", q: float = 0.99) -> torch.Tensor:
    """Per-pixel map of ``h`` (see the module docstring for ``mode``).

    (N, C, H, W) -> (N, 1, H, W) (``abs_max``: (N, H, W)); a (N, D) map is scaled per row.
    Differentiable (attacks use it).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not known; accepted: {list(MODES)}")
    if mode in ("minmax", "mean"):
        a = h.mean(1, keepdim=True) if h.dim() >= 3 else h
        if mode == "mean":
            return a
        flat = a.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        view = (-1,) + (1,) * (a.dim() - 1)
        return (a - lo.view(view)) / (hi - lo).clamp_min(1e-12).view(view)
    a = h.abs()
    if mode == "abs_max":
        if a.dim() == 4:
            a = a.sum(1)
        return a / (a.flatten(1).amax(1).view(-1, *([1] * (a.dim() - 1))) + 1e-8)
    if a.dim() >= 3:
        a = a.sum(1, keepdim=True)
    flat = a.flatten(1)
    scale = flat.max(1).values if mode == "max" else torch.quantile(flat, q, dim=1)
    scale = scale.clamp_min(1e-12).view(-1, *([1] * (a.dim() - 1)))
    return a / scale if mode == "max" else torch.clamp(a / scale, max=1.0)


def sparsify(h: torch.Tensor, q: float = 0.8) -> torch.Tensor:
    """P3's sparsification (C.2.4, Table 5; after MoreauGrad): soft thresholding at a quantile of |h|.

    The proximal operator of tau * ||.||_1: sign(h) * max(|h| - tau, 0), tau the ``q``-quantile
    of |h| over all entries of each sample (linear interpolation between order statistics, as
    ``np.quantile``), so about a fraction q of the entries (those with |h| <= tau) become 0 and
    the others shrink by tau, keeping their sign and their order of |h|.  ``q=0``: tau = min |h|
    per sample, so every entry shrinks by that minimum and the smallest becomes 0.  Same shape
    as ``h`` (batch first, any trailing shape); differentiable where defined (also through tau).
    """
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0 <= float(q) < 1:
        raise ValueError(f"q={q!r} is not valid; accepted: a number in [0, 1)")
    a = h.abs()
    flat = a.reshape(a.shape[0], -1).sort(dim=1).values
    pos = float(q) * (flat.shape[1] - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.shape[1] - 1)
    tau = flat[:, lo] + (pos - lo) * (flat[:, hi] - flat[:, lo])
    tau = tau.view(-1, *([1] * (h.dim() - 1)))
    return torch.sign(h) * torch.clamp(a - tau, min=0)
