"""P4's probes of a model's reliance on non-robust features and of its marginal density
Z(x) = sum_i exp g_i(x): feature leakage (Eq. 9), OOD AUROC (A.4), pixel perturbation
(Fig. 6a) and the relative gradient and density changes under Gaussian noise (Sec. 7.3, A.5).

``x`` is in [0, 1] (the model normalizes itself); ``g_i`` are the model's logits, ``g_y`` the
target logit.  Every model evaluation runs batched in chunks of ``batch_size`` rows (a row is
one (sample, alpha / fraction / draw) pair); the model's train/eval mode is left as it is and
its parameters' ``.grad`` are not touched (gradients are taken w.r.t. the input only).
Random draws come from a local ``torch.Generator`` seeded by ``seed`` (``common.generator``):
results repeat for a seed and the global RNG is left alone (``seed=None``: the global RNG).
Inputs are moved to the model's device first (``common.to_device_of``), where the draws are made.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..common import generator, target_logit_grad, to_device_of
from ._common import _work_dtype
from .games import _baseline, _ranks

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["feature_leakage", "riemann_integrated_gradients", "ood_auroc", "pixel_perturbation",
           "pixel_perturbation_score", "relative_gradient_change", "relative_density_change",
           "gaussian_draws", "PIXEL_FORMS"]

OOD_SCORES = ("logsumexp", "max_logit", "max_softmax")
DENSITY_FORMS = ("ratio", "printed")
PIXEL_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5)
PIXEL_FORMS = ("fractional_logit", "log_prob")


# ----------------------------------------------------------------------------------------------
# Checks and batched evaluation
# ----------------------------------------------------------------------------------------------

def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; accepted: a positive int")
    return int(value)


def _check_sigmas(sigmas):
    """``sigmas`` as a float64 (S,) tensor of non-negative stds (a number gives S = 1)."""
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        s = None
    if s is None or s.numel() == 0 or not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"sigmas={sigmas!r} is not valid; accepted: a non-negative number or a "
                         f"non-empty sequence of them (Gaussian stds in input units, x in [0, 1])")
    return s


def _chunks(total, batch_size):
    bs = _positive_int(batch_size, "batch_size")
    for t0 in range(0, total, bs):
        yield t0, min(t0 + bs, total)


def _logits(model, x, batch_size):
    """model(x) under no_grad, in chunks of ``batch_size``."""
    with torch.no_grad():
        return torch.cat([model(x[a:b]) for a, b in _chunks(x.shape[0], batch_size)])


def _target(y, x):
    y = torch.as_tensor(y, device=x.device).long().reshape(-1)
    if y.numel() == 1 and x.shape[0] != 1:
        y = y.expand(x.shape[0])
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {x.shape[0]} samples; accepted: a (N,) "
                         f"LongTensor or an int")
    return y


def _view(v, x):
    """A (R,) tensor shaped to broadcast against rows of x: (R, 1, 1, ...)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def gaussian_draws(x: torch.Tensor, n: int, seed: int | None = 0) -> torch.Tensor:
    """The noise of ``relative_gradient_change`` and ``relative_density_change``: ``eps`` of
    shape (n, *x.shape), ``torch.randn`` from ``common.generator(seed, x.device)`` in x's
    (float) dtype; draw j of sample i at std sigma is ``delta = sigma * eps[j, i]`` (the same
    ``eps`` serve every sigma)."""
    n = _positive_int(n, "n")
    return torch.randn((n, *x.shape), generator=generator(seed, x.device), dtype=_work_dtype(x),
                       device=x.device)


# ----------------------------------------------------------------------------------------------
# Feature leakage (P4 Eq. 9)
# ----------------------------------------------------------------------------------------------

def _check_mask(null_mask, x):
    m = torch.as_tensor(null_mask, device=x.device)
    n = x.shape[0]
    spatial = tuple(x.shape[2:])
    if m.dim() == x.dim() - 1 and tuple(m.shape) == (n, *spatial):
        m = m.unsqueeze(1)
    if tuple(m.shape) not in ((n, 1, *spatial), tuple(x.shape)):
        raise ValueError(f"null_mask.shape={tuple(m.shape)} does not fit x.shape={tuple(x.shape)}; "
                         f"accepted: {(n, 1, *spatial)}, {(n, *spatial)} or {tuple(x.shape)}")
    if m.dtype != torch.bool:
        if m.numel() and not ((m == 0) | (m == 1)).all():
            raise ValueError("null_mask must be bool (True on the null block) or hold only 0 and 1")
        m = m != 0
    return m


def riemann_integrated_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int,
                                 steps: int = 32, internal_batch_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan 2017, Eq. 3) from the zero baseline by the right
    Riemann sum: ``x * (1/steps) sum_{k=1..steps} grad_x g_y(k/steps * x)`` (captum's
    ``method="riemann_right"``).  The ``steps * N`` scaled inputs go through the model in chunks
    of ``internal_batch_size`` rows (None: all at once).  Returns a detached map of x's shape."""
    steps = _positive_int(steps, "steps")
    x, y = to_device_of(model, x.detach(), y)
    y = _target(y, x)
    n = x.shape[0]
    total = n * steps
    bs = max(total, 1) if internal_batch_size is None else _positive_int(internal_batch_size,
                                                                         "internal_batch_size")
    alphas = torch.arange(1, steps + 1, dtype=_work_dtype(x), device=x.device) / steps
    grad_sum = torch.zeros_like(x, dtype=_work_dtype(x))
    for a, b in _chunks(total, bs):
        t = torch.arange(a, b, device=x.device)
        i, k = t % n, t // n
        _, g = target_logit_grad(model, _view(alphas[k], x) * x[i], y[i])
        grad_sum.index_add_(0, i, g.to(grad_sum.dtype))
    return (x * grad_sum / steps).detach()


def feature_leakage(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int, null_mask: torch.Tensor,
                    steps: int = 32, internal_batch_size: int | None = None,
                    maps: torch.Tensor | None = None) -> torch.Tensor:
    """P4 Eq. 9 per sample: ||IG(x)_y restricted to the null block||_F (the caller sums, as P4,
    or averages over samples).

    IG: Integrated Gradients of the target logit g_y from the zero baseline, right Riemann sum
    with ``steps`` steps (``riemann_integrated_gradients``; IG of the whole image, then
    restricted -- P4's x_nrob).  ``null_mask``: bool, True on the null block, (N, 1, H, W)
    (``block_digits``' ``null_mask`` extra; broadcast over channels), (N, H, W) or x's shape.
    A model that ignores the null block scores 0.  Returns (N,), logit units.  ``maps``: that IG
    map already computed (``riemann_integrated_gradients(model, x, y, steps)``, x's shape), to
    score it without a second pass.
    """
    x, y, null_mask, maps = to_device_of(model, x, y, null_mask, maps)
    mask = _check_mask(null_mask, x)
    if maps is not None and tuple(maps.shape) != tuple(x.shape):
        raise ValueError(f"maps.shape={tuple(maps.shape)} is not valid; accepted: x's shape {tuple(x.shape)}")
    ig = riemann_integrated_gradients(model, x, y, steps, internal_batch_size) if maps is None else maps
    return (ig * mask).flatten(1).norm(dim=1)


# ----------------------------------------------------------------------------------------------
# OOD detection (P4 A.4, Table 6)
# ----------------------------------------------------------------------------------------------

def _ood_score(logits, score):
    logits = logits.double()
    if score == "logsumexp":
        return logits.logsumexp(1)
    if score == "max_logit":
        return logits.max(1).values
    return logits.softmax(1).max(1).values


def ood_auroc(model: torch.nn.Module, x_in: torch.Tensor, x_out: torch.Tensor, score: str = "logsumexp",
              batch_size: int = 512) -> float:
    """P4 A.4 (Table 6): AUROC of telling in-distribution ``x_in`` (positives) from ``x_out`` by a
    score of the logits, higher = more in-distribution (sklearn's ``roc_auc_score``; 0.5 = chance).

    ``score``: 'logsumexp' (log sum_i exp g_i(x), the energy score, P4's f(x; theta) column),
    'max_logit' (max_i g_i(x), P4's f_i(x; theta) column read as the predicted class's logit)
    or 'max_softmax' (Hendrycks & Gimpel 2017's baseline).  Returns a float.
    """
    from sklearn.metrics import roc_auc_score

    if score not in OOD_SCORES:
        raise ValueError(f"score={score!r} is not known; accepted: {list(OOD_SCORES)}")
    if len(x_in) == 0 or len(x_out) == 0:
        raise ValueError(f"ood_auroc needs samples on both sides; got len(x_in)={len(x_in)}, "
                         f"len(x_out)={len(x_out)}")
    x_in, x_out = to_device_of(model, x_in, x_out)
    s_in = _ood_score(_logits(model, x_in, batch_size), score)
    s_out = _ood_score(_logits(model, x_out, batch_size), score)
    labels = torch.cat([torch.ones(len(s_in)), torch.zeros(len(s_out))]).numpy()
    return float(roc_auc_score(labels, torch.cat([s_in, s_out]).cpu().numpy()))


# ----------------------------------------------------------------------------------------------
# Pixel perturbation (P4 Fig. 6a, Srinivas & Fleuret 2021)
# ----------------------------------------------------------------------------------------------

def pixel_perturbation(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int, maps: torch.Tensor,
                       fractions: Sequence[float] | torch.Tensor | None = PIXEL_FRACTIONS,
                       baseline: str | float | torch.Tensor = "zero",
                       batch_size: int = 256, form: str = "fractional_logit") -> dict[str, torch.Tensor]:
    """P4 Fig. 6a (after Srinivas & Fleuret 2021): change of the target's output when the top-k
    or the bottom-k most salient pixels are set to ``baseline``.

    ``form`` (one of ``PIXEL_FORMS``): 'fractional_logit' (default, P4's Fig. 6a form) =
    |g_y(x) - g_y(x_removed)| / |g_y(x)|, the fractional change of the target logit; it is not
    invariant to adding the same constant to every logit (a logit offset, which gradient
    penalties can exploit: an offset of +5 on all logits can reverse rankings) and explodes where
    g_y(x) is near 0 (hence report medians over samples).  A zero g_y(x) gives inf (nan where
    nothing changes).  'log_prob' = |log_softmax_y(x) - log_softmax_y(x_removed)|, the absolute
    change of the target's log-probability (log-softmax over the logits); it is invariant to a
    logit offset and finite wherever the logits are.

    Pixels are ranked by sum_c |maps| (the games' ranking, ``games._ranks``: k = round(fraction
    * H * W), ties by position, all channels of a pixel together); ``baseline`` as the games
    ('zero', 'mean', a number or a tensor broadcastable to x).  Fraction 0 changes nothing.
    Returns ``{"fractions": (F,), "top": (N, F), "bottom": (N, F), "difference": top -
    bottom}``; a higher difference means the map ranks first what the model uses (P4: higher
    curves are better).
    """
    if form not in PIXEL_FORMS:
        raise ValueError(f"form={form!r} is not known; accepted: {list(PIXEL_FORMS)}")
    log_prob = form == "log_prob"
    if fractions is None:
        fractions = PIXEL_FRACTIONS
    x, y, maps = to_device_of(model, x.detach(), y, maps.detach())
    y = _target(y, x)
    n = x.shape[0]
    rank, ks, mask_shape = _ranks(x, maps, fractions, signed=False)
    p, nf = rank.shape[1], ks.numel()
    base = _baseline(x, baseline)
    g0 = _logits(model, x, batch_size)
    g0 = (g0.log_softmax(1) if log_prob else g0).gather(1, y.view(-1, 1)).squeeze(1)
    out = torch.empty(2 * n * nf, dtype=_work_dtype(x), device=x.device)
    with torch.no_grad():
        for a, b in _chunks(2 * n * nf, batch_size):  # rows (top/bottom, sample, fraction)
            t = torch.arange(a, b, device=x.device)
            side, i, f = t // (n * nf), (t // nf) % n, t % nf
            r, k = rank[i], ks[f].unsqueeze(1)
            removed = torch.where(side.unsqueeze(1) == 0, r < k, r >= p - k).view(-1, *mask_shape)
            g = model(torch.where(removed, base[i], x[i]))
            if log_prob:
                g = g.log_softmax(1).gather(1, y[i].view(-1, 1)).squeeze(1)
                out[a:b] = (g0[i] - g).abs().to(out.dtype)
            else:
                g = g.gather(1, y[i].view(-1, 1)).squeeze(1)
                out[a:b] = ((g0[i] - g).abs() / g0[i].abs()).to(out.dtype)
    top, bottom = out.view(2, n, nf)
    fr = torch.as_tensor(fractions, dtype=torch.float64).flatten().to(device=x.device, dtype=out.dtype)
    return {"fractions": fr, "top": top, "bottom": bottom, "difference": top - bottom}


def pixel_perturbation_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int,
                             maps: torch.Tensor,
                             fractions: Sequence[float] | torch.Tensor | None = PIXEL_FRACTIONS,
                             baseline: str | float | torch.Tensor = "zero",
                             batch_size: int = 256, form: str = "fractional_logit") -> torch.Tensor:
    """P4 Fig. 6a per sample: the mean over ``fractions`` of ``pixel_perturbation``'s top-minus-
    bottom change (higher is better); ``form`` as there ('fractional_logit', the default: the
    fractional logit change; 'log_prob': the absolute change of the target's log-softmax).
    Returns (N,)."""
    return pixel_perturbation(model, x, y, maps, fractions, baseline, batch_size,
                              form=form)["difference"].mean(1)


# ----------------------------------------------------------------------------------------------
# Relative gradient and density changes under Gaussian noise (P4 Sec. 7.3, A.5)
# ----------------------------------------------------------------------------------------------

def _noisy_rows(x, eps, sig, a, b):
    """Rows a..b of the (sigma, draw, sample) stack: (sample index i, x_i + sigma_s * eps_ji)."""
    n, nd = x.shape[0], eps.shape[0]
    t = torch.arange(a, b, device=x.device)
    s, j, i = t // (nd * n), (t // n) % nd, t % n
    return i, x[i] + _view(sig[s], x) * eps[j, i]


def relative_gradient_change(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | int,
                             sigmas: float | Sequence[float] | torch.Tensor, n: int = 4, seed: int | None = 0,
                             batch_size: int = 256) -> torch.Tensor:
    """P4 Sec. 7.3 / Fig. 6b, A.5 / Fig. 8a: mean over ``n`` draws delta ~ N(0, sigma^2 I) of
    ||grad_x g_y(x + delta) - grad_x g_y(x)||_2 / ||grad_x g_y(x)||_2, per sample and sigma.

    ``sigmas``: Gaussian stds in input units (x in [0, 1]); x + delta is not clamped.  The draws
    are ``gaussian_draws(x, n, seed)`` (the same for every sigma, and the same as
    ``relative_density_change``'s for the same seed).  0 = the gradient does not move (a linear
    model); a zero gradient at x gives inf / nan.  Returns (N, S), lower is more robust.
    """
    x, y = to_device_of(model, x, y)
    sig = _check_sigmas(sigmas).to(device=x.device, dtype=_work_dtype(x))
    x = x.detach().to(_work_dtype(x))
    y = _target(y, x)
    eps = gaussian_draws(x, n, seed)
    ns, nd, m = sig.numel(), eps.shape[0], x.shape[0]
    g0 = torch.cat([target_logit_grad(model, x[a:b], y[a:b])[1] for a, b in _chunks(m, batch_size)])
    g0_norm = g0.flatten(1).norm(dim=1)
    out = torch.empty(ns * nd * m, dtype=x.dtype, device=x.device)
    for a, b in _chunks(ns * nd * m, batch_size):
        i, xs = _noisy_rows(x, eps, sig, a, b)
        _, g = target_logit_grad(model, xs, y[i])
        out[a:b] = (g - g0[i]).flatten(1).norm(dim=1) / g0_norm[i]
    return out.view(ns, nd, m).mean(1).T.contiguous()


def relative_density_change(model: torch.nn.Module, x: torch.Tensor,
                            sigmas: float | Sequence[float] | torch.Tensor,
                            n: int = 4, seed: int | None = 0, form: str = "ratio",
                            batch_size: int = 256) -> torch.Tensor:
    """P4 Sec. 7.3 / Fig. 6b, A.5 / Fig. 8b: how much the unnormalized marginal density
    Z(x) = sum_i exp g_i(x) moves under delta ~ N(0, sigma^2 I), mean over ``n`` draws.

    ``form``: 'ratio' = |Z(x + delta) / Z(x) - 1|, computed as |expm1(lse(x + delta) - lse(x))|
    (0 = unchanged); 'printed' = sum_i exp(g_i(x + delta) - g_i(x)), P4's printed expression
    (equals the number of classes C at delta = 0).  ``sigmas``, the draws and the no-clamping
    as ``relative_gradient_change`` (the same draws for the same seed).  Returns (N, S), lower
    is more robust (for 'printed': closer to C).
    """
    if form not in DENSITY_FORMS:
        raise ValueError(f"form={form!r} is not known; accepted: {list(DENSITY_FORMS)}")
    (x,) = to_device_of(model, x)
    sig = _check_sigmas(sigmas).to(device=x.device, dtype=_work_dtype(x))
    x = x.detach().to(_work_dtype(x))
    eps = gaussian_draws(x, n, seed)
    ns, nd, m = sig.numel(), eps.shape[0], x.shape[0]
    f0 = _logits(model, x, batch_size)
    lse0 = f0.logsumexp(1)
    out = torch.empty(ns * nd * m, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for a, b in _chunks(ns * nd * m, batch_size):
            i, xs = _noisy_rows(x, eps, sig, a, b)
            f = model(xs)
            if form == "ratio":
                v = torch.expm1(f.logsumexp(1) - lse0[i]).abs()
            else:
                v = (f - f0[i]).exp().sum(1)
            out[a:b] = v.to(out.dtype)
    return out.view(ns, nd, m).mean(1).T.contiguous()
