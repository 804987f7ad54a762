"""P1's robust criteria ``l2``, ``cosd``, ``l2_cosd`` (Eq. 4-5) and the Hessian penalty it
compares with (Dombrowski 2022; P1 Eq. 3).

``form`` says what a hyperparameter means: P1's released code (RobustAGA) feeds its
models the normalized input (x - mu)/sigma and differentiates w.r.t. it, squares the l2 term,
takes cosine similarities with torch's eps 1e-8 and draws Hutchinson's v in normalized space;
the paper prints unsquared l2 in pixel space.  ``form="reference_code"`` reproduces the released
step's loss for the same pixel-space delta (gradients scaled by the leading ``Normalize``'s std;
identical to ``"paper"``'s space for a model without one); ``form="paper"`` follows the printed
formulas.  The same lambda is a much stronger or weaker penalty in the other form (Hessian:
about sigma^-4).  ``gradient_alignment_terms`` keeps the paper's Gamma definitions (Def. 4).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._checks import _boolean, _choice, _nonneg, _pixels, _squared
from .base import Regularized
from .terms import (_REFERENCE_COS_EPS, _alignment, _f, _logits_and_input_grad, _uniform_delta,
                    FORMS, input_scale)

_COS_EPS_OF = {"paper": None, "reference_code": _REFERENCE_COS_EPS}
_FORM = ("reference_code", _choice(*FORMS))  # P1's lambdas mean what they mean in its code


class _GradientAlignment(Regularized):
    """Shared code of ``l2``, ``cosd`` and ``l2_cosd`` (P1 Eq. 4-5).

    The step is P1's released one (RobustAGA ``LitL2PlusCosdClassifier.default_step``): a clean
    forward and input gradient (without ``create_graph`` when it is detached), delta drawn after
    them as the released step draws it, a forward and input gradient with ``create_graph`` at
    x + delta.  For the same RNG state the loss and parameter gradients equal the released
    step's up to rounding (``benchmarks/alignment_step_cost.py`` checks and times the two side by
    side: x1.0 time, x1.0 graph memory).  What the graph holds until the caller's backward (both
    forwards and the perturbed input-gradient graph) is the least a loss differentiated later can
    hold.  A single forward over ``torch.cat([x, x + delta])`` is not used: the double backward
    then runs over both halves, x1.3 time and graph memory on P1's LeNet at batch 64 on a CPU.
    """

    draws = ("delta",)

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        if self.hparams.get("squared") == "form":  # resolved here, so equal settings hash equal
            self.hparams["squared"] = self.hparams["form"] == "reference_code"

    def _weights(self):
        raise NotImplementedError

    def sample_delta(self, x: torch.Tensor) -> torch.Tensor:
        """delta ~ U[-eps, eps]^d (eps/255 in input units), once per sample (P1 Eq. 5)."""
        return _uniform_delta(x, self.hparams["eps"])

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              delta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        hp = self.hparams
        detach = hp["detach_clean"]
        logits, g0 = _logits_and_input_grad(model, x, y, create_graph=not detach)
        if detach:
            g0 = g0.detach()
        ce = F.cross_entropy(logits, y)
        if delta is None:  # drawn after the clean pass, as the released step draws it
            delta = self.sample_delta(x)
        _, g1 = _logits_and_input_grad(model, x + delta, y, create_graph=True)
        scale = input_scale(model, x, hp["form"])
        if scale is not None:
            g0, g1 = g0 * scale, g1 * scale
        l2, cosd = _alignment(g0, g1, squared=hp.get("squared", False),
                              **({"cos_eps": _COS_EPS_OF[hp["form"]]} if _COS_EPS_OF[hp["form"]] else {}))
        w_l2, w_cos = self._weights()
        penalty = w_l2 * l2.mean() + w_cos * cosd.mean()
        logs = {"ce": _f(ce), "l2": _f(l2.mean()), "cosd": _f(cosd.mean()),
                "penalty": _f(penalty)}
        return ce, penalty, logs


class L2(_GradientAlignment):
    """P1 l2 robust criterion: CE + lam * E ||grad g_y(x+delta) - grad g_y(x)||_2 (Sec. 3.2).

    ``form`` (module docstring): ``"reference_code"`` or ``"paper"``; ``squared`` squares the
    norm (``"form"``: as the form, i.e. squared for the reference code, whose form squares it);
    ``detach_clean=True`` treats grad g_y(x) as a constant (P1 "Training details").
    """

    name = "l2"
    params = {"eps": (4.0, _pixels), "lam": (0.01, _nonneg), "form": _FORM,
              "squared": ("form", _squared), "detach_clean": (True, _boolean)}

    def _weights(self):
        return self.hparams["lam"], 0.0


class CosD(_GradientAlignment):
    """P1 Eq. 4: CE + lam * E Gamma_cos, Gamma_cos = (1 - cossim(grad g_y(x+delta), grad g_y(x)))/2."""

    name = "cosd"
    params = {"eps": (4.0, _pixels), "lam": (1.0, _nonneg), "form": _FORM,
              "detach_clean": (True, _boolean)}

    def _weights(self):
        return 0.0, self.hparams["lam"]


class L2CosD(_GradientAlignment):
    """P1 Eq. 5 (the proposed method): CE + E[lam_l2 * Gamma_l2 + lam_cos * Gamma_cos].

    Defaults: the CIFAR-10 LeNet setting (eps 4, lam_l2 0.01, lam_cos 1.0); ``squared`` and
    ``detach_clean`` as in ``l2``.
    """

    name = "l2_cosd"
    params = {"eps": (4.0, _pixels), "lam_l2": (0.01, _nonneg), "lam_cos": (1.0, _nonneg),
              "form": _FORM, "squared": ("form", _squared), "detach_clean": (True, _boolean)}

    def _weights(self):
        return self.hparams["lam_l2"], self.hparams["lam_cos"]


class Hessian(Regularized):
    """Dombrowski 2022: CE + lam * mean ||H_{g_y}(x) v||^2, v ~ N(0, I) (Hutchinson ||H||_F^2).

    ``form="reference_code"``: H and v in the normalized input space of the model's leading
    ``Normalize`` (H_n v = sigma * H_x (sigma * v)), as P1's released code; ``"paper"``: pixels.
    """

    name = "hessian"
    params = {"lam": (1e-3, _nonneg), "form": _FORM}
    draws = ("v",)

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        xr = x.detach().requires_grad_(True)
        if v is None:
            v = torch.randn_like(x)
        logits, g = _logits_and_input_grad(model, xr, y, create_graph=True)
        ce = F.cross_entropy(logits, y)
        scale = input_scale(model, x, self.hparams["form"])
        if scale is not None:
            v = v * scale
        (hv,) = torch.autograd.grad((g * v).sum(), xr, create_graph=True)
        if scale is not None:
            hv = hv * scale
        hess = hv.pow(2).flatten(1).sum(1).mean()
        penalty = self.hparams["lam"] * hess
        return ce, penalty, {"ce": _f(ce), "hess": _f(hess), "penalty": _f(penalty)}
