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
"""
import torch

MODES = ("max", "abs_max", "p99", "minmax", "mean")


def postprocess(h, mode="max", q=0.99):
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
