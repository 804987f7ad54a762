"""Adversarial attacks: ``get(name, **kw) -> fn(model, x, y) -> x_adv``.

Conventions: ``x`` in [0, 1].  Units (checked by ``units``): L-infinity budgets ``eps``
and step sizes ``alpha`` in 0-255 pixel units, as the papers write them (``eps=8`` means 8/255;
values above 255 are rejected); L2 budgets and steps in input units.  For example
``get("pgd", norm="linf", eps=8, steps=20)`` or ``get("pgd", norm="l2", eps=0.5)``.  The loss is the cross-entropy of the label
``y`` (``y=None``: the model's prediction on x), maximised.  Gradients are taken with
``torch.autograd.grad`` w.r.t. the input only, so the parameters' ``.grad`` are untouched; the
model's train/eval mode is left as it is (evaluate in eval mode).  Every iterate is projected
onto the eps-ball around x and onto [0, 1].  The result is detached.  ``x`` and ``y`` are moved
to the model's device first (``common.to_device_of``); random starts are drawn there.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attributions as _attributions
from . import units
from .attributions.gradient import times_input
from .common import generator, resolve_k, target_logit_grad, to_device_of
from .registry import Configured, Registry
from .models import softplus_copy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

def _labels(model, x, y):
    if y is not None:
        return y
    with torch.no_grad():
        return model(x).argmax(1)


def _loss_grad(model, x_adv, y):
    """d/dx of sum_i CE(model(x_i), y_i), without touching any parameter's .grad."""
    with torch.enable_grad():
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
    return g


def _per_sample(v, x):
    return v.view(-1, *([1] * (x.dim() - 1)))


def _l2(v):
    return v.flatten(1).norm(dim=1)


def _project(x_adv, x, eps, norm):
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        scale = (eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _per_sample(scale, x)
    return (x + delta).clamp(0.0, 1.0)


def _uniform_delta(x, eps, norm, gen):
    """A random start offset: uniform in the linf cube [-eps, eps]^d, or uniform in the l2 ball of
    radius eps (gaussian direction, radius eps * U^(1/d)); drawn from ``gen`` (None: global RNG)."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        return (2 * u - 1) * eps
    d = x[0].numel()
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    r = torch.rand(x.shape[0], generator=gen, dtype=x.dtype, device=x.device) ** (1.0 / d)
    return z / _per_sample(_l2(z).clamp_min(1e-12), x) * _per_sample(eps * r, x)


def _check(eps, steps=None, norm="linf", alpha=None):
    """(eps, alpha) in input units, after checking them in their units (``units.budget``: 0-255
    pixel units for linf, input units for l2) and ``steps`` (a positive int).  alpha None stays None."""
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps={steps!r} is not valid; accepted: a positive int")
    eps = units.budget(eps, norm)
    if alpha is not None:
        alpha = units.budget(alpha, norm, "alpha")
        if not alpha > 0:
            raise ValueError(f"alpha={alpha!r} is not valid; accepted: a number > 0 or None")
    return eps, alpha


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float) -> torch.Tensor:
    """FGSM (Goodfellow 2015): x_adv = clip_[0,1](x + eps/255 * sign(grad_x CE(f(x), y))).

    ``eps``: the linf budget in 0-255 pixel units.
    """
    eps, _ = _check(eps)
    x, y = to_device_of(model, x.detach(), y)
    y = _labels(model, x, y)
    return (x + eps * _loss_grad(model, x, y).sign()).clamp(0.0, 1.0).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, alpha: float | None = None,
        steps: int = 20, norm: str = "linf", random_start: bool = True,
        seed: int | None = None) -> torch.Tensor:
    """PGD (Madry 2018) maximising CE over the eps-ball; P1, P2, P4 robust accuracy.

    Units: ``norm="linf"``: ``eps`` and ``alpha`` in 0-255 pixel units (8 means 8/255);
    ``norm="l2"``: in input units.  Below, eps and alpha are in input units.
    Update: linf: x_{t+1} = P(x_t + alpha * sign(grad_x CE(f(x_t), y)));
    l2: x_{t+1} = P(x_t + alpha * g / ||g||_2), g = grad_x CE per sample;
    P projects onto {||x' - x||_p <= eps} then clips to [0, 1].  ``alpha`` defaults to
    2.5 * eps / steps.  Random start: x_0 = P(x + delta), delta uniform in the linf cube, or
    uniform in the l2 ball (gaussian direction, radius eps * U^(1/d)); the draw uses its own
    generator when ``seed`` is given (else the global RNG).

    Parameters
    ----------
    model : nn.Module
        Classifier of [0, 1] inputs, returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) clean inputs in [0, 1].
    y : torch.Tensor or None
        (N,) labels whose cross-entropy is maximised; None: the model's predictions on ``x``.
    eps, alpha : float
        Budget and step size: 0-255 pixel units for ``norm="linf"``, input units for ``"l2"``.
    steps : int
        Number of iterations.

    Returns
    -------
    torch.Tensor
        The detached adversarial inputs, same shape as ``x``.
    """
    eps, alpha = _check(eps, steps, norm, alpha)
    if alpha is None:
        alpha = 2.5 * eps / steps
    x, y = to_device_of(model, x.detach(), y)
    y = _labels(model, x, y)
    x_adv = x.clone()
    if random_start and eps > 0:
        delta = _uniform_delta(x, eps, norm, generator(seed, x.device))
        x_adv = _project(x + delta, x, eps, norm)
    for _ in range(int(steps)):
        g = _loss_grad(model, x_adv, y)
        if norm == "linf":
            step = g.sign()
        else:
            step = g / _per_sample(_l2(g).clamp_min(1e-12), x)
        x_adv = _project(x_adv + alpha * step, x, eps, norm)
    return x_adv.detach()


def mifgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, alpha: float | None = None,
           steps: int = 10, decay: float = 1.0) -> torch.Tensor:
    """MI-FGSM (Dong 2018): momentum iterative FGSM maximising CE in the linf eps-ball.

    Update: g_{t+1} = mu * g_t + grad_x CE(f(x_t), y) / ||grad_x CE(f(x_t), y)||_1 (per sample),
    x_{t+1} = P(x_t + alpha * sign(g_{t+1})); ``decay`` is mu (1.0), ``alpha`` defaults to
    eps / steps; P projects onto the linf eps-ball around x and clips to [0, 1].  No random
    start.  ``eps`` and ``alpha`` in 0-255 pixel units.
    """
    eps, alpha = _check(eps, steps, "linf", alpha)
    if alpha is None:
        alpha = eps / steps
    x, y = to_device_of(model, x.detach(), y)
    y = _labels(model, x, y)
    x_adv = x.clone()
    momentum = torch.zeros_like(x)
    for _ in range(int(steps)):
        g = _loss_grad(model, x_adv, y)
        l1 = g.abs().flatten(1).sum(1).clamp_min(1e-12)
        momentum = decay * momentum + g / _per_sample(l1, x)
        x_adv = _project(x_adv + alpha * momentum.sign(), x, eps, "linf")
    return x_adv.detach()


# ----------------------------------------------------------------------------- attribution attacks
def frame_target(height: int, width: int, frame_width: float = 5, ref_size: float = 32,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """P1's AAM target map h_t (Fig. 3a): ones on a border, zeros inside, shape (1, 1, H, W).

    The border is ``frame_width`` pixels on a ``ref_size`` image (5 on 32x32, as in P1's
    reference code; 35 on 224x224) and is scaled to the image: each side gets
    max(1, floor(frame_width * side / ref_size + 1/2)) pixels.
    """
    if not (isinstance(frame_width, (int, float)) and not isinstance(frame_width, bool)
            and frame_width > 0):
        raise ValueError(f"frame_width must be a number > 0; got frame_width={frame_width!r}")
    if not (isinstance(ref_size, (int, float)) and ref_size > 0):
        raise ValueError(f"ref_size must be a number > 0; got ref_size={ref_size!r}")
    bh = max(1, int(math.floor(frame_width * height / ref_size + 0.5)))
    bw = max(1, int(math.floor(frame_width * width / ref_size + 0.5)))
    h_t = torch.ones(1, 1, height, width, dtype=dtype, device=device)
    h_t[..., bh:height - bh, bw:width - bw] = 0.0
    return h_t


def _smooth_model(model, beta):
    """``model`` itself if it has no ``nn.ReLU`` module, else its softplus copy (P1's code, beta 20)."""
    if any(isinstance(m, nn.ReLU) for m in model.modules()):
        copy = softplus_copy(model, beta)
        for p in copy.parameters():  # only input gradients are needed on the copy
            p.requires_grad_(False)
        return copy
    return model


def _map_and_logits(model, x, target, attribution, create_graph, attribution_kw=None):
    """(attribution map, logits) at ``x`` (a leaf that requires grad); one forward for grad maps.
    ``attribution_kw``: the explainer's hyperparameters (None: its defaults)."""
    if attribution in ("grad", "input_x_grad") and not attribution_kw:
        logits, g = target_logit_grad(model, x, target, create_graph=create_graph)
        return (times_input(model, x, g) if attribution == "input_x_grad" else g), logits
    h = _attributions.get(attribution, **dict(attribution_kw or {}))(model, x, target, create_graph=create_graph)
    return h, model(x)


def _pixel_mass(h):
    """Sum of |h| over channels, flattened per sample: (N, C, H, W) -> (N, H*W)."""
    a = h.abs()
    if a.dim() >= 3:
        a = a.sum(1)
    return a.flatten(1)


def _evaluator(model, smooth, target, attribution, pred0, loss_of, rank_of=None, attribution_kw=None):
    """``evaluate(x_adv, need_grad)`` for ``_descend``: the per-sample loss
    ``loss_of(h, logits, judged)`` of the map h and logits at x_adv, differentiated through
    ``smooth`` (the softplus copy of a ReLU model, or the model itself) and judged -- ranked
    and label-checked -- on ``model`` (``judged=True``: computed on ``model``).  ``rank_of(h,
    logits)``: the value that ranks the iterates, on ``model`` (None: ``loss_of`` itself).
    ``target``: the classes the maps explain, or a function of the iterate giving them on
    ``smooth`` (on ``model`` the model's own prediction is used then)."""
    def judged(h, logits):
        return (loss_of(h, logits, True) if rank_of is None else rank_of(h, logits)).detach()

    def target_at(xa, net):  # ``target`` may be a function of the iterate (a class that moves)
        if not callable(target):
            return target
        if net is smooth:
            return target(xa)
        with torch.no_grad():
            return net(xa).argmax(1)

    def evaluate(x_adv, need_grad, judge=True):
        with torch.enable_grad():
            xa = x_adv.detach().requires_grad_(True)
            h, logits = _map_and_logits(smooth, xa, target_at(xa, smooth), attribution, need_grad, attribution_kw)
            loss = loss_of(h, logits, smooth is model)
            g = torch.autograd.grad(loss.sum(), xa)[0] if need_grad else None
        if not judge:  # only the step is needed (keep="last")
            return g, None, None
        if smooth is model:
            rank = loss.detach() if rank_of is None else judged(h.detach(), logits.detach())
            return g, rank, logits.detach().argmax(1) == pred0
        with torch.enable_grad():
            xa = x_adv.detach().requires_grad_(True)
            h, logits = _map_and_logits(model, xa, target_at(xa, model), attribution, False, attribution_kw)
        return g, judged(h.detach(), logits.detach()), logits.detach().argmax(1) == pred0
    return evaluate


def _check_attribution_attack(attribution, softplus_beta, update=None):
    if attribution not in _attributions.DIFFERENTIABLE:
        raise ValueError(f"attribution={attribution!r} cannot be attacked (its map is not "
                         f"differentiable); accepted: {list(_attributions.DIFFERENTIABLE)}")
    if not (isinstance(softplus_beta, (int, float)) and softplus_beta > 0):
        raise ValueError(f"softplus_beta must be a number > 0; got softplus_beta={softplus_beta!r}")
    if update is not None and update not in _UPDATES:
        raise ValueError(f"update={update!r} is not known; accepted: {list(_UPDATES)}")


def _start(x, eps, random_start, seed, norm="linf"):
    """x, or x + a uniform draw in the ``norm`` ball (``_uniform_delta``; own generator when
    ``seed`` is given) projected to the ball and [0, 1]."""
    if not random_start or eps == 0:
        return x.clone()
    return _project(x + _uniform_delta(x, eps, norm, generator(seed, x.device)), x, eps, norm)


def _descend(x, eps, steps, alpha, update, random_start, seed, evaluate, norm="linf", keep="best", clip=True):
    """Shared loop of the attribution attacks: minimise a per-sample loss, keep the best valid iterate.

    ``evaluate(x_t, need_grad) -> (grad of the summed loss or None, ranking value per sample on
    the model judged, label kept per sample)``.  The candidates are x itself and every iterate
    x_0..x_T.  ``keep``: ``"best"`` -- per sample the one with the lowest value among those whose
    label is kept (x itself if none improves); ``"best_or_last"`` -- the same, but the last
    iterate where none improved on x (P2's top-k code); ``"last"`` -- the last iterate, no label
    check (P2's structured code).  ``update="sign"`` takes the steepest-descent step of
    ``norm``: -alpha * sign(g) (linf) or -alpha * g / ||g||_2 per sample (l2); every iterate is
    projected onto the ``norm`` eps-ball around x and [0, 1] (``clip=False``: no projection at
    all, as P2's structured code, whose clamp is discarded).
    """
    if keep not in _KEEPS:
        raise ValueError(f"keep={keep!r} is not known; accepted: {list(_KEEPS)}")
    project = (lambda v: _project(v, x, eps, norm)) if clip else (lambda v: v)
    x_adv = _start(x, eps, random_start, seed, norm)
    best = x.clone()
    if random_start and eps > 0:
        _, best_loss, _ = evaluate(x, False)
    else:
        best_loss = None
    improved = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if update == "adam":
        var = x_adv.clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=alpha)
    view = (-1,) + (1,) * (x.dim() - 1)
    for t in range(int(steps) + 1):
        last = t == int(steps)
        if keep == "last":  # no ranking: only the steps
            if last:
                break
            g, _, _ = evaluate(x_adv, True, False)
        else:
            g, loss, kept = evaluate(x_adv, not last)
            if best_loss is None:  # x_0 = x: always kept
                best_loss = loss.clone()
            ok = kept & (loss < best_loss)
            improved |= ok
            best = torch.where(ok.view(view), x_adv, best)
            best_loss = torch.where(ok, loss, best_loss)
            if last:
                break
        if update == "sign":
            step = g.sign() if norm == "linf" else g / _per_sample(_l2(g).clamp_min(1e-12), x)
            x_adv = project(x_adv - alpha * step)
        else:
            var.grad = g
            opt.step()
            with torch.no_grad():
                var.copy_(project(var))
            x_adv = var.detach().clone()
    if keep == "last":
        return x_adv.detach()
    if keep == "best_or_last":
        best = torch.where(improved.view(view), best, x_adv)
    return best.detach()


_KEEPS = ("best", "best_or_last", "last")
_UPDATES = ("sign", "adam")


def targeted_attribution(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 4,
                         steps: int = 100, target_map: torch.Tensor | None = None, frame_width: float = 5,
                         attribution: str = "grad", w_h: float = 1.0, w_p: float = 0.1,
                         alpha: float | None = None, update: str = "sign", softplus_beta: float = 20.0,
                         random_start: bool = False, seed: int | None = None) -> torch.Tensor:
    """Targeted attribution attack (Dombrowski 2019; P1's AAM, Sec. 2 and "Metrics"): the map moves to h_t.

    Minimises, per sample, over the linf eps-ball around x (``eps`` and ``alpha`` in 0-255 pixel
    units; P1: 4 LeNet, 2 ResNet18, 100 iterations) with the predicted label kept:
        L(x') = w_h * ||h(x') - h_t||_2^2 + w_p * ||g(x') - g(x)||_2^2,
    h = ``attributions.postprocess`` of the map of class ``y`` (``y=None``: the clean prediction),
    i.e. sum of |map| over channels divided by the per-image max, g the logits.  ``h_t`` is
    ``target_map`` (broadcastable to (N, 1, H, W), on the scale of h) or, by default,
    ``frame_target`` (a border of ``frame_width`` pixels on 32x32, scaled to the image size).
    ``w_p = 0.1`` is the reference code's weighting (0.5 * sum-MSE of the maps + 0.5 * MSE of the
    logits averaged over C = 10 classes, i.e. w_p = w_h / C).

    Update (``update="sign"``, default): x_{t+1} = P(x_t - alpha * sign(grad_x L(x_t))), P the
    projection onto {||x' - x||_inf <= eps} and [0, 1], as P1's text states ("PGD-linf,
    iter=100").  ``update="adam"``: P1's reference code (RobustAGA,
    ``LitClassifierXAIAdvTester.get_adv_img``) instead takes Adam steps on x' with lr alpha, then
    projects (and returns the last iterate, with no label check).  ``alpha`` defaults to
    4 * eps / steps, the reference's Adam learning rate (Adam's first steps move each coordinate
    by about lr, so both rules take steps of that size).  ``x_0 = x`` (``random_start=True``:
    uniform in the ball, drawn from its own generator when ``seed`` is given).

    ReLU models (any ``nn.ReLU`` module) are differentiated through ``models.softplus_copy(model,
    softplus_beta)`` (beta 20 as in P1's code); the loss used to rank the iterates and the label
    check use ``model`` itself.  Returned, per sample: the iterate (x_0..x_steps, or x) with the
    lowest L on ``model`` among those whose predicted label equals the clean prediction; x itself
    if none.  Only input gradients are taken (parameters' ``.grad`` untouched); detached result.
    """
    eps, alpha = _check(eps, steps, "linf", alpha)
    _check_attribution_attack(attribution, softplus_beta, update)
    for name, v in (("w_h", w_h), ("w_p", w_p)):
        if not v >= 0:
            raise ValueError(f"{name} must be >= 0; got {name}={v}")
    if alpha is None:
        alpha = 4.0 * eps / steps
    x, y = to_device_of(model, x.detach(), y)
    pred0 = _labels(model, x, None)
    target = pred0 if y is None else y
    if target_map is None:
        if x.dim() != 4:
            raise ValueError(f"target_map=None needs image batches (N, C, H, W); got x of shape "
                             f"{tuple(x.shape)}: pass target_map")
        h_t = frame_target(x.shape[2], x.shape[3], frame_width, dtype=x.dtype, device=x.device)
    else:
        h_t = torch.as_tensor(target_map, dtype=x.dtype, device=x.device)
        shape = _attributions.postprocess(x[:1]).shape[1:]
        try:
            torch.broadcast_shapes(h_t.shape, (x.shape[0],) + tuple(shape))
        except RuntimeError:
            raise ValueError(f"target_map of shape {tuple(h_t.shape)} does not broadcast to the "
                             f"maps' shape {(x.shape[0],) + tuple(shape)}") from None
    smooth = _smooth_model(model, softplus_beta)
    with torch.no_grad():
        logits0 = smooth(x)
        logits0_model = logits0 if smooth is model else model(x)

    def loss_of(h, logits, judged):
        ref = logits0_model if judged else logits0
        map_term = (_attributions.postprocess(h) - h_t).pow(2).flatten(1).sum(1)
        return w_h * map_term + w_p * (logits - ref).pow(2).sum(1)

    evaluate = _evaluator(model, smooth, target, attribution, pred0, loss_of)
    return _descend(x, eps, steps, alpha, update, random_start, seed, evaluate)


def topk(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 8, steps: int = 300,
         k: int | float = 0.02, attribution: str = "grad", alpha: float | None = None,
         softplus_beta: float = 20.0, random_start: bool = False, seed: int | None = None,
         norm: str = "linf", select: str = "share", keep: str = "best",
         attribution_kw: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Top-k attack (Ghorbani 2019 "top-k fooling"; P2, P3 B.6): steps that move mass off the clean top-k.

    K = the k pixels with the largest clean map m(x) (m = sum of |map| over channels, of class
    ``y``, ``y=None``: the clean prediction; ``k`` an int count or a float fraction of the pixels,
    default 0.02 ~ Ghorbani's and P2's k = 1000 of 224x224; P2: 300 iterations in the text, 100
    in its code).  Minimises the share of the map's mass on K, D(x') = sum_{i in K} m_i(x') /
    sum_i m_i(x'), by ``norm="linf"`` (default; P2): x_{t+1} = P(x_t - alpha * sign(grad_x
    D(x_t))), P the projection onto the linf eps-ball around x and [0, 1] (``eps`` and ``alpha``
    in 0-255 pixel units; P2's code steps by 1 normalized unit, ``P2_TOPK_STEP``, far beyond its
    budgets, so that every iterate lies on a corner of the eps-box); ``norm="l2"`` (P3 B.6: "we
    followed [Ghorbani 2019] to use L2 attack on top-k overlap", k = 40% of all pixels, i.e.
    ``k=0.4``): x_{t+1} = P(x_t - alpha * g / ||g||_2), g = grad_x D(x_t) per sample, P the
    projection onto the L2 eps-ball around x and [0, 1] (``eps`` and ``alpha`` in input units: the
    L2 norm of the perturbation of a [0, 1] image; the default ``eps=8`` is then read as that
    norm).  ``alpha`` defaults to 2.5 * eps / steps (as ``pgd``); ``x_0 = x`` unless
    ``random_start`` (uniform in the linf cube or in the L2 ball, as ``pgd`` draws it; own
    generator when ``seed`` is given).  ReLU models are differentiated through
    ``models.softplus_copy(model, softplus_beta)`` (P2's code: beta 30); K, the ranking of
    iterates and the label check use ``model`` itself.  ``attribution_kw``: the attacked
    explainer's hyperparameters (e.g. SmoothGrad's ``n``).

    Returned, per sample (``select`` ranks the iterates, ``keep`` picks, as ``_descend``):
    ``select="share"`` -- the lowest D; ``"intersection"`` -- the smallest top-k intersection
    |top-k(m(x')) & K| / k (P2's code, ``IterativeAttack.check_measure``); among the iterates
    whose predicted label equals the clean prediction; ``keep="best"``: x itself if none beats
    it, ``"best_or_last"``: the last iterate then (P2's code returns it whatever its label).
    Detached; parameters' ``.grad`` untouched.
    """
    eps, alpha = _check(eps, steps, norm, alpha)
    _check_attribution_attack(attribution, softplus_beta)
    if select not in _SELECTS:
        raise ValueError(f"select={select!r} is not known; accepted: {list(_SELECTS)}")
    if keep not in ("best", "best_or_last"):
        raise ValueError(f"keep={keep!r} is not valid for topk; accepted: ['best', 'best_or_last']")
    if alpha is None:
        alpha = 2.5 * eps / steps
    x, y = to_device_of(model, x.detach(), y)
    pred0 = _labels(model, x, None)
    target = pred0 if y is None else y
    with torch.enable_grad():
        xa = x.clone().requires_grad_(True)
        h0, _ = _map_and_logits(model, xa, target, attribution, False, attribution_kw)
    m0 = _pixel_mass(h0.detach())
    k = resolve_k(k, m0.shape[1])
    top = torch.zeros_like(m0).scatter_(1, m0.topk(k, dim=1).indices, 1.0)
    smooth = _smooth_model(model, softplus_beta)

    def share(h, logits, judged):
        m = _pixel_mass(h)
        return (m * top).sum(1) / m.sum(1).clamp_min(1e-12)

    def intersection(h, logits):
        m = _pixel_mass(h)
        return (torch.zeros_like(m).scatter_(1, m.topk(k, dim=1).indices, 1.0) * top).sum(1) / k

    evaluate = _evaluator(model, smooth, target, attribution, pred0, share,
                          rank_of=intersection if select == "intersection" else None,
                          attribution_kw=attribution_kw)
    return _descend(x, eps, steps, alpha, "sign", random_start, seed, evaluate, norm, keep=keep)


_SELECTS = ("share", "intersection")


# P2's code runs on ImageNet-normalized inputs (std ~0.226 per channel): its PGD step 0.01 and
# structured-attack Adam lr 2e-4 are these many 0-255 pixel units.
_IMAGENET_STD = 0.226
P2_PGD_STEP = 0.01 * _IMAGENET_STD * 255.0      # ~0.58 (0-255 units)
P2_STRUCTURED_LR = 2e-4 * _IMAGENET_STD * 255.0  # ~0.0115 (0-255 units)
P2_TOPK_STEP = 1.0 * _IMAGENET_STD * 255.0       # ~57.6: the top-k step of P2's code (alpha 1, normalized)


def p2_eps(eps_normalized: float) -> float:
    """A budget of P2's code (in ImageNet-normalized units) in 0-255 pixel units (0.07 -> ~4)."""
    return float(eps_normalized) * _IMAGENET_STD * 255.0


def untargeted_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 4,
                   alpha: float | None = None, steps: int = 40, random_start: bool = True,
                   seed: int | None = None) -> torch.Tensor:
    """P2's untargeted attack: linf PGD on the prediction (CleverHans, as the released code calls it).

    40 iterations with the fixed step of P2's code (``alpha`` None: 0.01 in ImageNet-normalized
    units = ``P2_PGD_STEP`` ~0.58 in 0-255 units, so 40 steps travel at most ~23/255 and larger
    budgets act through the random start), random start U[-eps, eps] (CleverHans' default),
    labels ``y`` (None: the prediction).  ``eps`` and ``alpha`` in 0-255 pixel units; P2's grid
    {0.07, 0.1, 0.3, 1, 2, 4, 8} (normalized) is ``p2_eps`` of it, ~{4, 6, 17, 58, 115, 230, 461}.
    The label is not kept: P2 asks how maps change when the prediction does.
    """
    alpha = P2_PGD_STEP if alpha is None else alpha
    return pgd(model, x, y, eps, alpha=alpha, steps=steps, norm="linf", random_start=random_start,
               seed=seed)


def _sum_normalized(h):
    """Sum of |h| over channels divided by its sum per image (Dombrowski 2019's maps), (N, H*W)."""
    m = _pixel_mass(h)
    return m / m.sum(1, keepdim=True).clamp_min(1e-12)


def structured(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
               target_x: torch.Tensor | None = None, eps: float = 255, steps: int = 1500,
               alpha: float | None = None, w_h: float = 1e11, w_p: float = 1e6, attribution: str = "grad",
               beta_range: tuple[float, float] = (10.0, 100.0), seed: int | None = None, keep: str = "best",
               clip: bool = True, attribution_kw: Mapping[str, Any] | None = None,
               reference_beta: float | None = None, map_class: str = "clean") -> torch.Tensor:
    """P2's structured attack (Dombrowski 2019, as P2's released ``targeted/structured.py``): the
    map of x moves to the map of another image ``target_x``.

    Minimises, per sample, with Adam steps on x' (lr ``alpha``, default P2's 2e-4 in normalized
    units = ``P2_STRUCTURED_LR`` ~0.0115 in 0-255 units; 1500 iterations as P2):
        L(x') = w_h * mean_j (h(x')_j - h(target_x)_j)^2 + w_p * mean_k (p(x')_k - p(x)_k)^2,
    h = sum over channels of |map| divided by its sum (Dombrowski's normalization), p the
    softmax output, prefactors 1e11 and 1e6 (P2).  ``target_x``: (N, C, H, W) or (1, C, H, W)
    images whose maps (of their own predicted class) are the targets.  ReLU models are
    differentiated through a softplus copy whose beta grows geometrically over ``beta_range``
    (P2: 10 -> 100).  P2 has no ball; ``eps`` (0-255 units, default 255 = only [0, 1]) adds
    one.  Returned, per sample (``keep="best"``): the iterate with the lowest L whose predicted
    label equals the clean prediction (x itself if none); ``keep="last"`` (P2's code): the last
    iterate, whatever its label.  ``clip=False`` (P2's code, whose ``image_clamp`` result is
    discarded): no projection at all, the image may leave [0, 1].  ``attribution_kw``: the
    attacked explainer's hyperparameters.  ``reference_beta`` (P2's code: 1000): the target map
    (of the class predicted at ``target_x``) and p(x) come from a softplus copy of a ReLU model
    with that beta, as the code computes them after swapping the activations (None: the model
    itself).  ``map_class``: the class the attacked map explains during the iterations --
    ``"clean"``, ``y`` or the clean prediction (default), or ``"current"``, the prediction of the
    softplus network at the current iterate (P2's code, whose saliency methods explain the
    predicted class when given none).  Detached; parameters' ``.grad`` untouched.
    """
    eps, alpha = _check(eps, steps, "linf", alpha)
    if alpha is None:
        alpha = units.linf(P2_STRUCTURED_LR, "alpha")
    _check_attribution_attack(attribution, 1.0 if reference_beta is None else reference_beta)
    if keep not in ("best", "last"):
        raise ValueError(f"keep={keep!r} is not valid for structured; accepted: ['best', 'last']")
    if map_class not in ("clean", "current"):
        raise ValueError(f"map_class={map_class!r} is not known; accepted: ['clean', 'current']")
    if target_x is None:
        raise ValueError("structured needs target_x: the images whose maps are the targets")
    lo, hi = (float(b) for b in beta_range)
    if not 0 < lo <= hi:
        raise ValueError(f"beta_range={beta_range!r} is not valid; accepted: (start, end) with 0 < start <= end")
    x, y = to_device_of(model, x.detach(), y)
    pred0 = _labels(model, x, None)
    target = pred0 if y is None else y
    target_x = torch.as_tensor(target_x, dtype=x.dtype, device=x.device).detach()
    if target_x.dim() != x.dim() or target_x.shape[0] not in (1, x.shape[0]) \
            or target_x.shape[1:] != x.shape[1:]:
        raise ValueError(f"target_x of shape {tuple(target_x.shape)} does not fit x of shape "
                         f"{tuple(x.shape)}; accepted: (N or 1, *x.shape[1:])")
    ref = model if reference_beta is None else _smooth_model(model, reference_beta)
    with torch.enable_grad():
        xt = target_x.clone().requires_grad_(True)
        h_t, _ = _map_and_logits(ref, xt, _labels(ref, target_x, None), attribution, False, attribution_kw)
    h_t = _sum_normalized(h_t.detach())
    smooth = _smooth_model(model, lo)
    softplus = [m for m in smooth.modules() if isinstance(m, nn.Softplus)] if smooth is not model else []
    with torch.no_grad():
        p0 = F.softmax(ref(x), 1)
    state = {"t": 0}
    if map_class == "current":  # the class the network being differentiated predicts now
        def target(xa):
            with torch.no_grad():
                return smooth(xa).argmax(1)

    def loss_of(h, logits, judged):
        return (w_h * (_sum_normalized(h) - h_t).pow(2).mean(1)
                + w_p * (F.softmax(logits, 1) - p0).pow(2).mean(1))

    judge = _evaluator(model, smooth, target, attribution, pred0, loss_of, attribution_kw=attribution_kw)

    def evaluate(x_adv, need_grad, judge_it=True):  # the softplus beta grows geometrically
        beta = lo * (hi / lo) ** (min(state["t"], steps) / max(int(steps), 1))
        for m in softplus:
            m.beta = beta
        state["t"] += int(need_grad)
        return judge(x_adv, need_grad, judge_it)

    return _descend(x, eps, steps, alpha, "adam", False, seed, evaluate, keep=keep, clip=clip)


class Attack(Configured):
    """An attack with its hyperparameters bound: ``(model, x, y=None) -> x_adv``.

    Metadata: ``goal`` (what it changes: the ``"prediction"`` or the ``"map"``), ``units``
    (of ``eps``: L-inf budgets in 0-255 pixel units, L2 in input units, ``units``).
    ``kwargs`` is the same dict as ``hparams``.
    """

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], n_args: int = 3,
                 hparams: Mapping[str, Any] | None = None, fixed: Sequence[str] = (), **meta: Any) -> None:
        super().__init__(name, fn, n_args, hparams, fixed, **meta)
        self.kwargs = self.hparams

    def configure(self, **hparams: Any) -> Attack:
        out = super().configure(**hparams)
        missing = out.missing()
        if missing:
            raise ValueError(f"attack {self.name!r} needs hyperparameters {missing}")
        hp = out.hparams
        _check(hp.get("eps", 0), hp.get("steps"), hp.get("norm", "linf"), hp.get("alpha"))
        return out

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        return self.fn(model, x, y, **{**self.hparams, **kwargs})


_EPS_UNITS = "eps: L-inf in 0-255 pixel units, L2 in input units"
REGISTRY = Registry("attack", {a.name: a for a in (
    Attack("pgd", pgd, goal="prediction", units=_EPS_UNITS),
    Attack("fgsm", fgsm, goal="prediction", units=_EPS_UNITS),
    Attack("mifgsm", mifgsm, goal="prediction", units=_EPS_UNITS),
    Attack("targeted_attribution", targeted_attribution, goal="map", units=_EPS_UNITS),
    Attack("topk", topk, goal="map", units=_EPS_UNITS),
    Attack("untargeted_pgd", untargeted_pgd, goal="prediction", units=_EPS_UNITS),
    Attack("structured", structured, goal="map", units=_EPS_UNITS),
)})
NAMES = REGISTRY.names


def get(name: str, **kw: Any) -> Attack:
    """The ``Attack`` called ``name`` with hyperparameters ``kw`` bound: ``fn(model, x, y) -> x_adv``."""
    return REGISTRY.get(name, **kw)
