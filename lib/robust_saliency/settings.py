"""The notebooks' parameters, each declared once: its type, its unit and what it sets.

A notebook's parameters come from three layers (``profiles``): the generic profile, the
notebook's YAML beside it, and its parameters cell.  This module declares every parameter a
notebook accepts (``schema(notebook)``: ``{name: Param}``); ``profiles.validate`` checks each
value against its declaration, field by field, and rejects a name the notebook does not declare
(a typo stops the notebook before any work instead of being ignored).  Nothing here is guessed
from a parameter's name: an L-infinity budget is declared ``linf`` (0-255 pixel units), an L2
budget ``l2`` (input units), a list of method names ``names("method")``.

Notebook 04 has three parts (block, spurious, shapes) with their own data and network: their
parameters are declared once (``PART``, plus each part's own) and written ``<part>_<name>``
(``papers.p4.section`` reads a part's settings back without the prefix).  Notebook 05 has two
(block, spurious: ``UNIFIED_PARTS``), written the same way.

``describe(notebook)`` lists a notebook's parameters with their type, unit and meaning.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import attacks, attributions, data, metrics, models, units
from . import methods as _methods

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Param", "GENERIC", "TRAINING", "PART", "PARTS", "UNIFIED_PARTS", "NOTEBOOK_PARTS", "NOTEBOOKS", "schema", "check", "describe",
           "accepted_names", "Settings", "settings_class", "build"]

_REGISTRIES = {"dataset": data.NAMES, "model": models.NAMES, "method": _methods.NAMES,
               "attribution": attributions.NAMES, "metric": metrics.NAMES, "attack": attacks.NAMES}


def accepted_names(kind: str) -> tuple[str, ...]:
    """The names accepted for ``kind`` (dataset, model, method, attribution, metric, attack)."""
    return tuple(_REGISTRIES[kind])


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` (its type, as the error messages say it), ``unit`` ("" for none),
    ``doc`` (what it sets), ``ok(value) -> bool`` and ``none`` (None accepted: "the default" /
    "all" / "unused", as ``doc`` says)."""

    kind: str
    unit: str
    doc: str
    ok: Callable[[Any], bool]
    none: bool = False
    names_of: str | None = None  # the registry whose names the value holds (names())

    def check(self, key: str, value: Any) -> None:
        """Raise ValueError naming ``key``, ``value`` and what is accepted, unless ``value`` fits."""
        if value is None and self.none:
            return
        if not self.ok(value):
            unit = f" ({self.unit})" if self.unit else ""
            none = " or None" if self.none else ""
            bad = ""
            if self.names_of is not None and isinstance(value, (str, list, tuple, dict)):
                items = [value] if isinstance(value, str) else list(value)
                unknown = [x for x in items if x not in accepted_names(self.names_of)]
                bad = f": {unknown[0]!r} is not a known {self.names_of}" if unknown else ""
            raise ValueError(f"{key}={value!r} is not valid{bad}; accepted: {self.kind}{unit}{none}")


# ----------------------------------------------------------------------------------------------
# Kinds
# ----------------------------------------------------------------------------------------------

def integer(lo: int = 0, unit: str = "", doc: str = "", none: bool = False) -> Param:
    return Param(f"an int >= {lo}", unit, doc, lambda v: _is_int(v) and v >= lo, none)


def number(lo: float | None = None, hi: float | None = None, unit: str = "", doc: str = "", none: bool = False,
           open_lo: bool = False) -> Param:
    kind = "a finite number" + (f" > {lo}" if open_lo else f" >= {lo}" if lo is not None else "") + \
        (f" <= {hi}" if hi is not None else "")

    def ok(v):
        return _is_number(v) and (lo is None or (v > lo if open_lo else v >= lo)) and (hi is None or v <= hi)
    return Param(kind, unit, doc, ok, none)


def fraction(doc: str = "", none: bool = False) -> Param:
    return Param("a number in (0, 1)", "fraction", doc, lambda v: _is_number(v) and 0 < v < 1, none)


def count_or_fraction(doc: str = "") -> Param:
    """k as a count (an int >= 1) or a fraction in (0, 1) (``common.resolve_k``)."""
    return Param("an int >= 1 or a number in (0, 1)", "count or fraction", doc,
                 lambda v: (_is_int(v) and v >= 1) or (_is_number(v) and 0 < v < 1))


def boolean(doc: str = "") -> Param:
    return Param("True or False", "", doc, lambda v: isinstance(v, (bool, np.bool_)))


def choice(*values: Any, doc: str = "", none: bool = False) -> Param:
    return Param(f"one of {list(values)}", "", doc, lambda v: v in values, none)


def text(doc: str = "", none: bool = False) -> Param:
    return Param("a string", "", doc, lambda v: isinstance(v, str), none)


def _many(v):
    return list(v) if isinstance(v, (list, tuple)) else None


def list_of(item: Param, doc: str = "", nonempty: bool = True, none: bool = False) -> Param:
    return Param(f"a{' non-empty' if nonempty else ''} list, each {item.kind}",
                 item.unit, doc, lambda v: _many(v) is not None and (bool(v) or not nonempty)
                 and all(item.ok(x) for x in v), none)


def budget(norm: str, doc: str = "", many: bool = False, none: bool = False) -> Param:
    """An L-infinity budget, step or noise level in 0-255 pixel units (``units.linf``) or an L2
    budget in input units (``units.l2``); ``many``: a number or a list of them."""
    unit = "0-255 pixel units" if norm == "linf" else "input units (L2 norm)"
    kind = "a number in [0, 255]" if norm == "linf" else "a finite number >= 0"
    convert = units.linf if norm == "linf" else units.l2

    def ok1(v):
        try:
            convert(v, "value")
            return True
        except ValueError:
            return False
    if many:
        return Param(f"{kind}, or a non-empty list of them", unit, doc,
                     lambda v: all(ok1(x) for x in v) and bool(v) if _many(v) is not None else ok1(v), none)
    return Param(kind, unit, doc, ok1, none)


def names(kind: str, doc: str = "", none: bool = True, single: bool = False) -> Param:
    """A name of the ``kind`` registry, a list of names or a dict keyed by names (None: unused)."""
    accepted = accepted_names(kind)

    def ok(v):
        items = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple, dict)) else None
        return items is not None and all(isinstance(x, str) and x in accepted for x in items) \
            and (not single or isinstance(v, str))
    shape = f"a {kind} name" if single else f"a {kind} name, a list of names or a dict keyed by names"
    return Param(f"{shape} from {list(accepted)}", "", doc, ok, none, names_of=kind)


def mapping(doc: str = "", none: bool = False) -> Param:
    return Param("a dict", "", doc, lambda v: isinstance(v, dict), none)


def seeds(doc: str = "the training seeds: seed i of every method shares its initial weights and data "
                    "order") -> Param:
    return Param("a non-empty list of ints >= 0", "", doc,
                 lambda v: _many(v) is not None and bool(v) and all(_is_int(s) and s >= 0 for s in v))


def device(doc: str = "the torch device; None: cuda if available, else cpu (profiles.resolve_device, "
                       "whose choice the validated params then hold)") -> Param:
    def ok(v):
        try:
            dev = torch.device(v)
        except (RuntimeError, TypeError, ValueError):
            return False
        return dev.type != "cuda" or torch.cuda.is_available()
    return Param("'cpu', 'cuda' (when available), 'cuda:<index>' or 'mps'", "", doc, ok, none=True)


def folder(doc: str = "") -> Param:
    return Param("an existing folder", "", doc, lambda v: isinstance(v, (str, Path)) and Path(v).expanduser().is_dir(),
                 none=True)


def anything(doc: str = "") -> Param:
    return Param("any value", "", doc, lambda v: True, none=True)


# ----------------------------------------------------------------------------------------------
# The parameters
# ----------------------------------------------------------------------------------------------

# Every notebook: the generic profile's parameters (``profiles.PROFILES``).
GENERIC: dict[str, Param] = {
    "profile": choice("smoke", "cpu", "paper", doc="the profile the other defaults come from"),
    "dataset": names("dataset", single=True, doc="the training dataset"),
    "model": names("model", single=True, doc="the network"),
    "model_kw": mapping(none=True, doc="keywords of models.build (e.g. width)"),
    "activation": choice("relu", "softplus", doc="the network's activation"),
    "beta": number(0, open_lo=True, doc="softplus beta"),
    "size": integer(1, "pixels", none=True, doc="image side (embedded datasets); None: the dataset's"),
    "n_train": integer(1, "images", none=True, doc="training rows; None: all"),
    "n_val": integer(1, "images", none=True, doc="training rows held out for model selection"),
    "n_test": integer(1, "images", none=True, doc="test rows; None: all"),
    "num_epochs": integer(1, "epochs", doc="training epochs"),
    "batch_size": integer(1, "images", doc="training batch size"),
    "optimizer": choice("adam", "adamw", "sgd", doc="the optimizer"),
    "lr": number(0, open_lo=True, doc="learning rate"),
    "grad_clip": number(0, open_lo=True, none=True, doc="gradient-norm clip; None: no clipping"),
    "normalize": boolean("the model's first layer standardizes each channel (training-set mean and std)"),
    "seeds": seeds(),
    "eval_subset": integer(1, "images", doc="test images scored per model"),
    "eps_grid": budget("linf", many=True, doc="L-infinity budgets of the attacks"),
    "attack_steps": integer(1, "steps", doc="attack iterations"),
    "data_root": folder("the folder holding the real datasets (paper profile; see data/README.md)"),
    "device": device(),
    "num_workers": integer(0, "processes", doc="the training DataLoader's worker processes (0: load in the main "
                           "process); not in the training cache key: it does not change the weights"),
    "pin_memory": boolean("the training DataLoader pins its batches in page-locked memory (faster copies to a "
                          "GPU); not in the training cache key"),
    "progress": boolean("progress bars"),
}

# ``training.TrainConfig``'s other fields, which a notebook (or P1's recipes) may set.
TRAINING: dict[str, Param] = {
    "weight_decay": number(0, doc="weight decay"),
    "momentum": number(0, doc="SGD momentum"),
    "schedule": choice("none", "multistep", "step", "cosine", doc="learning-rate schedule"),
    "milestones": list_of(integer(1, "epochs"), doc="the multistep schedule's milestones", nonempty=False),
    "gamma": number(0, open_lo=True, doc="learning-rate decay factor"),
    "step_size": integer(1, "epochs", doc="step schedule's period"),
    "augment": choice("none", "crop_flip", "p3_imagenette", "p3_cub", "block_order", doc="training augmentation"),
    "crop_padding": integer(0, "pixels", doc="crop_flip's padding"),
}

_SHARED = {**GENERIC, **TRAINING}

_P1 = {
    "methods": names("method", none=False, doc="the training methods compared; the first is ce"),
    "attributions": names("attribution", none=False, doc="the attribution methods scored"),
    "grid": mapping(none=True, doc="{method: [hyperparameters, ...]}: the selection grid (P1's units)"),
    "rps_eps": budget("linf", doc="RPS noise level"),
    "rps_eps_grid": budget("linf", many=True, doc="RPS noise levels of the appendix"),
    "rps_n": integer(1, "draws", doc="noise draws per image for RPS"),
    "attack_eps": budget("linf", doc="budget of the targeted attribution attack"),
    "insertion": choice("reference_code", "paper", none=True, doc="Insertion protocol (P1's released code or text)"),
    "toy_epochs": integer(1, "epochs", doc="Fig. 1's two-moons training"),
    "atex_epochs": integer(1, "epochs", doc="ATEX's fine-tuning"),
    "bench_repeats": integer(1, "rounds", doc="interleaved rounds of Table 2's step timing"),
    "selection_tol": number(0, doc="accuracy tolerance of the selection rule", none=True),
}

_P2 = {
    "attributions": names("attribution", none=True, doc="the explainers compared; the first is relex"),
    "relex_preset": choice("reference_code", "supplement", doc="RelEx's settings (released code or supplement)"),
    "relex_space": choice("normalized", "pixel", doc="the input space RelEx's mask lives in"),
    "relex_iters": integer(1, "iterations", none=True, doc="RelEx's optimisation steps; None: the preset's"),
    "weights": text(none=True, doc="pretrained weights (a file under data_root); None: train"),
    "robust_weights": text(none=True, doc="pretrained robust weights (a file under data_root)"),
    "robust": boolean("also evaluate an adversarially fine-tuned model"),
    "robust_epochs": integer(1, "epochs", doc="the robust model's fine-tuning"),
    "robust_lr": number(0, open_lo=True, doc="the robust model's learning rate"),
    "robust_kw": mapping(doc="at_pgd's hyperparameters for the robust model"),
    "pgd_eps": budget("linf", many=True, doc="budgets of the untargeted PGD attack"),
    "predicted_class_eps": budget("linf", many=True, doc="budgets where maps explaining x_adv's own prediction "
                                  "are scored too (a subset of pgd_eps)"),
    "explainer_settings": choice("p2_code", "library", doc="the baselines' settings (P2's released code or the "
                                 "library's defaults)"),
    "targeted_methods": names("attribution", none=True, doc="the maps P2's targeted attacks attack (differentiable)"),
    "topk_eps": budget("linf", many=True, doc="budgets of the top-k attack"),
    "topk_k": count_or_fraction("k of the top-k attack"),
    "topk_steps": integer(1, "steps", doc="top-k attack iterations"),
    "structured_steps": integer(1, "steps", doc="structured attack iterations"),
    "similarity_k": count_or_fraction("k of the top-k intersection"),
    "evidence_classes": list_of(integer(0), doc="classes explained in Fig. S5", nonempty=False),
    "evidence_images": integer(1, "images", doc="images per class in Fig. S5"),
}

_P3 = {
    "grid": mapping(doc="{model: [hyperparameters, ...]}: the selection grid of noise, l1, group, elastic"),
    "variants": Param("a list of model names (papers.p3.VARIANTS)", "", "the training variants (iterative, free, "
                      "MI-FGSM)", lambda v: _many(v) is not None and all(isinstance(x, str) for x in v)),
    "harmonize_grid": list_of(mapping(), doc="hyperparameters of the harmonization models"),
    "harmonization_dataset": names("dataset", single=True, doc="the harmonization dataset (gaze maps)"),
    "harmonization_size": integer(1, "pixels", none=True, doc="image side of the harmonization set"),
    "selection_tol": number(0, doc="accuracy tolerance of the selection"),
    "pretrain_epochs": integer(0, "epochs", doc="ce pretraining every model starts from (0: from scratch)"),
    "finetune": mapping(none=True, doc="the second regime, {pretrain_epochs, num_epochs, grid} over the "
                        "headline's (None: none)"),
    "harmonization_train": mapping(none=True, doc="training settings of the harmonization models over the "
                                   "main ones (augment, batch_size)"),
    "group_size": integer(1, "pixels", doc="side of a group of group-norm AT"),
    "free_replays": integer(1, "replays", doc="free AT's replays per batch"),
    "gaze_sigma": number(0, unit="pixels", doc="blur of the object masks that stand in for gaze maps"),
    "map_space": choice("pixel", "normalized", doc="the input space of the maps"),
    "pgd_eps": budget("linf", doc="budget of the PGD accuracy"),
    "pgd_steps": integer(1, "steps", doc="PGD iterations"),
    "topk_l2_eps": budget("l2", doc="budget of the L2 top-k attack (B.6)"),
    "topk_k": fraction("k of the top-k attack, a fraction of the non-zero pixels"),
    "topk_steps": integer(1, "steps", doc="top-k attack iterations"),
    "swap_fraction": fraction("training rows swapped for the stability twins"),
    "roar_fractions": list_of(fraction(), doc="fractions of pixels removed for DiffROAR"),
    "roar_epochs": integer(1, "epochs", doc="ROAR retraining"),
    "random_labels_for": Param("a list of model names", "", "models retrained on permuted labels",
                               lambda v: _many(v) is not None and all(isinstance(x, str) for x in v)),
    "smoothgrad_n": integer(1, "draws", doc="SmoothGrad samples"),
    "smoothgrad_sigma": number(0, unit="fraction of the input range", doc="SmoothGrad noise"),
    "sparsify_q": fraction("quantile of |map| of the soft threshold (Table 5)"),
    "aopc_steps": list_of(integer(1, "steps"), doc="AOPC_MoFR's numbers of steps"),
    "aopc_step_fraction": fraction("pixels removed per AOPC step"),
}

# Notebook 04: the parameters every part has, and each part's own (written <part>_<name>).
PART: dict[str, Param] = {
    key: GENERIC[key] for key in ("dataset", "size", "model", "model_kw", "activation", "normalize",
                                  "num_epochs", "lr", "grad_clip", "n_train", "n_val", "n_test", "eval_subset")
}
PART["augment"] = TRAINING["augment"]
PART["grid"] = mapping(doc="{model: [hyperparameters, ...]}: the part's selection grid")
PARTS: dict[str, dict[str, Param]] = {
    "block": {
        "at_eps": budget("linf", doc="AT-FGSM / AT-PGD training budget"),
        "at_alpha": budget("linf", doc="AT-PGD step"),
        "at_steps": integer(1, "steps", doc="AT-PGD iterations"),
        "ig_steps": integer(1, "steps", doc="Integrated-Gradients steps of the leakage (Eq. 9)"),
        "pgd_steps": integer(1, "steps", doc="PGD iterations (P4: 20)"),
        "pgd_linf_eps": budget("linf", doc="L-infinity budget of the claims' PGD"),
        "pgd_l2_eps": budget("l2", doc="L2 budget of the claims' PGD"),
        "p4_linf_eps": budget("linf", doc="P4's L-infinity budget (A.8: 0.3 = 76.5/255)"),
        "p4_linf_alpha": budget("linf", doc="P4's L-infinity step"),
        "p4_l2_eps": budget("l2", doc="P4's L2 budget (A.8: 1.0)"),
        "p4_l2_alpha": budget("l2", doc="P4's L2 step"),
    },
    "spurious": {
        "datasets": names("dataset", doc="the group-shift datasets"),
        "p_major": fraction("share of each class on its majority background"),
        "dro_eta": number(0, doc="group DRO's step size"),
        "dro_groups": integer(1, "groups", doc="group DRO's number of groups"),
        "dro_mode": choice("online", "balanced", doc="group DRO's weighting"),
    },
    "shapes": {
        "pgd_steps": integer(1, "steps", doc="PGD iterations"),
        "l2_eps": budget("l2", many=True, doc="L2 budgets of Table 4's PGD"),
        "linf_eps": budget("linf", many=True, doc="L-infinity budgets of Table 5's PGD"),
        "fractions": list_of(fraction(), doc="pixel-perturbation fractions (Fig. 6a)"),
        "noise_sigmas": list_of(number(0, 10, unit="input units"), doc="Gaussian noise levels (Fig. 6b)"),
        "noise_draws": integer(1, "draws", doc="noise draws per image"),
        "smoothgrad_n": integer(1, "draws", doc="SmoothGrad samples"),
        "smoothgrad_sigma": number(0, unit="fraction of the input range", doc="SmoothGrad noise"),
        "actmax_steps": integer(1, "steps", doc="activation-maximization steps"),
        "actmax_lr": number(0, open_lo=True, doc="activation-maximization step size"),
    },
}
_P4 = {
    "selection_tol": number(0, doc="accuracy tolerance of the selection"),
    "lam_sweep": list_of(number(0, open_lo=True), doc="λ of Fig. 4's sweep and of the frontiers of ours and InputGrad"),
    "frontier_seeds": seeds("the seeds of the BlockMNIST frontiers (Fig. 4): the leakage and robustness claims"),
    "frontier_drops": list_of(number(0, 1, open_lo=True), doc="accuracy drops below ce's validation accuracy (per "
                              "seed) at which the frontiers are compared"),
    "p_sweep": list_of(number(1, open_lo=False), doc="norm p of Fig. 7's sweep"),
    "p_sweep_lams": list_of(number(0), none=True, doc="λ of Fig. 7's sweep; None: the chosen one"),
    "table3_models": list_of(choice("mlp", "vgg11", "resnet18", "lenet", "small_cnn"), doc="Table 3's networks"),
    "table3_model_kw": mapping(doc="{network: keywords of models.build}"),
    "table3_epochs": integer(1, "epochs", doc="Table 3's CNN training"),
    "table3_lam": number(0, doc="λ of Table 3's CNNs"),
    "ood_datasets": names("dataset", doc="the OOD sets"),
    "ood_n": integer(1, "images", doc="OOD images per set"),
    "ood_scores": list_of(choice("logsumexp", "max_logit", "max_softmax"), doc="OOD scores"),
    "spurious_datasets": names("dataset", doc="the group-shift datasets"),
    "block_dataset": names("dataset", single=True, doc="BlockMNIST (or its embedded stand-in)"),
    "spurious_dataset": names("dataset", single=True, doc="(unused: see spurious_datasets)"),
    "shapes_dataset": names("dataset", single=True, doc="the CIFAR stand-in"),
    **{f"{part}_{key}": p for part, own in PARTS.items() for key, p in {**PART, **own}.items()},
}

# Notebook 05: the main comparison's own parameters (the network and data are the generic ones),
# and two parts with their own data and network (written <part>_<name>, as notebook 04's).
_P5 = {
    "models": Param("a list of model names (papers.unified.SPECS)", "", "the models compared; the first is ce",
                    lambda v: _many(v) is not None and len(v) > 0 and all(isinstance(x, str) for x in v)),
    "grid": mapping(doc="{model: [hyperparameters, ...], weakest first}: the selection grid of each model"),
    "selection_tol": number(0, doc="accuracy tolerance of the selection"),
    "atex_epochs": integer(1, "epochs", none=True, doc="ATEX's fine-tuning of the ce model; None: num_epochs"),
    "attribution": names("attribution", single=True, doc="the map every measure scores"),
    "pgd_linf": budget("linf", doc="L-infinity budget of the PGD accuracy"),
    "pgd_l2": budget("l2", doc="L2 budget of the PGD accuracy"),
    "pgd_steps": integer(1, "steps", doc="PGD iterations"),
    "rps_eps": budget("linf", doc="RPS noise level (P1)"),
    "rps_n": integer(1, "draws", doc="noise draws per image for RPS"),
    "aam_eps": budget("linf", doc="budget of P1's targeted attribution attack"),
    "aam_steps": integer(1, "steps", doc="its iterations"),
    "untargeted_eps": budget("linf", doc="budget of P2's untargeted PGD"),
    "untargeted_steps": integer(1, "steps", doc="its iterations"),
    "topk_eps": budget("linf", doc="budget of the top-k attack"),
    "topk_steps": integer(1, "steps", doc="its iterations"),
    "k": fraction("top-k fraction of P2's intersection and of the top-k attack"),
    "relex_models": Param("a list of model names (papers.unified.SPECS)", "", "models whose RelEx maps (P2's "
                          "released settings) are scored too, without the attacks on the map", lambda v: _many(v) is not None and all(isinstance(x, str) for x in v)),
    "relex_n": integer(1, "images", doc="test images of the RelEx scores"),
    "cost_batches": integer(1, "batches", doc="batches per method of the step-cost measurement"),
}
_PART_MODELS = {
    "models": Param("a list of model names (papers.unified.SPECS), or None", "", "the models the part trains (a "
                    "subset of models, ce first); None: all", lambda v: v is None or (
                        _many(v) is not None and len(v) > 0 and all(isinstance(x, str) for x in v))),
    "grid": mapping(none=True, doc="{model: [hyperparameters, ...], weakest first}: the part's own selection "
                    "for these models (on the part's validation set); None: the main selection's settings"),
}
UNIFIED_PARTS: dict[str, dict[str, Param]] = {
    "block": {"seeds": seeds("the seeds of the leakage models"),
              "ig_steps": integer(1, "steps", doc="Integrated-Gradients steps of the leakage (P4 Eq. 9)"),
              "leakage_n": integer(1, "images", none=True, doc="test images of the leakage; None: all")},
    "spurious": {"seeds": seeds("the seeds of the group-shift models"),
                 "p_major": fraction("share of each class on its majority background")},
}
_P5.update({f"{part}_{key}": p for part, own in UNIFIED_PARTS.items()
            for key, p in {**PART, **_PART_MODELS, **own}.items()})
# Which notebooks have parts (nested settings, ``s.block.lr``).
NOTEBOOK_PARTS = {"04_marginal_density": tuple(PARTS), "05_unified_benchmark": tuple(UNIFIED_PARTS)}

_TOUR = {
    "datasets": names("dataset", none=False, doc="embedded datasets to train on (the first: the full tour)"),
    "attributions": names("attribution", none=False, doc="the attribution methods shown"),
    "rps_eps": budget("linf", doc="RPS noise level"),
    "rps_n": integer(1, "draws", doc="noise draws per image for RPS"),
}

NOTEBOOKS: dict[str, dict[str, Param]] = {
    "00_tour": {**_SHARED, **_TOUR},
    "01_local_gradient_alignment": {**_SHARED, **_P1},
    "02_relex": {**_SHARED, **_P2},
    "03_norm_regularized_at": {**_SHARED, **_P3},
    "04_marginal_density": {**_SHARED, **_P4},
    "05_unified_benchmark": {**_SHARED, **_P5},
}


def schema(notebook: str | None) -> dict[str, Param]:
    """``{name: Param}`` of every parameter ``notebook`` accepts; None: every parameter any
    notebook declares."""
    if notebook is None:
        return _ALL
    if notebook not in NOTEBOOKS:
        raise ValueError(f"notebook={notebook!r} has no declared parameters; accepted: {list(NOTEBOOKS)}")
    return NOTEBOOKS[notebook]


_ALL: dict[str, Param] = {}
for _declared in NOTEBOOKS.values():
    for _k, _p in _declared.items():
        _ALL.setdefault(_k, _p)


def check(params: Mapping[str, Any], notebook: str | None = None, strict: bool = True) -> None:
    """Check every value of ``params`` against its declaration in ``schema(notebook)``; a name the
    schema does not declare is an error (``strict``) or left unchecked."""
    declared = schema(notebook)
    for key, value in params.items():
        if key in declared:
            declared[key].check(key, value)
        elif strict:
            raise ValueError(f"{key}={value!r}: {key!r} is not a parameter of "
                             f"{notebook or 'any notebook'}; accepted: {sorted(declared)}")


def describe(notebook: str | None) -> pd.DataFrame:
    """A notebook's parameters as a table: name, type, unit and what it sets."""
    import pandas as pd

    return pd.DataFrame([{"parameter": k, "type": p.kind + (" or None" if p.none else ""), "unit": p.unit,
                          "sets": p.doc} for k, p in schema(notebook).items()]).set_index("parameter")


# ----------------------------------------------------------------------------------------------
# The typed settings object
# ----------------------------------------------------------------------------------------------

class _Unset:
    """A parameter the layers did not set (the code then uses its own default)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class Settings(Mapping):
    """A notebook's validated parameters as a frozen dataclass (``settings_class(notebook)``):
    one field per declared parameter, its ``Param`` (type, unit, meaning) in the field's
    metadata; notebook 04's parts are nested (``s.block.lr``, ``s.shapes.l2_eps``).  Two settings
    are equal when they hold the same parameters (as mappings).

    Read by attribute (``s.seeds``; a parameter the layers did not set raises AttributeError) or,
    for code that reads parameters by name, as a read-only mapping of the set parameters under
    their flat names (``s["block_lr"]``, ``dict(s)``: the same keys and values as the validated
    dict it was built from, so cache keys and results files do not change)."""

    _parts: tuple[str, ...] = ()

    def _flat(self) -> dict[str, Any]:
        try:
            return object.__getattribute__(self, "_flat_cache")
        except AttributeError:
            pass
        out = {}
        for f in dataclasses.fields(self):
            value = object.__getattribute__(self, f.name)
            if f.name in self._parts:
                out.update({f"{f.name}_{k}": v for k, v in value._flat().items()})
            elif value is not UNSET:
                out[f.name] = value
        order = getattr(self, "_order", ())  # the order of the dict it was built from
        out = {**{k: out[k] for k in order if k in out}, **out}
        object.__setattr__(self, "_flat_cache", out)
        return out

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is UNSET:
            raise AttributeError(f"{name!r} is not set at this profile (the code uses its default)")
        return value

    def __getitem__(self, key: str) -> Any:
        return self._flat()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat())

    def __len__(self) -> int:
        return len(self._flat())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._flat().items())})"

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` (flat names), validated like the original."""
        return build(self._notebook, {**dict(self), **changes})

    def units(self) -> dict[str, str]:
        """``{flat name: unit}`` of the set parameters that have one."""
        decl = schema(self._notebook)
        return {k: decl[k].unit for k in self if k in decl and decl[k].unit}


def _class_name(notebook: str) -> str:
    words = re.sub(r"^\d+_", "", notebook).split("_")
    return "".join(w.title() for w in words) + "Settings"


def _fields(declared: Mapping[str, Param]) -> list:
    return [(k, Any, dataclasses.field(default=UNSET, metadata={"param": p})) for k, p in declared.items()]


_CLASSES: dict[str, type] = {}


def settings_class(notebook: str) -> type:
    """The frozen dataclass of ``notebook``'s parameters (a ``Settings``): one field per
    declared parameter, the parts of notebooks 04 and 05 as nested dataclasses of their own."""
    if notebook in _CLASSES:
        return _CLASSES[notebook]
    declared = schema(notebook)
    parts = NOTEBOOK_PARTS.get(notebook, ())
    flat = {k: p for k, p in declared.items() if not any(k.startswith(f"{q}_") for q in parts)}
    fields = _fields(flat)
    for part in parts:
        own = {k[len(part) + 1:]: p for k, p in declared.items() if k.startswith(f"{part}_")}
        part_cls = dataclasses.make_dataclass(f"{part.title()}PartSettings", _fields(own), bases=(Settings,),
                                              frozen=True, eq=False, repr=False, namespace={"_notebook": notebook})
        fields.append((part, part_cls, dataclasses.field(default_factory=part_cls, metadata={"part": part})))
    cls = dataclasses.make_dataclass(_class_name(notebook), fields, bases=(Settings,), frozen=True, eq=False,
                                     repr=False, namespace={"_notebook": notebook, "_parts": parts})
    _CLASSES[notebook] = cls
    return cls


def build(notebook: str, params: Mapping[str, Any]) -> Settings:
    """``notebook``'s validated parameters ``params`` (a flat dict: ``profiles.validate``'s) as its
    typed ``Settings``; each value is checked against its declaration again, and a name the
    notebook does not declare is an error."""
    check(params, notebook)
    cls = settings_class(notebook)
    parts = cls._parts
    top = {k: v for k, v in params.items() if not any(k.startswith(f"{q}_") for q in parts)}
    for part in parts:
        part_cls = {f.name: f.type for f in dataclasses.fields(cls)}[part]
        top[part] = part_cls(**{k[len(part) + 1:]: v for k, v in params.items() if k.startswith(f"{part}_")})
    out = cls(**top)
    object.__setattr__(out, "_order", tuple(params))
    return out
