"""How concentrated a map is: ``gini`` and ``top_mass`` (P3 sparsity) of one batch of maps,
``group_gini`` (P3 group sparsity: the Gini index of per-patch L2 norms), ``object_share``
(mass inside a ground-truth mask).  Each returns one value per map, 0 for a zero map."""
from __future__ import annotations

import torch

from ..common import check_group_size, resolve_k
from ._common import _flat, _safe_div, _work_dtype


def gini(a: torch.Tensor) -> torch.Tensor:
    """Gini index of |a| per sample (Hurley & Rickard 2009; P3 sparsity), 0 for a zero map.

    With c_(1) <= ... <= c_(n) the sorted |a|: G = 1 - 2 sum_k c_(k)/||c||_1 (n - k + 1/2)/n.
    """
    c = _flat(a).abs().to(_work_dtype(a)).sort(dim=1).values
    n = c.shape[1]
    k = torch.arange(1, n + 1, dtype=c.dtype, device=c.device)
    w = (n - k + 0.5) / n
    total = c.sum(1)
    return torch.where(total > 0, 1 - 2 * _safe_div((c * w).sum(1), total), torch.zeros_like(total))


def group_gini(a: torch.Tensor, group_size: int, per_channel: bool = False) -> torch.Tensor:
    """Gini index of the per-patch L2 norms of a map (P3 group sparsity, the L_{2,1} group norm's groups).

    A group S is a ``group_size`` x ``group_size`` patch of the image with all channels together:
    norm_S = sqrt(sum_{c, (i, j) in S} a[c, i, j]^2), one value per patch, and the result is
    ``gini`` of these (H/s) * (W/s) values per sample (0 for a zero map).  ``per_channel=True``
    takes the groups P3's adversarial training penalises (``adversarial_training.group_norms``):
    each patch of each channel apart, C * (H/s) * (W/s) values.  ``a``: (N, C, H, W) or (N, H, W)
    maps; H and W must be multiples of ``group_size``.  With ``group_size=1`` it is ``gini`` of
    the per-pixel channel norm, i.e. ``gini(a)`` for one-channel maps (``per_channel``: of |a|).
    """
    if a.dim() not in (3, 4):
        raise ValueError(f"group_gini needs (N, C, H, W) or (N, H, W) maps; got shape {tuple(a.shape)}")
    x = a.to(_work_dtype(a))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    n, c, h, w = x.shape
    s = check_group_size(group_size, h, w, "maps")
    norms = x.pow(2).reshape(n, c, h // s, s, w // s, s).sum((3, 5) if per_channel else (1, 3, 5)).sqrt()
    return gini(norms)


def top_mass(a: torch.Tensor, frac: float = 0.05) -> torch.Tensor:
    """Share of the |a| mass in the top-frac positions per sample (P3 sparsity), 0 if zero map."""
    c = _flat(a).abs().to(_work_dtype(a))
    k = resolve_k(float(frac), c.shape[1], "frac")
    return _safe_div(c.topk(k, dim=1).values.sum(1), c.sum(1))


def object_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of |attribution| inside the ground-truth object mask per sample (e.g. ``shapes``).

    ``maps`` (N, C, H, W) are reduced to sum_c |maps|, (N, H, W) to |maps|; ``masks`` (N, H, W)
    or (N, 1|C, H, W), nonzero = object (a pixel counts if any channel is set).
    """
    s = maps.abs().sum(1) if maps.dim() == 4 else maps.abs()
    m = masks.ne(0)
    if m.dim() == 4:
        m = m.any(1)
    if m.shape != s.shape:
        raise ValueError(f"masks.shape={tuple(masks.shape)} does not fit maps.shape={tuple(maps.shape)}")
    s = _flat(s).to(_work_dtype(s))
    return _safe_div((s * _flat(m)).sum(1), s.sum(1))
