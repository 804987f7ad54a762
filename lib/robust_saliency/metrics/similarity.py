"""Similarities between two batches of maps: ``fn(a, b) -> (N,)``.

``cosine``, ``pcc``, ``spearman`` and ``topk_intersection`` work on each map flattened *as
given*: pass channel-reduced maps when the paper's quantity is per pixel.  Degenerate inputs
(zero or constant maps) give 0 instead of NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common import resolve_k
from ._common import _check_pair, _flat, _safe_div, _work_dtype


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per pair of flattened maps (P1 RPS with S = cosine; 0 for a zero map)."""
    _check_pair(a, b)
    a, b = _flat(a).to(_work_dtype(a)), _flat(b).to(_work_dtype(a))
    return _safe_div((a * b).sum(1), a.norm(dim=1) * b.norm(dim=1))


def pcc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per pair of flattened maps (P1 RPS, Dombrowski 2022; 0 if constant)."""
    _check_pair(a, b)
    a, b = _flat(a).to(_work_dtype(a)), _flat(b).to(_work_dtype(a))
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return _safe_div((a * b).sum(1), a.norm(dim=1) * b.norm(dim=1))


def _gaussian_kernel1d(sigma, truncate, dtype, device, radius=None):
    r = int(truncate * sigma + 0.5) if radius is None else radius  # scipy.ndimage.gaussian_filter's
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


SSIM_PADDINGS = ("valid", "zero")


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float | torch.Tensor | None = None, sigma: float = 1.5,
         K1: float = 0.01, K2: float = 0.03, window: int | None = None,
         padding: str = "valid") -> torch.Tensor:
    """SSIM per pair (Wang 2004; P1 RPS): gaussian window sigma 1.5, population covariance.

    Default (``window=None``: 11 taps, ``padding="valid"``): matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)`` (with ``channel_axis=0`` per sample for
    ``(N, C, H, W)`` maps: the mean over channels); only positions whose whole window lies in
    the map are scored.  ``ssim_p1`` is P1's released configuration: ``window=7`` taps and
    ``padding="zero"`` (every position scored, the map zero-padded by 3).
    Maps are ``(N, H, W)`` or ``(N, C, H, W)``, each side >= the window for ``"valid"``.
    ``data_range``: a number or an ``(N,)`` tensor; ``None`` uses the joint range of each
    pair, ``max(a_i, b_i) - min(a_i, b_i)`` (symmetric in a and b; 1 if 0).  (P1's code takes
    the range of the first argument over the whole batch instead; pass it as ``data_range``.)
    """
    _check_pair(a, b)
    if padding not in SSIM_PADDINGS:
        raise ValueError(f"padding={padding!r} is not known; accepted: {list(SSIM_PADDINGS)}")
    if window is not None and (isinstance(window, bool) or int(window) != window or window < 3 or window % 2 == 0):
        raise ValueError(f"window={window!r} is not valid; accepted: None or an odd int >= 3")
    if a.dim() == 3:
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if a.dim() != 4:
        raise ValueError(f"ssim maps must be (N, H, W) or (N, C, H, W); got shape={tuple(a.shape)}")
    dtype = _work_dtype(a)
    a, b = a.to(dtype), b.to(dtype)
    n, c, h, w = a.shape
    g = _gaussian_kernel1d(sigma, 3.5, dtype, a.device, radius=None if window is None else int(window) // 2)
    win = g.numel()
    if padding == "valid" and (h < win or w < win):
        raise ValueError(f"ssim maps must be at least {win}x{win}; got H, W = {h}, {w}")
    if data_range is None:
        fa, fb = _flat(a), _flat(b)
        rng = torch.maximum(fa.amax(1), fb.amax(1)) - torch.minimum(fa.amin(1), fb.amin(1))
        rng = torch.where(rng > 0, rng, torch.ones_like(rng))
    else:
        rng = torch.as_tensor(data_range, dtype=dtype, device=a.device).expand(n)
        if (rng <= 0).any():
            raise ValueError(f"data_range must be > 0; got data_range={data_range}")
    # SSIM is invariant to scaling a, b and the range together: work on a / range, b / range
    # with range 1, so that maps of tiny magnitude (e.g. LRP of a collapsed model, ~1e-20)
    # do not underflow the variances into 0 / 0.
    a, b = a / rng.view(n, 1, 1, 1), b / rng.view(n, 1, 1, 1)
    C1, C2 = K1 ** 2, K2 ** 2
    # Valid (unpadded) separable filtering == skimage's filter + crop of the radius strip.
    stack = torch.cat([a, b, a * a, b * b, a * b], 0).reshape(5 * n * c, 1, h, w)
    if padding == "zero":
        r = win // 2
        stack = F.pad(stack, (r, r, r, r))
    stack = F.conv2d(stack, g.view(1, 1, win, 1))
    stack = F.conv2d(stack, g.view(1, 1, 1, win))
    ux, uy, uxx, uyy, uxy = stack.reshape(5, n, c, stack.shape[-2], stack.shape[-1])
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    s = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux ** 2 + uy ** 2 + C1) * (vx + vy + C2))
    return s.mean(dim=(2, 3)).mean(1)


def ssim_p1(a: torch.Tensor, b: torch.Tensor, data_range: float | torch.Tensor | None = None) -> torch.Tensor:
    """SSIM in P1's released configuration (7-tap gaussian window, sigma 1.5, zero padding)."""
    return ssim(a, b, data_range=data_range, window=7, padding="zero")


def _average_ranks(a):
    """1-based ranks per row, ties get their average rank (as scipy.stats.rankdata)."""
    s = a.sort(dim=1).values.contiguous()
    a = a.contiguous()
    lo = torch.searchsorted(s, a, right=False)
    hi = torch.searchsorted(s, a, right=True)
    return (lo + hi + 1).to(_work_dtype(a)) / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per pair, ties by average rank (Spearman 1904; P2, P3)."""
    _check_pair(a, b)
    return pcc(_average_ranks(_flat(a)), _average_ranks(_flat(b)))


def topk_intersection(a: torch.Tensor, b: torch.Tensor, k: int | float, among: str = "all") -> torch.Tensor:
    """Share of the top-k positions of a that are among the top-k of b (Ghorbani 2019; P2, P3).

    ``k``: an int count of positions or a float fraction of them (``round(k * P)``, >= 1).
    ``among="nonzero"``: a fraction counts the positions where ``a`` is non-zero, per sample
    (P3 B.6-B.7: "40% of all the pixels with non-zero attributions").
    Ranks the flattened values as given (largest first).
    """
    _check_pair(a, b)
    a, b = _flat(a), _flat(b)
    if among not in ("all", "nonzero"):
        raise ValueError(f"among={among!r} is not valid; accepted: 'all' or 'nonzero'")
    if among == "nonzero" and isinstance(k, float):
        resolve_k(k, a.shape[1])  # checks k
        nz = (a != 0).sum(1)
        kk = torch.where(nz > 0, (k * nz.to(torch.float64)).round().clamp_min(1).long(), torch.ones_like(nz))
        pos = torch.arange(a.shape[1], device=a.device).expand(a.shape[0], -1)

        def ranks(t):  # 0 = largest; ties by position
            return torch.empty_like(pos).scatter_(1, t.argsort(dim=1, descending=True, stable=True), pos)

        top_a, top_b = ranks(a) < kk[:, None], ranks(b) < kk[:, None]
        share = (top_a & top_b).sum(1).to(_work_dtype(a)) / kk.to(_work_dtype(a))
        return torch.where(nz > 0, share, torch.zeros_like(share))
    k = resolve_k(k, a.shape[1])
    top_a = a.topk(k, dim=1).indices
    in_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return in_b.gather(1, top_a).sum(1).to(_work_dtype(a)) / k
