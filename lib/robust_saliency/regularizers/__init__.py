"""Saliency-robustness regularizers and the training methods built on them (P1, P4 and their
baselines).

Modules: ``terms`` (functional terms), ``base`` (``Regularized``), ``alignment`` (P1's
criteria and the Hessian penalty), ``baselines`` (the other baselines), ``density`` (P4's
marginal density and its baselines), ``_checks`` (hyperparameter checks).  Two layers:

* Functional terms, batched, per sample, differentiable w.r.t. the weights:
  ``gradient_alignment_terms`` (P1 Gamma_l2 and Gamma_cos, Def. 4), ``hessian_vector_product``
  and ``cosd_upper_bound`` (P1 Theorem 6 / Fig. 3b); ``marginal_density_grad`` (P4 Eq. 4-6,
  grad_x log sum_i exp g_i(x), variants ``DENSITY_VARIANTS`` = basic, stable, efficient, basic_max;
  random_class is grad_x g_i of a random class, a labelled reading of Eq. 5, not that gradient) and
  ``hessian_trace_estimate`` (Srinivas and Fleuret 2021's finite-difference tr(H)).
* Training methods, ``Method`` subclasses listed by name in ``REGISTRY`` (and, with ``ce``, in
  ``methods.METHODS``):
  ``l2``, ``cosd``, ``l2_cosd`` (P1 Eq. 5), ``hessian`` (Dombrowski 2022), ``maxent``,
  ``input_grad`` (Ross and Doshi-Velez 2018), ``iga`` (Singh 2020), ``atex`` (Tang 2022);
  ``marginal_density`` (P4 Eq. 4), ``score_matching`` (Srinivas and Fleuret 2021), ``cure``
  (Moosavi-Dezfooli 2019).  ``GroupDRO`` (Sagawa 2020; group-weighted CE composed with an inner
  method, reads the training set's ``groups``) is exported but not in ``REGISTRY``: it wraps
  other methods, so ``methods`` (above this package and adversarial training) builds it by name.

``get(name, **hparams)`` (``REGISTRY.get``, the same lookup as ``methods.get``) returns the
method instance: ``method(model, x, y) -> (loss, logs)`` with ``loss = base + penalty`` and
``logs`` a dict of floats, and ``method.penalty(model, x, y) -> scalar Tensor`` is the weighted
regularization term alone.  ``base`` is the cross-entropy on the clean batch except for
``iga`` (cross-entropy at the adversarial input) and ``atex`` (zero: the loss is all
distillation).  ``method.terms(model, x, y)`` returns ``(base, penalty, logs)``.

Conventions: ``x`` in [0, 1] (the model normalizes), ``eps``, step sizes and noise levels in
0-255 pixel units (``units.linf``: a number in [0, 255], converted with ``/ 255``).
Random draws (delta, v, attack starts, SmoothGrad noise) use
the global torch generator, so ``torch.manual_seed`` before a call makes it repeatable; the
alignment methods also take ``delta=``, ``hessian`` and ``score_matching`` take ``v=`` and
``marginal_density`` takes ``classes=`` to fix the draw (a method's ``draws`` lists them).
The per-sample input gradients are taken as the gradient of the sum over the batch, which is
exact when samples do not interact (eval mode, or no BatchNorm); in train mode with
BatchNorm this includes cross-sample terms, as in the P1 reference code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Registry
from .alignment import L2, CosD, Hessian, L2CosD
from .base import Regularized
from .baselines import ATEX, IGA, InputGrad, MaxEnt
from .density import VARIANTS as DENSITY_VARIANTS
from .density import (Cure, GroupDRO, MarginalDensity, ScoreMatching, hessian_trace_estimate,
                      marginal_density_grad)
from .terms import cosd_upper_bound, gradient_alignment_terms, hessian_vector_product

if TYPE_CHECKING:
    from ..training import Method

__all__ = ["REGISTRY", "NAMES", "get", "Regularized", "L2", "CosD", "L2CosD", "Hessian", "MaxEnt",
           "InputGrad", "IGA", "ATEX", "gradient_alignment_terms", "hessian_vector_product",
           "cosd_upper_bound", "MarginalDensity", "ScoreMatching", "Cure", "GroupDRO",
           "marginal_density_grad", "hessian_trace_estimate", "DENSITY_VARIANTS"]

REGISTRY = Registry("regularizer", {cls.name: cls for cls in
                                    (L2, CosD, L2CosD, Hessian, MaxEnt, InputGrad, IGA, ATEX,
                                     MarginalDensity, ScoreMatching, Cure)})
NAMES = REGISTRY.names


def get(name: str, **hparams: Any) -> Method:
    """Training method ``name`` with its hyperparameters: ``fn(model, x, y) -> (loss, logs)``.

    The returned ``Method`` also has ``.penalty(model, x, y) -> scalar Tensor``, the
    regularization term alone, and ``.terms``.
    """
    return REGISTRY.get(name, **hparams)
