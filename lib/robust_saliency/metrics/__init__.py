"""Metrics: ``get(name, **hp)`` -> a ``Metric`` with its metadata.

Every metric has a ``kind``, which fixes its call shape (the data arguments; everything else
is a hyperparameter that ``get`` can bind):

=============  =============================  ==========================================
kind           call                           metrics
=============  =============================  ==========================================
similarity     ``(a, b) -> (N,)``             cosine, pcc, ssim, ssim_p1, spearman, topk_intersection
concentration  ``(maps[, masks]) -> (N,)``    gini, group_gini (``group_size`` a hyperparameter),
                                              top_mass, object_share
robustness     ``(model, x, y) -> (N,)``      rps (``attribution``, ``eps`` are hyperparameters)
game           ``(model, x, y, maps) -> (N,)`` insertion, adv_insertion, deletion, preservation,
                                              retrieval_rate, aopc_mofr, pixel_perturbation
accuracy       ``(model, data)`` etc. -> float  accuracy, adversarial_accuracy, worst_group_accuracy
density        ``(model, x, y) -> (N, S)``    relative_gradient_change (``sigmas`` bound by get);
               (P4; the others as listed)     relative_density_change ``(model, x) -> (N, S)``,
                                              feature_leakage ``(model, x, y, null_mask) -> (N,)``,
                                              ood_auroc ``(model, x_in, x_out) -> float``
=============  =============================  ==========================================

``pixel_perturbation`` (P4 Fig. 6a) is a game: its entry is ``pixel_perturbation_score``, the
mean over fractions of the top-minus-bottom change; ``pixel_perturbation`` itself returns the
curves.

``Metric.higher_is_better`` says which direction is better (``HIGHER_IS_BETTER`` is the same,
as a dict); ``Metric.units`` what the value is.  Modules: ``similarity``, ``concentration``,
``robustness``, ``games``, ``accuracy``, ``density`` (P4's probes).  ``eps`` of ``rps`` is in
0-255 pixel units (``units.linf``).  What attacks a model (``saliency_report``,
``attribution_scores``) lives a layer above, in ``evaluation``; this package only scores maps
and models it is given.
"""
from __future__ import annotations

from typing import Any

from ..registry import Configured, Registry
from .accuracy import accuracy, adversarial_accuracy, worst_group_accuracy
from .concentration import gini, group_gini, object_share, top_mass
from .density import (feature_leakage, ood_auroc, pixel_perturbation, pixel_perturbation_score,
                      relative_density_change, relative_gradient_change)
from .games import (adv_insertion_curve, adv_insertion_score, deletion_curve, deletion_score,
                    aopc_mofr, explanation, explanation_probs, insertion_curve, insertion_images,
                    insertion_score, normalized_zero, preservation_curve, preservation_score, removed_images,
                    retrieval_rate)
from .robustness import rps
from .similarity import cosine, pcc, spearman, ssim, ssim_p1, topk_intersection

__all__ = ["Metric", "REGISTRY", "NAMES", "HIGHER_IS_BETTER", "KINDS", "get", "cosine", "pcc",
           "ssim", "ssim_p1", "spearman", "topk_intersection", "gini", "group_gini", "top_mass", "object_share", "rps",
           "insertion_images", "insertion_curve", "insertion_score", "adv_insertion_curve",
           "adv_insertion_score", "deletion_curve", "deletion_score", "preservation_curve",
           "preservation_score", "explanation", "explanation_probs", "retrieval_rate", "aopc_mofr", "removed_images", "normalized_zero", "accuracy", "adversarial_accuracy", "worst_group_accuracy",
           "feature_leakage", "ood_auroc", "pixel_perturbation", "pixel_perturbation_score",
           "relative_gradient_change", "relative_density_change"]


class Metric(Configured):
    """A metric with its hyperparameters bound; ``kind`` fixes the call shape (module docstring)."""


# kind -> number of data arguments; the (name, fn, n_args) overrides are the exceptions.
KINDS = {"similarity": 2, "concentration": 1, "robustness": 3, "game": 4, "accuracy": 2, "density": 3}
_N_ARGS = {"object_share": 2, "adversarial_accuracy": 3, "worst_group_accuracy": 3,
           "feature_leakage": 4, "relative_density_change": 2}


def _metric(name, fn, kind, units, higher_is_better=True):
    return Metric(name, fn, _N_ARGS.get(name, KINDS[kind]), kind=kind, units=units,
                  higher_is_better=higher_is_better)


_GAME = "area under the target-class probability curve over the fractions, in [0, 1]"
REGISTRY = Registry("metric", {m.name: m for m in (
    _metric("cosine", cosine, "similarity", "cosine similarity, in [-1, 1]"),
    _metric("pcc", pcc, "similarity", "Pearson correlation, in [-1, 1]"),
    _metric("ssim", ssim, "similarity", "structural similarity, in [-1, 1]"),
    _metric("ssim_p1", ssim_p1, "similarity", "structural similarity, P1's code's window, in [-1, 1]"),
    _metric("spearman", spearman, "similarity", "rank correlation, in [-1, 1]"),
    _metric("topk_intersection", topk_intersection, "similarity", "shared share of the top k, in [0, 1]"),
    _metric("gini", gini, "concentration", "Gini index of |map|, in [0, 1]"),
    _metric("group_gini", group_gini, "concentration",
            "Gini index of the L2 norms of group_size x group_size patches (all channels), in [0, 1]"),
    _metric("top_mass", top_mass, "concentration", "share of |map| in the top positions, in [0, 1]"),
    _metric("object_share", object_share, "concentration", "share of |map| inside the mask, in [0, 1]"),
    _metric("rps", rps, "robustness", "mean similarity of noisy and clean maps"),
    _metric("insertion", insertion_score, "game", _GAME),
    _metric("adv_insertion", adv_insertion_score, "game", _GAME),
    _metric("deletion", deletion_score, "game", _GAME, higher_is_better=False),
    _metric("preservation", preservation_score, "game", _GAME),
    _metric("accuracy", accuracy, "accuracy", "share of correct top-1 predictions"),
    _metric("adversarial_accuracy", adversarial_accuracy, "accuracy", "accuracy on attacked inputs"),
    _metric("worst_group_accuracy", worst_group_accuracy, "accuracy", "lowest per-group accuracy"),
    _metric("retrieval_rate", retrieval_rate, "game", "1 where the explanation keeps class y, else 0"),
    _metric("aopc_mofr", aopc_mofr, "game", "mean drop of p_y as the most relevant pixels go, in [-1, 1]"),
    _metric("pixel_perturbation", pixel_perturbation_score, "game",
            "mean over fractions of the top-k minus bottom-k change: fractional change of the target logit "
            "(form='fractional_logit', P4's) or absolute change of its log-softmax (form='log_prob')"),
    _metric("feature_leakage", feature_leakage, "density",
            "Frobenius norm of the IG map on the null block, logit units (P4 sums over samples)",
            higher_is_better=False),
    _metric("ood_auroc", ood_auroc, "density",
            "AUROC of in- (positive) vs out-of-distribution by the score, in [0, 1], 0.5 = chance"),
    _metric("relative_gradient_change", relative_gradient_change, "density",
            "||grad g_y(x + delta) - grad g_y(x)||_2 / ||grad g_y(x)||_2 per sigma, >= 0",
            higher_is_better=False),
    _metric("relative_density_change", relative_density_change, "density",
            "|Z(x + delta) / Z(x) - 1| per sigma, >= 0 (form 'printed': sum_i exp of the logit "
            "changes, C at delta = 0)", higher_is_better=False),
)})
NAMES = REGISTRY.names
HIGHER_IS_BETTER = {name: REGISTRY.entry(name).higher_is_better for name in NAMES}


def get(name: str, **hparams: Any) -> Metric:
    """The ``Metric`` called ``name`` (one of ``NAMES``) with ``hparams`` bound."""
    return REGISTRY.get(name, **hparams)
