"""P1's other baselines: ``maxent`` (Cha 2020), ``input_grad`` (Ross and Doshi-Velez 2018),
``iga`` (Singh 2020), ``atex`` (Tang 2022), with their helpers."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import cache as _cache
from .. import units
from ._checks import (_boolean, _choice, _fraction, _nonneg, _nonneg_int, _optional_key, _p_norm,
                      _pixels, _pos, _pos_int, _real)
from .base import Regularized
from .terms import _COS_EPS, _TINY, _f, _logits_and_input_grad, _select


def _strongest_other(logits, y):
    """Index of the largest logit other than the label (Singh 2020's negative class)."""
    masked = logits.detach().scatter(1, y.view(-1, 1), float("-inf"))
    return masked.argmax(1)


def _cos_dist(a, b):
    """Per-sample cosine distance 1 - cossim of flattened batches."""
    return 1.0 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=_COS_EPS)


def _soft_margin_triplet(anchor, pos, neg):
    """Per-sample soft-margin triplet loss log(1 + exp(d(a, p) - d(a, n))), d = cosine distance."""
    return F.softplus(_cos_dist(anchor, pos) - _cos_dist(anchor, neg))


def _true_and_other_grads(model, x, y, create_graph):
    """(logits, grad g_y(x), grad g_o(x)) with o the strongest other class at x (Singh 2020)."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    logits = model(x)
    other = _strongest_other(logits, y)
    (g_true,) = torch.autograd.grad(_select(logits, y), x, create_graph=create_graph,
                                    retain_graph=True)
    (g_other,) = torch.autograd.grad(_select(logits, other), x, create_graph=create_graph,
                                     retain_graph=True)
    return logits, g_true, g_other


def _topk_alignment_attack(model, x, y, eps, step, steps, k):
    """Singh 2020 top-k alignment attack (input units): sign ascent of the triplet loss on top-k.

    Random start in the Linf eps-ball (clipped to [0, 1]); the k features with the largest
    |grad g_y| at the start are fixed; each step ascends sum_n softplus(d(x_K, grad_K g_y) -
    d(x_K, grad_K g_o)) restricted to those features (anchor, the image itself, included in
    the graph), then projects to the eps-ball and [0, 1].  Returns a detached x_adv.
    """
    x = x.detach()
    with torch.enable_grad():
        adv = (x + (2.0 * torch.rand_like(x) - 1.0) * eps).clamp(0.0, 1.0)
        _, g0 = _logits_and_input_grad(model, adv, y, create_graph=False)
        idx = g0.detach().abs().flatten(1).topk(k, dim=1).indices
        for _ in range(steps):
            adv = adv.detach().requires_grad_(True)
            _, g_true, g_other = _true_and_other_grads(model, adv, y, create_graph=True)
            pick = lambda t: t.flatten(1).gather(1, idx)  # noqa: E731
            loss = _soft_margin_triplet(pick(adv), pick(g_true), pick(g_other)).sum()
            (direction,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + step * direction.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)
    return adv.detach()


def _smoothgrad(model, x, y, n, sigma):
    """Mean of grad g_y over n Gaussian-noised copies (std sigma, input units), no graph."""
    acc = torch.zeros_like(x)
    for _ in range(n):
        noisy = x.detach() + sigma * torch.randn_like(x)
        acc += _logits_and_input_grad(model, noisy, y, create_graph=False)[1].detach()
    return acc / n


def _atex_samples(x, direction, mag, n_shifts, n_orth):
    """ATEX inputs (Tang 2022): shifts along the explanation and orthogonal uniform noise.

    ``direction`` (N, ...) is rescaled per sample to max |entry| = mag; the shifted points are
    x + c * direction for c in linspace(-0.5, 0.5, n_shifts) (c = 0 if n_shifts == 1); each
    gets n_orth draws of U[-mag, mag]^d noise with its component along the direction removed.
    Returns (x_along of shape (S*N, ...), x_aug of shape (S*R*N, ...)) with sample n of shift s,
    draw r at index (s*R + r)*N + n of x_aug and s*N + n of x_along.
    """
    n, shape = x.shape[0], x.shape[1:]
    flat = direction.flatten(1)
    along = flat / flat.abs().amax(1, keepdim=True).clamp_min(_TINY) * mag
    unit = flat / torch.linalg.vector_norm(flat, dim=1, keepdim=True).clamp_min(_TINY)
    if n_shifts == 1:
        coefs = x.new_zeros(1)
    else:
        coefs = torch.linspace(-0.5, 0.5, n_shifts, dtype=x.dtype, device=x.device)
    x_along = x.flatten(1)[None] + coefs.view(-1, 1, 1) * along[None]  # (S, N, d)
    noise = (2.0 * torch.rand((n_shifts, n_orth) + flat.shape, dtype=x.dtype,
                              device=x.device) - 1.0) * mag
    noise = noise - (noise * unit).sum(-1, keepdim=True) * unit
    x_aug = x_along[:, None] + noise  # (S, R, N, d)
    return x_along.reshape((n_shifts * n,) + shape), x_aug.reshape((n_shifts * n_orth * n,) + shape)


def _state_dict_key(module):
    """Content hash of a module's architecture and weights (``cache.config_hash``; a teacher's key)."""
    return _cache.config_hash(module)


class MaxEnt(Regularized):
    """Maximum-entropy regularization (P1 Fig. 1c; Cha 2020): CE - lam * mean H(softmax(g(x)))."""

    name = "maxent"
    params = {"lam": (0.1, _real)}

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        logp = F.log_softmax(logits, dim=1)
        entropy = -(logp.exp() * logp).sum(1).mean()
        penalty = -self.hparams["lam"] * entropy
        return ce, penalty, {"ce": _f(ce), "entropy": _f(entropy), "penalty": _f(penalty)}


class InputGrad(Regularized):
    """Input-gradient regularization (Ross and Doshi-Velez 2018): CE + lam * mean ||grad_x g_y(x)||_p."""

    name = "input_grad"
    params = {"lam": (0.1, _nonneg), "p": (2.0, _p_norm)}

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        logits, g = _logits_and_input_grad(model, x, y, create_graph=True)
        ce = F.cross_entropy(logits, y)
        norm = torch.linalg.vector_norm(g.flatten(1), ord=self.hparams["p"], dim=1).mean()
        penalty = self.hparams["lam"] * norm
        return ce, penalty, {"ce": _f(ce), "grad_norm": _f(norm), "penalty": _f(penalty)}


class IGA(Regularized):
    """Singh 2020 (ART/IGA): CE(x_adv) + lam * soft-margin triplet(x_adv; grad g_y, grad g_o).

    x_adv: ``steps`` sign steps of ``step`` (0-255 units) of the top-k alignment attack in the
    Linf ``eps``-ball (``_topk_alignment_attack``; k = round(k_frac * d), the reference's
    k = 1000 of d = 3072 on CIFAR-10).  Triplet: anchor = the image x_adv, positive = grad of
    the true logit, negative = grad of the strongest other logit, cosine distances, loss
    log(1 + exp(d_pos - d_neg)), on all features.  ``pair_mining=True`` follows the reference
    code instead: anchors x and x_adv, each against the gradients at both x and x_adv, taking
    the hardest (largest d_pos, smallest d_neg) of the pair.  The attack is a constant for
    the weight gradient.
    """

    name = "iga"
    params = {"eps": (8.0, _pixels), "step": (5.0, _pixels), "steps": (3, _nonneg_int),
              "k_frac": (1000 / 3072, _fraction), "lam": (0.5, _nonneg),
              "pair_mining": (False, _boolean)}

    def attack(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The top-k alignment attack with this method's settings (x_adv, detached)."""
        hp = self.hparams
        k = max(1, int(round(hp["k_frac"] * x[0].numel())))
        return _topk_alignment_attack(model, x, y, units.linf(hp["eps"]), units.linf(hp["step"]),
                                      hp["steps"], k)

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        x_adv = self.attack(model, x, y)
        n = x.shape[0]
        if self.hparams["pair_mining"]:
            both = torch.cat([x.detach(), x_adv]).requires_grad_(True)
            logits, g_true, g_other = _true_and_other_grads(model, both, y.repeat(2), True)
            ce = F.cross_entropy(logits[n:], y)
            anchor = both.detach().flatten(1).view(2, 1, n, -1)
            d_pos = _cos_dist_pairs(anchor, g_true.flatten(1).view(1, 2, n, -1)).amax(1)
            d_neg = _cos_dist_pairs(anchor, g_other.flatten(1).view(1, 2, n, -1)).amin(1)
            triplet = F.softplus(d_pos - d_neg).mean()
        else:
            xa = x_adv.requires_grad_(True)
            logits, g_true, g_other = _true_and_other_grads(model, xa, y, True)
            ce = F.cross_entropy(logits, y)
            triplet = _soft_margin_triplet(xa.detach(), g_true, g_other).mean()
        penalty = self.hparams["lam"] * triplet
        return ce, penalty, {"ce_adv": _f(ce), "triplet": _f(triplet),
                             "penalty": _f(penalty)}


def _cos_dist_pairs(a, b):
    """Cosine distance along the last dim with broadcasting (used by IGA pair mining)."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=_COS_EPS)


class ATEX(Regularized):
    """Tang 2022 (ATEX): KL(teacher_T || student) on inputs along and orthogonal to the explanation.

    Per call: SmoothGrad (``smooth_n`` draws, std ``smooth_sigma``) of the true-class logit of
    the student (``explain_with="student"``, as the reference code) or the teacher; the
    direction is scaled to max |entry| = eps; ``n_shifts`` points x + c * direction,
    c in [-0.5, 0.5], each with ``n_orth`` draws of U[-eps, eps]^d noise made orthogonal to
    the direction.  Teacher soft labels softmax(g_T(x + c * direction) / temperature) are
    matched by the student at the noised points: KL, mean over the N * n_shifts * n_orth
    inputs.  As in the reference code the student's log-softmax is not tempered;
    ``temper_student=True`` uses Hinton's form (both at the temperature, times T^2).
    Defaults: the reference FashionMNIST run (11 shifts x 8 draws, T 4, SmoothGrad std 0.02
    and eps = 4 * 0.02 in input units, i.e. 5.1 and 20.4 in 0-255 units); reduce ``n_shifts``,
    ``n_orth``, ``smooth_n`` for CPU.  Differences from the reference, which are deliberate:
    one optimizer step per batch on all shifts at once (the reference steps once per shift,
    twice over), a symmetric grid of shifts (the reference's is (t - S/2)/(S - 1)), noise
    orthogonal to the whole direction (the reference projects per channel), KL averaged per
    input (the reference's ``KLDivLoss()`` also divides by the number of classes).
    The student should start from a copy of the teacher (the reference does).
    ``teacher`` (an nn.Module, put in eval mode) is kept out of ``hparams``; it is identified
    there by ``teacher_key``, by default a hash of its state_dict.  ``base`` is zero.
    """

    name = "atex"
    params = {"eps": (20.4, _pixels), "smooth_sigma": (5.1, _pixels), "smooth_n": (10, _pos_int),
              "n_shifts": (11, _pos_int), "n_orth": (8, _pos_int), "temperature": (4.0, _pos),
              "temper_student": (False, _boolean),
              "explain_with": ("student", _choice("student", "teacher")),
              "teacher_key": (None, _optional_key)}

    def __init__(self, teacher: nn.Module | None = None, **hparams: Any) -> None:
        if not isinstance(teacher, nn.Module):
            raise ValueError(f"atex: teacher={type(teacher).__name__} is not accepted; "
                             "expected a trained torch.nn.Module")
        if hparams.get("teacher_key") is None:
            hparams["teacher_key"] = _state_dict_key(teacher)
        super().__init__(**hparams)
        self.teacher = teacher.eval()

    def samples(self, model: torch.nn.Module, x: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_along, x_aug) of one call (see ``_atex_samples``)."""
        hp = self.hparams
        explainer = model if hp["explain_with"] == "student" else self.teacher
        with torch.enable_grad():
            direction = _smoothgrad(explainer, x, y, hp["smooth_n"], units.linf(hp["smooth_sigma"]))
        return _atex_samples(x.detach(), direction, units.linf(hp["eps"]), hp["n_shifts"], hp["n_orth"])

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        hp = self.hparams
        t = hp["temperature"]
        x_along, x_aug = self.samples(model, x, y)
        with torch.no_grad():
            p_teacher = F.softmax(self.teacher(x_along) / t, dim=1)
        s, r, n = hp["n_shifts"], hp["n_orth"], x.shape[0]
        p_teacher = p_teacher.view(s, 1, n, -1).expand(s, r, n, -1).reshape(s * r * n, -1)
        logits = model(x_aug)
        scale = t if hp["temper_student"] else 1.0
        logq = F.log_softmax(logits / scale, dim=1)
        kl = F.kl_div(logq, p_teacher, reduction="batchmean")
        if hp["temper_student"]:
            kl = kl * t * t
        base = kl.new_zeros(())
        return base, kl, {"kl": _f(kl), "penalty": _f(kl)}
