"""Adversarial training: training methods whose loss is the cross-entropy at an
attacked input.  ``at_pgd`` (Madry 2018; P2's robust model) and ``at_fgsm`` (Goodfellow 2015)
are ``regularizers.Regularized`` methods listed in ``methods.METHODS``.

P3 (norm-regularized adversarial training): ``one_step_perturbation(grad, mode, eps, ...)`` is
the closed-form maximiser of delta^T g - R*(delta) for the penalty R wanted on the gradient
map g: ``l1`` (R = eps ||g||_1: eps sign g), ``l2`` (R = eps ||g||_2: eps g /
||g||_2, the "vanilla l2" baseline of P3 Table 6), ``group`` (R = eps ||g||_{2,1}
over square patches per channel: eps g_S / ||g_S||), ``elastic`` (R = eps ||g||_1 + eps2
||g||_2^2: eps sign g + 2 eps2 g) and ``weighted_l2`` (P3 Prop. 4 for an attention map A:
its ``cub_train.py`` computes (eps - 2 eps A) g / ||g||_2 with the raw gaze map A,
``weighted_form="code"``; the supplement writes (eps max(A) - 2 eps A) g / ||g||_2,
``"text"``; they agree when max A = 1).  It works on the numbers it is given (the units of
``grad``'s space; no 0-255 conversion).

The attack runs on the model as it is during training (train mode), from the global RNG's
random start (``torch.manual_seed`` makes it repeatable; ``training.train`` seeds it), and
only input gradients are taken.  ``eps`` and ``alpha`` in 0-255 pixel units.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from . import attacks
from .common import check_group_size
from .regularizers import Regularized
from .models import leading_normalize
from .regularizers._checks import _boolean, _choice, _nonneg, _optional_key, _pixels, _pos_int, _real
from .regularizers.terms import _f

__all__ = ["ATPGD", "ATFGSM", "NormRegularizedAT", "GaussianNoise", "REGISTRY", "MODES", "one_step_perturbation",
           "group_norms"]

MODES = ("l1", "l2", "group", "elastic", "weighted_l2")
WEIGHTED_FORMS = ("code", "text")


def _number(name, v, positive=False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
        (v > 0 if positive else v >= 0)
    if not ok:
        raise ValueError(f"{name}={v!r} is not valid; accepted: a finite number {'>' if positive else '>='} 0")
    return float(v)


def group_norms(g: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each entry of ``g`` (N, C, H, W) replaced by the L2 norm of its group: the
    ``group_size`` x ``group_size`` patch of its channel that contains it (P3's groups; its code
    uses 14 x 14 on 224 x 224).  H and W must be multiples of ``group_size``."""
    if g.dim() != 4:
        raise ValueError(f"group mode needs image gradients (N, C, H, W); got shape {tuple(g.shape)}")
    n, c, h, w = g.shape
    s = check_group_size(group_size, h, w)
    norms = g.pow(2).view(n, c, h // s, s, w // s, s).sum((3, 5)).sqrt()
    return norms[:, :, :, None, :, None].expand(n, c, h // s, s, w // s, s).reshape(n, c, h, w)


def one_step_perturbation(grad: torch.Tensor, mode: str, eps: float, eps2: float | None = None,
                          group_size: int | None = None,
                          attention: torch.Tensor | None = None,
                          weighted_form: str = "code") -> torch.Tensor:
    """P3's one-step perturbation delta* for the gradient ``grad`` of the loss (per sample, first
    dimension = batch): the maximiser of delta^T grad - R*(delta) (module docstring).

    ``mode``: ``l1`` (eps sign g), ``l2`` (eps g / ||g||_2 per sample; 0 for a zero gradient),
    ``group`` (eps g_S / ||g_S||_2 per ``group_size`` patch of
    each channel; 0 where a group's gradient is 0), ``elastic`` (eps sign g + 2 ``eps2`` g; P3's
    supplement prints the second term twice, its code once), ``weighted_l2`` ((eps - 2 eps A)
    g / ||g||_2 as ``cub_train.py``, ``weighted_form="code"``; (eps max(A) - 2 eps A) g /
    ||g||_2 as the supplement, ``"text"``; A = ``attention`` broadcast to g, max and norm per
    sample).

    Parameters
    ----------
    grad : torch.Tensor
        (N, ...) loss gradient; (N, C, H, W) for ``group``.
    mode : str
        One of ``MODES``.
    eps, eps2 : float
        Budgets in the units of ``grad``'s space (no 0-255 conversion); ``eps2`` for ``elastic``.
    group_size : int, optional
        Side of the square groups (``group``); must divide H and W.
    attention : torch.Tensor, optional
        Attention map A broadcastable to ``grad`` (``weighted_l2``).
    weighted_form : str
        ``"code"`` (default, P3's ``cub_train.py``) or ``"text"`` (the supplement's max A term).

    Returns
    -------
    torch.Tensor
        delta*, detached, same shape as ``grad``.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not known; accepted: {list(MODES)}")
    eps = _number("eps", eps)
    g = grad.detach()
    view = (-1,) + (1,) * (g.dim() - 1)
    if mode == "l1":
        return eps * g.sign()
    if mode == "l2":
        return eps * g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(view)
    if mode == "group":
        norms = group_norms(g, group_size)
        return torch.where(norms > 0, eps * g / norms.clamp_min(1e-30), torch.zeros_like(g))
    if mode == "elastic":
        if eps2 is None:
            raise ValueError("mode='elastic' needs eps2 (the weight of ||g||_2^2); accepted: a number >= 0")
        return eps * g.sign() + 2 * _number("eps2", eps2) * g
    if weighted_form not in WEIGHTED_FORMS:
        raise ValueError(f"weighted_form={weighted_form!r} is not known; accepted: {list(WEIGHTED_FORMS)}")
    if attention is None:
        raise ValueError("mode='weighted_l2' needs attention (an attention map broadcastable to grad)")
    a = torch.as_tensor(attention, dtype=g.dtype, device=g.device)
    try:
        a = a.expand_as(g)
    except RuntimeError:
        raise ValueError(f"attention of shape {tuple(a.shape)} does not broadcast to grad of shape "
                         f"{tuple(g.shape)}") from None
    a_max = a.flatten(1).amax(1).view(view) if weighted_form == "text" else 1.0
    unit = g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(view)
    return (eps * a_max - 2 * eps * a) * unit


class ATPGD(Regularized):
    """PGD adversarial training (Madry 2018): CE(f(x_adv), y), x_adv = linf PGD of ``steps``
    steps of size ``alpha`` in the ``eps`` ball with a random start (defaults: Madry's CIFAR
    setting, eps 8, alpha 2, 7 steps)."""

    name = "at_pgd"
    params = {"eps": (8.0, _pixels), "alpha": (2.0, _pixels), "steps": (7, _pos_int)}

    def attack(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        return attacks.pgd(model, x, y, hp["eps"], alpha=hp["alpha"], steps=hp["steps"])

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(model(self.attack(model, x, y)), y)
        return ce, ce.new_zeros(()), {"ce_adv": _f(ce)}


class ATFGSM(ATPGD):
    """FGSM adversarial training (Goodfellow 2015): CE(f(x + eps sign(grad_x CE)), y)."""

    name = "at_fgsm"
    params = {"eps": (8.0, _pixels)}

    def attack(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attacks.fgsm(model, x, y, self.hparams["eps"])


def _space(model, space):
    """(sigma per channel, view) of the space P3's perturbation lives in: the model's normalized
    input (``space="normalized"``, the released code: it trains on normalized images) or [0, 1]
    pixels (``"pixel"``, or a model without a leading ``Normalize``)."""
    norm = leading_normalize(model) if space == "normalized" else None
    return None if norm is None else norm.std


def _scaled(t, std):
    return t if std is None else t * std.to(t.dtype).view(1, -1, *([1] * (t.dim() - 2)))


class NormRegularizedAT(Regularized):
    """P3's norm-regularized adversarial training: CE(f(x + delta*), y) with delta* the one-step
    (``training="fast"``, the released code's default) or iterative maximiser for the penalty of
    ``mode`` (``one_step_perturbation``), as P3's ``imagenet_train.py`` computes it.  Also P3's
    supplement variants (no released code): ``training="mifgsm"`` (C.2.3, l1 only: ``mi_steps``
    momentum sign steps of eps / mi_steps, decay ``decay``, Dong 2018) and ``training="free"``
    (C.2.2, Shafahi 2019: each batch is replayed ``replays`` times; one backward pass gives
    the weights' and the perturbation's gradients, and the perturbation, kept across steps,
    moves by ``one_step_perturbation`` of its gradient and is projected back (l1: the eps box;
    group: the group balls); l1 and group only).

    The gradient is that of the summed cross-entropy (each sample's own loss; the code scales
    the mean by the batch size) taken w.r.t. the model's *normalized* input
    (``space="normalized"``: grad_z = sigma * grad_x), and the perturbation is made there, so
    ``eps`` and ``eps2`` are in P3's units (its default eps 0.01 of a unit-variance input);
    ``space="pixel"`` works on [0, 1] pixels.  The perturbed input is not clipped, as the code
    (``imagenet_train.py`` and ``cub_train.py`` add delta to the normalized image and train on
    it); ``clip=True`` clips x + delta to [0, 1] pixels (the model's input; a leading
    ``Normalize`` maps it on).  ``iterative``: 7 steps, as the
    code: l1 sign steps of 0.3 eps projected to the eps box; elastic normalized-gradient steps
    of 0.3 on CE - ||relu(|delta| - eps)||^2 / (4 eps2) (no projection, as the code); group unit
    normalized-gradient steps projected onto the group balls; ``init="zero"`` as the code,
    ``"one_step"`` starts from the one-step solution (the text, B.4).

    ``mode="l2"`` (P3 Table 6's "vanilla l2" baseline: eps g / ||g||_2) and ``mode="weighted_l2"``
    (P3's harmonization, Prop. 4, as its ``cub_train.py``: (eps - 2 eps A) g / ||g||_2 with A the
    raw attention map; ``weighted_form="text"``: the supplement's (eps max(A) - 2 eps A)) are
    one-step only.  ``cub_train.py`` trains on un-normalized [0, 1] images, so its perturbation
    lives in pixels (``space="pixel"``).  ``weighted_l2`` reads A per batch from the training
    set's extra named ``attention_key`` (e.g. ``"gaze"``, (N, 1, H, W), values in [0, 1]; uint8
    maps are divided by 255): the training loop passes it (``extras``).
    """

    name = "norm_regularized_at"
    params = {"mode": ("l1", _choice("l1", "l2", "group", "elastic", "weighted_l2")), "eps": (0.01, _nonneg),
              "eps2": (0.0, _nonneg), "group_size": (2, _pos_int),
              "training": ("fast", _choice("fast", "iterative", "mifgsm", "free")),
              "space": ("normalized", _choice("normalized", "pixel")),
              "init": ("zero", _choice("zero", "one_step")), "mi_steps": (10, _pos_int),
              "decay": (1.0, _real), "replays": (4, _pos_int), "attention_key": ("gaze", _optional_key),
              "clip": (False, _boolean), "weighted_form": ("code", _choice(*WEIGHTED_FORMS))}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        hp = self.hparams
        if hp["mode"] in ("l2", "weighted_l2") and hp["training"] != "fast":
            raise ValueError(f"norm_regularized_at: mode={hp['mode']!r} is one-step only; accepted: "
                             f"training='fast' (got training={hp['training']!r})")
        if hp["training"] in ("mifgsm", "free") and hp["mode"] not in (("l1",) if hp["training"] == "mifgsm"
                                                                       else ("l1", "group")):
            raise ValueError(f"norm_regularized_at: training={hp['training']!r} supports mode "
                             f"{'l1' if hp['training'] == 'mifgsm' else 'l1 or group'}; got mode={hp['mode']!r}")
        self._delta = None  # free training: the perturbation carried across steps (normalized space)

    @property
    def extras(self) -> tuple[str, ...]:
        """The training set's per-sample extras the loss needs: the attention map for ``weighted_l2``."""
        return (self.hparams["attention_key"],) if self.hparams["mode"] == "weighted_l2" else ()

    @property
    def replays(self) -> int:
        """Optimizer steps per batch (``training.train``): ``replays`` for free training, else 1."""
        return self.hparams["replays"] if self.hparams["training"] == "free" else 1

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """Free training's carried perturbation and the gradient the last backward pass left on
        it (the next step moves along that gradient, so a resume needs both)."""
        d = self._delta
        return {"delta": None if d is None else d.detach().clone(),
                "delta_grad": None if d is None or d.grad is None else d.grad.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor | None]) -> None:
        d = state.get("delta")
        if d is not None:
            d = d.detach().clone().requires_grad_(True)
            if state.get("delta_grad") is not None:
                d.grad = state["delta_grad"].detach().clone()
        self._delta = d

    def _grad(self, model, x_adv, y, std):
        with torch.enable_grad():
            xa = x_adv.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
        return _scaled(g, std)  # d/dz = sigma * d/dx

    def attack(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               attention: torch.Tensor | None = None) -> torch.Tensor:
        """x + delta* (clipped to [0, 1] with ``clip``); ``attention``: the map A of ``weighted_l2``."""
        hp = self.hparams
        if hp["mode"] == "weighted_l2":
            if attention is None:
                raise ValueError("norm_regularized_at: mode='weighted_l2' needs the attention map (the "
                                 f"training set's extra {hp['attention_key']!r}, passed by the training loop)")
            attention = attention.to(x.dtype) / 255.0 if attention.dtype == torch.uint8 else attention.to(x.dtype)
        if hp["mode"] == "elastic" and hp["training"] == "iterative" and hp["eps2"] <= 0:
            raise ValueError("norm_regularized_at: mode='elastic', training='iterative' needs eps2 > 0")
        std = _space(model, hp["space"])
        x = x.detach()
        if hp["training"] == "mifgsm":
            return self._clip(x + _scaled(self._mifgsm(model, x, y, std), std)).detach()
        if hp["training"] == "fast":
            dz = one_step_perturbation(self._grad(model, x, y, std), hp["mode"], hp["eps"],
                                       eps2=hp["eps2"], group_size=hp["group_size"], attention=attention,
                                       weighted_form=hp["weighted_form"])
        else:
            dz = self._iterate(model, x, y, std)
        return self._clip(x + _scaled(dz, std)).detach()

    def _clip(self, x_adv):
        return x_adv.clamp(0.0, 1.0) if self.hparams["clip"] else x_adv

    def _project(self, dz):
        hp, eps = self.hparams, self.hparams["eps"]
        if hp["mode"] == "l1":
            return dz.clamp(-eps, eps)
        norms = group_norms(dz, hp["group_size"])
        return dz * torch.where(norms > eps, eps / norms.clamp_min(1e-30), torch.ones_like(norms))

    def _mifgsm(self, model, x, y, std):
        hp, eps = self.hparams, self.hparams["eps"]
        dz, mom = torch.zeros_like(x), torch.zeros_like(x)
        view = (-1,) + (1,) * (x.dim() - 1)
        for _ in range(hp["mi_steps"]):
            g = self._grad(model, x + _scaled(dz, std), y, std)
            mom = hp["decay"] * mom + g / g.abs().flatten(1).sum(1).clamp_min(1e-30).view(view)
            dz = (dz + eps / hp["mi_steps"] * mom.sign()).clamp(-eps, eps)
        return dz.detach()

    def _iterate(self, model, x, y, std):
        hp, eps = self.hparams, self.hparams["eps"]
        dz = torch.zeros_like(x)
        if hp["init"] == "one_step":
            dz = one_step_perturbation(self._grad(model, x, y, std), hp["mode"], eps, eps2=hp["eps2"],
                                       group_size=hp["group_size"])
        view = (-1,) + (1,) * (x.dim() - 1)
        for _ in range(7):
            xa = x + _scaled(dz, std)
            if hp["mode"] == "l1":
                dz = (dz + 0.3 * eps * self._grad(model, xa, y, std).sign()).clamp(-eps, eps)
            elif hp["mode"] == "elastic":
                with torch.enable_grad():
                    d = dz.detach().requires_grad_(True)
                    loss = F.cross_entropy(model(x + _scaled(d, std)), y, reduction="sum") \
                        - torch.relu(d.abs() - eps).pow(2).sum() / (4 * hp["eps2"])
                    (g,) = torch.autograd.grad(loss, d)
                dz = dz + 0.3 * g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(view)
            else:
                g = self._grad(model, xa, y, std)
                dz = self._project(dz + g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(view))
        return dz.detach()

    def _free_terms(self, model, x, y):
        """One free step: move the kept perturbation by the gradient the last backward pass left
        on it, then return CE at x + delta with delta a leaf, so this step's backward fills both."""
        hp, std = self.hparams, _space(model, self.hparams["space"])
        d = self._delta
        if d is not None and d.device != x.device:  # restored from a checkpoint (kept on the CPU)
            grad, d = d.grad, d.detach().to(x.device).requires_grad_(True)
            d.grad = None if grad is None else grad.to(x.device)
        if d is None or d.shape != x.shape:
            d = torch.zeros_like(x)
        elif d.grad is not None:
            step = one_step_perturbation(d.grad, hp["mode"], hp["eps"], group_size=hp["group_size"])
            d = self._project(d.detach() + step)
        self._delta = d.detach().requires_grad_(True)
        x_adv = x.detach() + _scaled(self._delta, std)
        if self.hparams["clip"]:
            x_adv = x_adv + ((x_adv.clamp(0.0, 1.0) - x_adv).detach())  # in [0, 1], gradient kept
        ce = F.cross_entropy(model(x_adv), y)
        return ce, ce.new_zeros(()), {"ce_adv": _f(ce)}

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              **extras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        if self.hparams["training"] == "free":
            return self._free_terms(model, x, y)
        ce = F.cross_entropy(model(self.attack(model, x, y, extras.get(self.hparams["attention_key"]))), y)
        return ce, ce.new_zeros(()), {"ce_adv": _f(ce)}


class GaussianNoise(Regularized):
    """Gaussian-noise augmentation (P3 C.2.1's comparison): CE(f(clip(x + N(0, sigma^2))), y),
    ``sigma`` in 0-255 pixel units (units.linf), drawn from the global RNG."""

    name = "gaussian_noise"
    params = {"sigma": (8.0, _pixels)}

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        noisy = (x + torch.randn_like(x) * self.hparams["sigma"] / 255.0).clamp(0.0, 1.0)
        ce = F.cross_entropy(model(noisy), y)
        return ce, ce.new_zeros(()), {"ce_noisy": _f(ce)}


REGISTRY = {m.name: m for m in (ATPGD, ATFGSM, NormRegularizedAT, GaussianNoise)}
