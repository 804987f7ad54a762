"""Perturbation games: insertion and adv-insertion (P1), deletion and preservation (P2).

They rank *pixels*: a ``(N, C, H, W)`` map is reduced to ``sum_c |map|`` (``signed=True``:
``sum_c map``), a ``(N, H, W)`` or ``(N, 1, H, W)`` map is used as given (``|.|`` unless
``signed``); a non-image input ``(N, D...)`` is ranked element-wise.  A fraction ``gamma`` of
the ``P`` positions means ``k = round(gamma * P)`` positions; ties are broken by position
(stable sort), so exactly ``k`` positions are kept / removed.  All channels of a pixel move
together.  The masked copies for all (sample, fraction) pairs are stacked into one batch and
fed to the model in chunks of ``batch_size``.  Probabilities are ``softmax(model(.))[y]``
under ``torch.no_grad()``; the model's train/eval mode is left as it is.  The games that take a
model move ``x``, ``y`` and the maps to its device first (``common.to_device_of``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..common import to_device_of
from ._common import _work_dtype

if TYPE_CHECKING:
    from collections.abc import Sequence


def _default_fractions(fractions, dtype, device):
    if fractions is None:
        return torch.linspace(0, 1, 21, dtype=torch.float64).to(device=device, dtype=dtype)
    fr = torch.as_tensor(fractions, dtype=torch.float64).flatten()
    if fr.numel() == 0 or (fr < 0).any() or (fr > 1).any():
        raise ValueError(f"fractions must be a non-empty sequence in [0, 1]; got {fractions}")
    return fr.to(device=device, dtype=dtype)


def _position_scores(x, maps, signed):
    """Per-position ranking scores (N, P) and the shape a keep-mask (N, P) takes against x."""
    n = x.shape[0]
    if x.dim() == 4:
        _, c, h, w = x.shape
        if maps.shape == x.shape:
            s = maps.sum(1) if signed else maps.abs().sum(1)
        elif maps.shape in ((n, h, w), (n, 1, h, w)):
            s = maps.reshape(n, h, w)
            s = s if signed else s.abs()
        else:
            raise ValueError(f"maps.shape={tuple(maps.shape)} does not fit x.shape={tuple(x.shape)};"
                             f" accepted: {(n, c, h, w)}, {(n, h, w)} or {(n, 1, h, w)}")
        return s.reshape(n, h * w), (1, h, w)
    if maps.shape != x.shape:
        raise ValueError(f"maps.shape={tuple(maps.shape)} must equal x.shape={tuple(x.shape)}")
    s = maps if signed else maps.abs()
    return s.reshape(n, -1), tuple(x.shape[1:])


def normalized_zero(model: torch.nn.Module) -> torch.Tensor | str:
    """The "off" value of a removed pixel in the model's own units: the zero of its normalized
    input (the dataset mean colour, ``Normalize``'s mean; P2's and P1's codes zero normalized
    inputs), or ``"zero"`` (black) for a model without a leading ``Normalize``."""
    from ..models import leading_normalize

    norm = leading_normalize(model)
    return norm.mean.view(1, -1, 1, 1) if norm is not None else "zero"


def _baseline(x, baseline):
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x)
        if baseline == "mean":
            dims = tuple(range(2, x.dim())) if x.dim() > 2 else (1,)
            return x.mean(dim=dims, keepdim=True).expand_as(x)
        raise ValueError(f"baseline={baseline!r} is not known; accepted: 'zero', 'mean' or a tensor")
    try:
        return torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    except RuntimeError:
        raise ValueError(f"baseline tensor of shape {tuple(torch.as_tensor(baseline).shape)} does "
                         f"not broadcast to x.shape={tuple(x.shape)}") from None


def _ranks(x, maps, fractions, signed):
    """(rank (N, P) of every position by its score, 0 = most relevant; k per fraction; the
    shape a keep-mask takes against x).  k = round(gamma * P); ties broken by position."""
    n = x.shape[0]
    scores, mask_shape = _position_scores(x, maps, signed)
    p = scores.shape[1]
    fr = _default_fractions(fractions, torch.float64, "cpu")
    ks = torch.round(fr * p).long().to(x.device)
    order = scores.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(p, device=x.device).expand(n, p))
    return rank, ks, mask_shape


def _game_curve(model, x, y, maps, fractions, baseline, mode, signed, batch_size):
    """p_y of the masked copies for every (sample, fraction); mode in keep_top/drop_top/drop_bottom."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got batch_size={batch_size}")
    x, y, maps = to_device_of(model, x.detach(), y, maps.detach())
    n = x.shape[0]
    rank, ks, mask_shape = _ranks(x, maps, fractions, signed)
    p, nf = rank.shape[1], ks.numel()
    base = _baseline(x, baseline)
    out = torch.empty(n * nf, dtype=_work_dtype(x), device=x.device)
    with torch.no_grad():
        for t0 in range(0, n * nf, int(batch_size)):
            t = torch.arange(t0, min(t0 + int(batch_size), n * nf), device=x.device)
            i, f = t // nf, t % nf
            r, k = rank[i], ks[f].unsqueeze(1)
            if mode == "keep_top":
                keep = r < k
            elif mode == "drop_top":
                keep = r >= k
            else:  # drop_bottom
                keep = r < p - k
            keep = keep.view(-1, *mask_shape)
            xb = torch.where(keep, x[i], base[i])
            prob = model(xb).softmax(1).gather(1, y[i].view(-1, 1)).squeeze(1)
            out[t0:t0 + len(t)] = prob.to(out.dtype)
    return out.view(n, nf)


def insertion_images(x: torch.Tensor, maps: torch.Tensor,
                     fractions: Sequence[float] | torch.Tensor | None = None,
                     baseline: str | torch.Tensor = "zero", signed: bool = False) -> torch.Tensor:
    """The inputs of P1's Insertion game: x with only its top-gamma pixels by ``maps`` kept.

    Returns (N, len(fractions), *x.shape[1:]): ``out[i, f]`` is what ``insertion_curve``
    feeds the model for sample i and fraction f (P1 Fig. 2b shows them).
    """
    x, maps = x.detach(), maps.detach()
    rank, ks, mask_shape = _ranks(x, maps, fractions, signed)
    keep = (rank[:, None, :] < ks[None, :, None]).view(x.shape[0], len(ks), *mask_shape)
    return torch.where(keep, x[:, None], _baseline(x, baseline)[:, None])


def insertion_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                    fractions: Sequence[float] | torch.Tensor | None = None,
                    baseline: str | torch.Tensor = "zero",
                    signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P1 Insertion curve (Petsiuk 2018): p_y of x with only the top-gamma pixels by maps kept.

    x_gamma = x * m_gamma + x_o * (1 - m_gamma), m_gamma = the top round(gamma*P) pixels by
    sum_c |maps| (P1's code ranks the |.|-summed, max-normalized map; normalization does not
    change the order), x_o = ``baseline``: 'zero' (default, P1's "zero-valued image"),
    'mean' (each image's channel means) or a tensor broadcastable to x (e.g. the dataset
    channel mean: P1's code zeroes the *normalized* input, which is the dataset mean in [0, 1]
    pixels).  ``fractions`` default 0, 0.05, ..., 1.  Returns (N, len(fractions)).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning (N, K) logits.
    x : torch.Tensor
        (N, C, H, W) images in [0, 1] (or (N, D...) inputs, ranked element-wise).
    y : torch.Tensor
        (N,) classes whose probability is tracked.
    maps : torch.Tensor
        (N, C, H, W), (N, 1, H, W) or (N, H, W) attribution maps that rank the pixels.
    fractions : sequence of float or torch.Tensor, optional
        Fractions gamma in [0, 1] of kept pixels; default 0, 0.05, ..., 1.
    batch_size : int
        Masked copies per forward pass (memory only).

    Returns
    -------
    torch.Tensor
        (N, len(fractions)) probabilities p_y of the masked copies.
    """
    return _game_curve(model, x, y, maps, fractions, baseline, "keep_top", signed, batch_size)


def insertion_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                    fractions: Sequence[float] | torch.Tensor | None = None,
                    baseline: str | torch.Tensor = "zero",
                    signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P1 Insertion score per sample: mean of the insertion curve over gamma (higher better)."""
    return insertion_curve(model, x, y, maps, fractions, baseline, signed, batch_size).mean(1)


def adv_insertion_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps_adv: torch.Tensor,
                        fractions: Sequence[float] | torch.Tensor | None = None,
                        baseline: str | torch.Tensor = "zero",
                        signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P1 Adv-Insertion curve: insert the *clean* x in the order of the map h(x_adv).

    ``maps_adv`` is the attribution at x_adv (from the targeted AAM attack), ``x`` the clean
    image whose pixels are inserted (P1's text and code); labels ``y`` are the true labels.
    """
    return _game_curve(model, x, y, maps_adv, fractions, baseline, "keep_top", signed, batch_size)


def adv_insertion_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps_adv: torch.Tensor,
                        fractions: Sequence[float] | torch.Tensor | None = None,
                        baseline: str | torch.Tensor = "zero",
                        signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P1 Adv-Insertion score per sample: mean over gamma of ``adv_insertion_curve``."""
    return adv_insertion_curve(model, x, y, maps_adv, fractions, baseline, signed,
                               batch_size).mean(1)


def deletion_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                   fractions: Sequence[float] | torch.Tensor | None = None,
                   baseline: str | torch.Tensor = "zero",
                   least_first: bool = False, signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P2 deletion (pixel flipping) curve: p_y with the most-relevant fraction set to baseline.

    ``least_first=True`` removes the least relevant first (P2 preservation).  Ranking, ``k``,
    ``baseline`` and ``fractions`` as ``insertion_curve``.  Returns (N, len(fractions)).
    """
    mode = "drop_bottom" if least_first else "drop_top"
    return _game_curve(model, x, y, maps, fractions, baseline, mode, signed, batch_size)


def preservation_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                       fractions: Sequence[float] | torch.Tensor | None = None,
                       baseline: str | torch.Tensor = "zero",
                       signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P2 preservation curve: p_y with the least-relevant fraction set to baseline."""
    return deletion_curve(model, x, y, maps, fractions, baseline, True, signed, batch_size)


def _auc(curve, fractions):
    fr = _default_fractions(fractions, curve.dtype, curve.device)
    if fr.numel() < 2:
        raise ValueError(f"the AUC needs at least two fractions; got fractions={fractions}")
    return torch.trapezoid(curve, x=fr, dim=1)


def deletion_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                   fractions: Sequence[float] | torch.Tensor | None = None,
                   baseline: str | torch.Tensor = "zero",
                   signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P2 deletion score per sample: trapezoid AUC of the deletion curve (lower is better)."""
    curve = deletion_curve(model, x, y, maps, fractions, baseline, False, signed, batch_size)
    return _auc(curve, fractions)


def preservation_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor,
                       fractions: Sequence[float] | torch.Tensor | None = None,
                       baseline: str | torch.Tensor = "zero",
                       signed: bool = False, batch_size: int = 256) -> torch.Tensor:
    """P2 preservation score per sample: trapezoid AUC of the preservation curve (higher better)."""
    curve = deletion_curve(model, x, y, maps, fractions, baseline, True, signed, batch_size)
    return _auc(curve, fractions)


def explanation(x: torch.Tensor, maps: torch.Tensor, baseline: str | torch.Tensor = "zero") -> torch.Tensor:
    """P2's explanation of x by a map in [0, 1]: ``baseline + maps * (x - baseline)``.

    ``maps`` of x's shape (RelEx's per-channel mask) or (N, 1, H, W) / (N, H, W) (a per-pixel
    map, broadcast over channels), with values in [0, 1] (a ``ValueError`` otherwise).
    ``baseline``: 'zero' (m * x, the text), 'mean' or a tensor (the dataset mean colour: P2's
    code multiplies the *normalized* input, whose zero is that mean).
    """
    x, maps = x.detach(), maps.detach()
    if maps.dim() == x.dim() - 1:
        maps = maps.unsqueeze(1)
    if maps.shape != x.shape and maps.shape != (x.shape[0], 1) + tuple(x.shape[2:]):
        raise ValueError(f"maps.shape={tuple(maps.shape)} does not fit x.shape={tuple(x.shape)}; "
                         f"accepted: x's shape or (N, 1, H, W)")
    if maps.numel() and (maps.min() < 0 or maps.max() > 1):
        raise ValueError(f"maps must lie in [0, 1] (post-processed); got [{float(maps.min()):.3g}, "
                         f"{float(maps.max()):.3g}]")
    base = _baseline(x, baseline)
    return base + maps * (x - base)


def explanation_probs(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor,
                      baseline: str | torch.Tensor = "zero",
                      batch_size: int = 256) -> torch.Tensor:
    """Softmax over all classes of the model at ``explanation(x, maps, baseline)``, (N, K) (P2 Fig. S5)."""
    x, maps = to_device_of(model, x, maps)
    e = explanation(x, maps, baseline)
    with torch.no_grad():
        return torch.cat([model(e[i:i + int(batch_size)]).softmax(1)
                          for i in range(0, e.shape[0], int(batch_size))])


def retrieval_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int, maps: torch.Tensor,
                   baseline: str | torch.Tensor = "zero", batch_size: int = 256) -> torch.Tensor:
    """P2's target-class retrieval per sample: 1.0 where argmax f(explanation(x, maps)) == y, else 0.0.

    The mean over samples is the rate (P2 Fig. S2: y = the clean prediction of an attacked
    image; Fig. S5: y = the class the map explains).
    """
    probs = explanation_probs(model, x, maps, baseline, batch_size)
    return (probs.argmax(1) == torch.as_tensor(y, device=probs.device).view(-1)).to(_work_dtype(x))


def removed_images(x: torch.Tensor, maps: torch.Tensor, fraction: float, most_relevant: bool = True,
                   baseline: str | torch.Tensor = "zero", signed: bool = False) -> torch.Tensor:
    """x with a ``fraction`` of its pixels set to ``baseline``: the most relevant by ``maps``
    (``most_relevant=True``) or the least relevant.  The training and test sets of ROAR /
    DiffROAR (Hooker 2019; P3 Sec. 5.2) are made of these.  Ranking as ``insertion_curve``."""
    fr = float(fraction)
    if not 0 <= fr <= 1:
        raise ValueError(f"fraction={fraction!r} is not valid; accepted: a number in [0, 1]")
    x, maps = x.detach(), maps.detach()
    rank, ks, mask_shape = _ranks(x, maps, [fr], signed)
    p, k = rank.shape[1], ks[0]
    removed = (rank < k) if most_relevant else (rank >= p - k)
    return torch.where(removed.view(-1, *mask_shape), _baseline(x, baseline), x)


def aopc_mofr(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, steps: int = 20,
              step_fraction: float = 0.01, baseline: str | torch.Tensor = "zero", signed: bool = False,
              batch_size: int = 256) -> torch.Tensor:
    """AOPC, most relevant first (Samek 2017; P3 Table 5), per sample:
    (1 / (L + 1)) sum_{k=0..L} [p_y(x) - p_y(x_k)], x_k = x with the k * ``step_fraction`` most
    relevant pixels set to ``baseline``, L = ``steps`` (P3: 20, 50, 100).  Higher is more faithful."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} is not valid; accepted: a positive int")
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction={step_fraction!r} is not valid; accepted: a number in (0, 1]")
    fractions = [min(1.0, k * step_fraction) for k in range(int(steps) + 1)]
    curve = _game_curve(model, x, y, maps, fractions, baseline, "drop_top", signed, batch_size)
    return (curve[:, :1] - curve).mean(1)
