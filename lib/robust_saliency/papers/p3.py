"""P3 (Gong, Dou, Farnia, CVPR 2024, structured saliency from norm-regularized adversarial
training): its facts and protocol on top of the library.

Facts: ``TABLE5`` (relative AOPC drop of post-processing), ``TABLE6`` (gaze overlap of plain l2
adversarial training on CUB-GHA).  Protocol: ``SPECS``
(every model of notebook 03: a training method, its fixed hyperparameters and whose chosen
setting it takes), ``settings``, ``load_sets`` (train / validation / test, with the "gaze"
attention maps), ``regime_params`` (the headline regime, P3's own: every model from scratch;
and a second, ``finetune``: every model fine-tuned from a ce model), ``explain`` (P3's simple
gradient, in the model's normalized input as its ``utils.simplegrad``), ``select`` (each
method's eps on the validation split), ``neighbours`` / ``neighbour_verdicts`` (the verdicts at
every admissible eps), ``train_models`` and ``twins`` (P3's stability pairs), ``evaluate``
(accuracy, sparsity, object share, top-k robustness, AOPC of post-processing including Sparse
MoreauGrad; cached), ``stability``, ``roar`` (DiffROAR), ``randomization`` (cascading) and
``random_labels`` (the sanity checks, with true-label twins trained the same way),
``harmonization`` (Prop. 4 / Table 6), ``main_table``, ``claim_rows`` and ``finetune_rows``.

P3's released code (peterant330/AdvGrad) trains only; its evaluation (DiffROAR, robustness,
stability, AOPC, sanity checks) is written here from the supplement's descriptions (B.5-B.7,
C.2.4, C.2.6), so this module defines it.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .. import attacks, attributions, claims, evaluation, metrics
from .. import methods as _methods
from ..common import seeded, to_device_of
from . import protocol
from .protocol import ModelSpec, check_fractions, check_named_grid, hp_of, with_paper_data
from ..data import ArrayDataset
from ..models import leading_normalize
from ..settings import Settings
from ..settings import build as build_settings
from ..profiles import profile_params, train_config, validate
from ..claims import records
from ..runs import (batch, cached_eval, diff_roar, fit, fit_many, load_data, permuted_labels,
                    select_hparams, split_validation, swap_samples)
from ..runs import hp_text as _hp_text

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from ..data import BaseDataset

__all__ = ["NOTEBOOK", "SPECS", "MAIN", "VARIANTS", "HARMONIZATION", "LABELS", "TABLE5", "TABLE6",
           "POST_PROCESSING", "POST_LABELS", "GROUP_TRAINED", "MOREAU_KW",
           "settings", "regime_params", "load_sets", "gaze_maps", "eval_images", "explain", "pretrained", "fit_method",
           "fit_methods", "select", "train_models", "twins", "evaluate", "sparse_moreaugrad", "records", "main_table",
           "stability", "roar", "randomization", "random_labels", "neighbours", "neighbour_verdicts", "harmonization",
           "harmonization_eps",
           "aopc_table", "benchmark_table", "structure_rows", "claim_rows", "finetune_rows", "checks"]

NOTEBOOK = "03_norm_regularized_at"

# Every model of the notebook (``protocol.ModelSpec``: training method, fixed hyperparameters, the
# grid whose chosen setting it takes: the variants share the one-step setting of their mode, as P3
# compares them).
SPECS = {
    "ce": ModelSpec("ce"),
    "noise": ModelSpec("gaussian_noise", grid="noise"),
    "l1": ModelSpec("norm_regularized_at", {"mode": "l1"}, "l1"),
    "group": ModelSpec("norm_regularized_at", {"mode": "group"}, "group"),
    "elastic": ModelSpec("norm_regularized_at", {"mode": "elastic"}, "elastic"),
    "l1_iterative": ModelSpec("norm_regularized_at", {"mode": "l1", "training": "iterative"}, "l1"),
    "group_iterative": ModelSpec("norm_regularized_at", {"mode": "group", "training": "iterative"}, "group"),
    "elastic_iterative": ModelSpec("norm_regularized_at", {"mode": "elastic", "training": "iterative"}, "elastic"),
    "l1_free": ModelSpec("norm_regularized_at", {"mode": "l1", "training": "free"}, "l1"),
    "group_free": ModelSpec("norm_regularized_at", {"mode": "group", "training": "free"}, "group"),
    "l1_mifgsm": ModelSpec("norm_regularized_at", {"mode": "l1", "training": "mifgsm"}, "l1"),
    "l1_iterative_b4": ModelSpec("norm_regularized_at", {"mode": "l1", "training": "iterative", "init": "one_step"},
                                 "l1"),
    "group_iterative_b4": ModelSpec("norm_regularized_at", {"mode": "group", "training": "iterative",
                                                            "init": "one_step"}, "group"),
    "elastic_iterative_b4": ModelSpec("norm_regularized_at", {"mode": "elastic", "training": "iterative",
                                                              "init": "one_step"}, "elastic"),
    # cub_train.py trains on un-normalized [0, 1] images: its perturbation lives in pixels
    "l2": ModelSpec("norm_regularized_at", {"mode": "l2", "space": "pixel"}),
    "weighted_l2": ModelSpec("norm_regularized_at", {"mode": "weighted_l2", "attention_key": "gaze", "space": "pixel"}),
}
MAIN = ("ce", "noise", "l1", "group", "elastic")
AT = ("l1", "group", "elastic")
VARIANTS = ("l1_iterative", "group_iterative", "elastic_iterative", "l1_free", "group_free", "l1_mifgsm",
            "l1_iterative_b4", "group_iterative_b4", "elastic_iterative_b4")
HARMONIZATION = ("l2", "weighted_l2")
LABELS = {"ce": "standard", "noise": "Gaussian noise", "l1": "ℓ1", "group": "group ℓ2,1",
          "elastic": "elastic net", "l1_iterative": "ℓ1 iterative", "group_iterative": "group iterative",
          "elastic_iterative": "elastic iterative", "l1_free": "ℓ1 free", "group_free": "group free",
          "l1_mifgsm": "ℓ1 MI-FGSM", "l1_iterative_b4": "ℓ1 iterative (one-step start)",
          "group_iterative_b4": "group iterative (one-step start)",
          "elastic_iterative_b4": "elastic iterative (one-step start)", "l2": "ℓ2", "weighted_l2": "weighted ℓ2 (gaze)"}
# The validation score each grid is selected on: the structure the method is meant to produce.
SELECT_SCORE = {"noise": "gini", "l1": "gini", "group": "group gini", "elastic": "gini"}

# P3 Table 5: relative AOPC_MoFR drop (%) of post-processing against its base map, at 20/50/100 steps.
TABLE5 = {"sparsified grad": {20: 2.75, 50: 18.93, 100: 36.16},
          "sparsified smoothgrad": {20: 25.34, 50: 24.84, 100: 18.13},
          "sparse moreaugrad": {20: 11.29, 50: 32.32, 100: 45.61}}
# P3 Table 6: top-5% / top-10% overlap (%) of the gaze map and the maps of plain l2 adversarial
# training on CUB-GHA, per eps (0 = standard training).
TABLE6 = {0: (33.42, 41.81), 0.1: (32.92, 41.11), 0.5: (33.52, 40.89), 1.0: (34.22, 42.05), 5.0: (31.83, 39.84)}
SHOWN_PARAMS = ("profile", "dataset", "model", "model_kw", "size", "n_train", "n_val", "n_test", "pretrain_epochs",
                "num_epochs", "lr", "grad_clip", "augment", "finetune", "seeds", "group_size", "selection_tol", "variants", "free_replays", "eval_subset",
                "topk_l2_eps", "topk_steps", "topk_k", "pgd_eps", "swap_fraction", "roar_fractions", "roar_epochs",
                "sparsify_q", "aopc_steps", "gaze_sigma", "harmonization_dataset", "harmonize_grid", "map_space")
# The paper profile's datasets (real: they need data_root, so they are not in the YAML).
PAPER_DATA = {"dataset": "imagenette", "harmonization_dataset": "cub_gha"}
RAND_SSIM = "SSIM with the true model's maps"
# Sparse MoreauGrad (Table 5's third row; MoreauGrad's sparse envelope of the SmoothGrad-smoothed
# score): rho and the proximal-gradient schedule; the noise as SmoothGrad's, the L1 weight per
# image (``sparse_moreaugrad``).
MOREAU_KW = {"rho": 1.0, "step": 0.1, "steps": 20}
FINETUNE_KEYS = ("pretrain_epochs", "num_epochs", "grid")
GROUP_TRAINED = "group gini (per channel)"
# Table 5's rows: (base map, post-processed map), as P3 pairs them (C.2.4).
POST_PROCESSING = (("grad", "sparsified grad"), ("smoothgrad", "sparsified smoothgrad"),
                   ("smoothgrad", "sparse moreaugrad"))
POST_LABELS = {"grad": "simple gradient", "sparsified grad": "sparsified\ngradient", "smoothgrad": "SmoothGrad",
               "sparsified smoothgrad": "Sparsified-\nSmoothGrad", "sparse moreaugrad": "Sparse\nMoreauGrad"}  # the groups group-norm AT penalises: each channel's patch apart
TWIN_SEED = 1000  # the stability twin of seed s is initialised from seed s + TWIN_SEED


def settings(profile: str, **notebook_params: Any) -> Settings:
    """The notebook's parameters over the profile and ``03_norm_regularized_at.yaml``, checked
    before any work: every grid point and variant builds its method, the group size divides the
    image, the map space and the fractions are valid."""
    notebook_params = with_paper_data(profile, PAPER_DATA, notebook_params)  # P3's datasets
    params = validate(notebook=NOTEBOOK, **profile_params(profile, notebook=NOTEBOOK, **notebook_params))
    train_config(params, cache_dir=None)
    grid = check_named_grid(params.get("grid") or {}, set(SELECT_SCORE), lambda n, hp: _method(params, n, hp))
    unknown = [v for v in params.get("variants", []) if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants={params['variants']!r} is not valid; accepted: a list drawn from {list(VARIANTS)}")
    size = params.get("size")
    if size and size % params["group_size"]:
        raise ValueError(f"group_size={params['group_size']!r} is not valid for {size}x{size} images; "
                         f"accepted: a divisor of {size}")
    for name in ("l2", "weighted_l2"):
        check_named_grid({name: params["harmonize_grid"]}, {name}, lambda n, hp: _method(params, n, hp),
                         key="harmonize_grid")
    for name in params.get("variants", []):
        _method(params, name, grid[SPECS[name].grid][0])
    if params.get("map_space") not in attributions.gradient.SPACES:
        raise ValueError(f"map_space={params.get('map_space')!r} is not valid; accepted: {list(attributions.gradient.SPACES)}")
    check_fractions(params, ("roar_fractions", "topk_k", "swap_fraction", "sparsify_q"))
    if not isinstance(params.get("pretrain_epochs"), int) or params["pretrain_epochs"] < 0:
        raise ValueError(f"pretrain_epochs={params.get('pretrain_epochs')!r} is not valid; accepted: an int >= 0 "
                         f"(0: every method trains from scratch)")
    attacks.get("topk", norm="l2", eps=params["topk_l2_eps"], steps=params["topk_steps"], k=params["topk_k"])
    finetune = params.get("finetune")
    if finetune is not None:
        if set(finetune) - set(FINETUNE_KEYS) or not finetune.get("grid"):
            raise ValueError(f"finetune={finetune!r} is not valid; accepted: None or a mapping with a grid and "
                             f"keys among {list(FINETUNE_KEYS)}")
        regime_params(params, "finetune")
    if set(params.get("harmonization_train") or {}) - {"augment", "batch_size"}:
        raise ValueError(f"harmonization_train={params['harmonization_train']!r} is not valid; accepted: a mapping "
                         "with keys augment, batch_size")
    return build_settings(NOTEBOOK, params)


def regime_params(params: Mapping[str, Any], regime: str = "scratch") -> Mapping[str, Any]:
    """The parameters of a training regime: ``"scratch"`` (the headline, P3's own: every model from
    scratch, ``params`` as they are) or ``"finetune"`` (the second regime: ``params["finetune"]``'s
    ``pretrain_epochs``, ``num_epochs`` and ``grid`` over them; every model of a seed starts from
    the same ce model), checked as the headline's are."""
    if regime == "scratch":
        return params
    if regime != "finetune" or not params.get("finetune"):
        raise ValueError(f"regime={regime!r} is not valid; accepted: 'scratch'"
                         + (" or 'finetune'" if params.get("finetune") else " (this profile has no finetune regime)"))
    out = {**params, **params["finetune"], "finetune": None}
    if not isinstance(out.get("pretrain_epochs"), int) or out["pretrain_epochs"] < 1:
        raise ValueError(f"finetune's pretrain_epochs={out.get('pretrain_epochs')!r} is not valid; accepted: an int "
                         ">= 1 (the regime fine-tunes a ce model)")
    check_named_grid(out["grid"], set(SELECT_SCORE), lambda n, hp: _method(out, n, hp), key="finetune grid")
    return out


def _method(params, name, hp):
    """(training method name, its hyperparameters, epochs) of the notebook's model ``name``."""
    if name not in SPECS:
        raise ValueError(f"model {name!r} is not known; accepted: {list(SPECS)}")
    method, fixed = SPECS[name].method, SPECS[name].fixed
    kw = {**fixed, **(hp or {})}
    epochs = params["num_epochs"]
    if kw.get("mode") == "group":
        kw.setdefault("group_size", params["group_size"])
    if kw.get("training") == "free":  # free training replays each batch: the same number of steps
        kw.setdefault("replays", params["free_replays"])
        epochs = max(1, math.ceil(epochs / kw["replays"]))
    _methods.get(method, **kw)  # a bad setting fails here, before any work
    return method, kw, epochs


def gaze_maps(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """A gaze-like attention map from object masks (N, 1, H, W): the mask blurred by a Gaussian of
    ``sigma`` pixels, scaled to max 1 per image (P3 uses CUB-GHA's fixation maps, Gaussian-filtered
    fixations; on ``shapes`` the object stands in for where a person looks)."""
    from torchvision.transforms.functional import gaussian_blur

    m = masks.float()
    if sigma > 0:
        k = 2 * math.ceil(3 * sigma) + 1
        m = gaussian_blur(m, [k, k], [float(sigma), float(sigma)])
    return m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _with_gaze(ds, sigma):
    if "gaze" in ds.extras:
        return ds
    extras = {k: getattr(ds, k) for k in ds.extras}
    return ArrayDataset(ds.x, ds.y, num_classes=ds.num_classes, classes=ds.classes, name=ds.name,
                        split=ds.split, extras={**extras, "gaze": gaze_maps(ds.masks, sigma)})


def load_sets(params: Mapping[str, Any]) -> dict[str, BaseDataset]:
    """``{"train", "val", "test"}`` of the main dataset (``n_val`` training rows drawn with seed 0
    held out for selection) and ``{"harm_train", "harm_val", "harm_test"}`` for harmonization
    (``harmonization_dataset``, e.g. ``cub_gha`` with its gaze maps; None: the main sets, whose
    "gaze" are ``gaze_maps`` of the object masks, ``gaze_sigma``)."""
    def splits(name, size):
        size_kw = {"size": size} if size else {}
        full, test = load_data(params, name, "train", **size_kw), load_data(params, name, "test", **size_kw)
        if "gaze" not in full.extras and "masks" in full.extras:
            full, test = _with_gaze(full, params["gaze_sigma"]), _with_gaze(test, params["gaze_sigma"])
        train, val = split_validation(full, int(params["n_val"]), seed=0)
        return train, val, test

    out = dict(zip(("train", "val", "test"), splits(params["dataset"], params.get("size"))))
    harm = params.get("harmonization_dataset")
    out.update(zip(("harm_train", "harm_val", "harm_test"),
                   splits(harm, params.get("harmonization_size") or params.get("size"))
                   if harm and harm != params["dataset"] else (out["train"], out["val"], out["test"])))
    return out


def explain(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor,
            y: torch.Tensor) -> torch.Tensor:
    """P3's simple gradient of class ``y`` (its ``utils.simplegrad``: w.r.t. the *normalized* input
    for ``map_space="normalized"``, sigma_c * grad_x; ``"pixel"``: grad_x), detached."""
    return attributions.get("grad", space=params["map_space"])(model, x, y).detach()


def pretrained(params: Mapping[str, Any], train_set: BaseDataset, seed: int) -> torch.nn.Module | None:
    """The start of every model of ``seed``: ``ce`` for ``pretrain_epochs`` (P3's synthetic
    experiment fine-tunes an ImageNet-pretrained ResNet-34 for 10 epochs; here a ``ce`` model of
    the same data stands in), or None (``pretrain_epochs`` 0: from scratch, as on ImageNette)."""
    if not params["pretrain_epochs"]:
        return None
    return fit(params, train_set, "ce", seed=seed, num_epochs=params["pretrain_epochs"])


def fit_method(params: Mapping[str, Any], train_set: BaseDataset, name: str, seed: int,
               hp: Mapping[str, Any] | None = None, start: torch.nn.Module | None = None,
               num_epochs: int | None = None) -> torch.nn.Module:
    """Load-or-train the notebook's model ``name`` (``SPECS``) with hyperparameters ``hp`` from the
    weights of ``start`` (None: ``seed``'s initialisation); free training takes
    ceil(num_epochs / replays) epochs, so that every method makes as many optimizer steps."""
    return fit(params, train_set, **_fit_job(params, name, seed, hp, start, num_epochs))


def fit_methods(params: Mapping[str, Any], train_set: BaseDataset,
                configs: Sequence[tuple[str, int, Mapping[str, Any] | None, torch.nn.Module | None]]
                ) -> list[torch.nn.Module]:
    """``fit_method`` for each ``(name, seed, hp, start)`` of ``configs``, the fits not yet cached
    trained through the executor (``runs.fit_many``: in parallel on Dask workers when asked)."""
    return fit_many(params, train_set, [_fit_job(params, n, s, hp, start, None) for n, s, hp, start in configs],
                    desc=f"fits ({len(configs)})")


def _fit_job(params, name, seed, hp, start, num_epochs):
    method, kw, epochs = _method(params, name, hp)
    return {"method": method, "seed": seed, "method_kw": kw, "init_from": start,
            "num_epochs": num_epochs or epochs}


def _concentration(params, maps):
    pix = maps.abs().sum(1)
    return {"gini": metrics.gini(pix), "top-5% mass": metrics.top_mass(pix, 0.05),
            "group gini": metrics.group_gini(maps, params["group_size"]),
            GROUP_TRAINED: metrics.group_gini(maps, params["group_size"], per_channel=True)}


def select(params: Mapping[str, Any], sets: Mapping[str, BaseDataset],
           start: torch.nn.Module | None) -> dict[str, Any]:
    """Each method's hyperparameters from its grid, on the validation split (first seed): the
    highest validation score (``SELECT_SCORE``: Gini of the maps, group Gini for group) among the
    points whose validation accuracy is within ``selection_tol`` of ``ce``'s
    (``runs.select_hparams``).  Returns ``{"table", "chosen", "admissible", "ce_accuracy", "tol"}``,
    ``admissible``: ``{name: [hp, ...]}`` the grid points inside the accuracy band."""
    seed = params["seeds"][0]
    val = sets["val"]
    x, y = batch(val, params["eval_subset"])
    configs = [("ce", seed, None, start)] + [(n, seed, hp, start) for n, points in params["grid"].items()
                                             for hp in points]
    nets = iter(fit_methods(params, sets["train"], configs))
    ce_acc = metrics.accuracy(next(nets), batch(val))
    rows, chosen, admissible = [], {"ce": {}}, {}
    for name, points in params["grid"].items():
        scored = []
        for hp in points:
            net = next(nets)
            score = float(_concentration(params, explain(params, net, x, y))[SELECT_SCORE[name]].mean())
            scored.append({"method": LABELS[name], "hparams": _hp_text(hp), "validation accuracy":
                           metrics.accuracy(net, batch(val)), "validation score": score,
                           "score": SELECT_SCORE[name], "hp": hp})
        best, why = select_hparams(scored, ce_acc, params["selection_tol"], score="validation score",
                                   accuracy="validation accuracy")
        chosen[name] = scored[best]["hp"]
        admissible[name] = [r["hp"] for r in scored if r["validation accuracy"] >= ce_acc - params["selection_tol"]]
        rows += [{**r, "chosen": "✓ " + why if i == best else ""} for i, r in enumerate(scored)]
    table = pd.DataFrame(rows).drop(columns="hp")
    return {"table": table, "chosen": chosen, "admissible": admissible, "ce_accuracy": ce_acc,
            "tol": params["selection_tol"]}


def train_models(params: Mapping[str, Any], sets: Mapping[str, BaseDataset], chosen: Mapping[str, dict]
                 ) -> tuple[dict[tuple[str, int], torch.nn.Module], dict[int, torch.nn.Module | None]]:
    """``{(name, seed): model}`` for ``MAIN`` and ``params["variants"]`` with the ``chosen``
    settings, each from its seed's ``pretrained`` start; and ``{seed: start}``."""
    names = list(MAIN) + list(params.get("variants", []))
    seeds = params["seeds"]
    starts = dict.fromkeys(seeds)  # pretrained(): None from scratch, else ce for pretrain_epochs
    if params["pretrain_epochs"]:
        jobs = [{"method": "ce", "seed": s, "num_epochs": params["pretrain_epochs"]} for s in seeds]
        starts = dict(zip(seeds, fit_many(params, sets["train"], jobs)))
    keys = [(n, s) for s in seeds for n in names]
    nets = fit_methods(params, sets["train"], [(n, s, hp_of(SPECS, chosen, n), starts[s]) for n, s in keys])
    return dict(zip(keys, nets)), starts


def twins(params: Mapping[str, Any], sets: Mapping[str, BaseDataset], chosen: Mapping[str, dict],
          names: Sequence[str] = MAIN
          ) -> tuple[dict[tuple[str, int], torch.nn.Module], dict[int, BaseDataset]]:
    """P3's stability pairs (B.7): for each seed, ``n = swap_fraction x len(train)`` training rows
    are replaced by as many test rows (``runs.swap_samples``, drawn with the seed) and every model
    of ``names`` is trained again from seed + ``TWIN_SEED`` (its own pretrained start).  Returns
    ``({(name, seed): twin}, {seed: the common test set}``, the test rows neither model saw)."""
    out, common = {}, {}
    n = int(round(params["swap_fraction"] * len(sets["train"])))
    for s in params["seeds"]:
        train_b, common[s] = swap_samples(sets["train"], sets["test"], n, seed=s)
        start = pretrained(params, train_b, s + TWIN_SEED)
        for name in names:
            out[name, s] = fit_method(params, train_b, name, s + TWIN_SEED, hp_of(SPECS, chosen, name), start=start)
    return out, common


def _basic_rows(params, model, test, x, y, maps, seed):
    """Test accuracy, PGD accuracy on (x, y) and the concentration of ``maps`` (their means)."""
    return {"accuracy": metrics.accuracy(model, batch(test)),
            f"PGD ε{params['pgd_eps']:g} accuracy": metrics.adversarial_accuracy(
                model, x, y, attacks.get("pgd", eps=params["pgd_eps"], steps=params["pgd_steps"], seed=seed)),
            **{k: float(v.mean()) for k, v in _concentration(params, maps).items()}}


def _evaluate(params, model, test, x, y, masks, gaze, seed):
    x, y, masks, gaze = to_device_of(model, x, y, masks, gaze)
    maps = explain(params, model, x, y)
    pix = maps.abs().sum(1)
    rows = _basic_rows(params, model, test, x, y, maps, seed)
    if masks is not None:
        rows["object share"] = float(metrics.object_share(maps, masks).mean())
    for frac in (0.05, 0.10) if gaze is not None else ():
        rows[f"gaze overlap top {frac:.0%}"] = float(metrics.topk_intersection(pix.flatten(1), gaze.flatten(1), frac).mean())
    x_adv = attacks.topk(model, x, y, eps=params["topk_l2_eps"], steps=params["topk_steps"], k=params["topk_k"],
                         norm="l2", attribution_kw={"space": params["map_space"]})  # ranks the maps it scores
    adv = explain(params, model, x_adv, y)
    rows["top-k robustness"] = float(metrics.topk_intersection(pix, adv.abs().sum(1), params["topk_k"],
                                                               among="nonzero").mean())
    with seeded(seed):
        smooth = attributions.gradient.in_space(model, attributions.get(
            "smoothgrad", n=params["smoothgrad_n"], sigma=params["smoothgrad_sigma"])(model, x, y).detach(),
            params["map_space"])
    base = metrics.normalized_zero(model)  # removed pixels: the normalized input's zero, as P2's games
    post_maps = {"grad": maps, "sparsified grad": attributions.sparsify(maps, params["sparsify_q"]),
                 "smoothgrad": smooth, "sparsified smoothgrad": attributions.sparsify(smooth, params["sparsify_q"]),
                 "sparse moreaugrad": sparse_moreaugrad(params, model, x, y, smooth, seed)}
    for name, mm in post_maps.items():
        rows[f"gini ({name})"] = float(metrics.gini(mm.abs().sum(1)).mean())
        for steps in params["aopc_steps"]:
            rows[f"AOPC {steps} ({name})"] = float(metrics.aopc_mofr(
                model, x, y, mm, steps=steps, step_fraction=params["aopc_step_fraction"], baseline=base).mean())
    return {"rows": rows, "maps": maps[:4], "adv_maps": adv[:4], "adv_images": x_adv[:4],
            "post_maps": {k: v[:4] for k, v in post_maps.items()}}


def sparse_moreaugrad(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      smooth: torch.Tensor, seed: int) -> torch.Tensor:
    """Table 5's Sparse MoreauGrad: ``attributions.sparse_moreaugrad`` with ``MOREAU_KW``, SmoothGrad's
    noise (``smoothgrad_n`` draws, ``smoothgrad_sigma`` of each image's range in the map space) and
    the L1 weight eta of each image at the ``sparsify_q`` quantile of its |SmoothGrad| map
    (``smooth``), the threshold Sparsified-SmoothGrad uses: what is left is the envelope's move."""
    eta = smooth.abs().flatten(1).quantile(params["sparsify_q"], dim=1)
    norm = leading_normalize(model) if params["map_space"] == "normalized" else None
    with torch.no_grad():
        z = x if norm is None else norm(x)
    sigma = params["smoothgrad_sigma"] * float(z.max() - z.min())  # as smoothgrad's noise (the batch's range)
    return attributions.get("sparse_moreaugrad", **MOREAU_KW, n=params["smoothgrad_n"], sigma=sigma,
                            space=params["map_space"], seed=seed, eta=eta)(model, x, y).detach()


def eval_images(params: Mapping[str, Any], test: BaseDataset
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(x, y, object masks, gaze maps) of the first ``eval_subset`` test images (None where the
    dataset has no such extra: ImageNette has neither)."""
    x, y = batch(test, params["eval_subset"])
    masks, gaze = (getattr(test, k)[:len(x)] if k in test.extras else None for k in ("masks", "gaze"))
    return x, y, masks, None if gaze is None else (gaze.float() / 255 if gaze.dtype == torch.uint8 else gaze)


def evaluate(params: Mapping[str, Any], model: torch.nn.Module, test: BaseDataset,
             seed: int) -> dict[str, Any]:
    """Everything measured on one model (its first ``eval_subset`` test images), cached under the
    model's key and these settings: ``{"rows": {measure: value}, "maps", "adv_maps",
    "adv_images"}`` (the first 4 images, for the figures).  Measures: test accuracy, PGD
    accuracy, Gini / top-5% mass / group Gini and object share of the maps, their top-k
    overlap with the gaze map (5%, 10%), top-k robustness (top-k intersection among non-zero
    pixels, k = ``topk_k``, under P3's L2 top-k attack), and AOPC_MoFR of the grad and SmoothGrad
    maps with and without sparsification at each of ``aopc_steps``."""
    return cached_eval("p3_evaluate", model, params, lambda p: _evaluate(p, model, test, *eval_images(p, test), seed),
                       inputs={"test": test.fingerprint, "seed": seed})  # samples, labels, masks, gaze


def main_table(df: pd.DataFrame, measures: Sequence[str], names: Sequence[str],
               digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` over seeds of ``measures`` (columns) per model (rows, P3's labels)."""
    return claims.seed_table(df, measures, names, LABELS, digits)


def stability(params: Mapping[str, Any], trained: Mapping[tuple[str, int], torch.nn.Module],
              twin: Mapping[tuple[str, int], torch.nn.Module],
              common: Mapping[int, BaseDataset]) -> list[dict[str, Any]]:
    """P3's stability (B.7): per (name, seed), the top-k intersection (k = ``topk_k`` of the non-zero
    pixels) and the SSIM of the max-normalized maps of a model and its twin on the first
    ``eval_subset`` images of the common test set.  Rows ``{method, seed, measure, value}``."""
    rows = []
    for (name, s), b in twin.items():
        x, y = batch(common[s], params["eval_subset"])
        ma, mb = explain(params, trained[name, s], x, y), explain(params, b, x, y)
        rows += [{"method": name, "seed": s, "measure": "stability",
                  "value": float(metrics.topk_intersection(ma.abs().sum(1), mb.abs().sum(1), params["topk_k"],
                                                           among="nonzero").mean())},
                 {"method": name, "seed": s, "measure": "SSIM with twin",
                  "value": float(metrics.ssim(attributions.postprocess(ma, "max"), attributions.postprocess(mb, "max"),
                                              data_range=1.0).mean())}]
    return rows


def roar(params: Mapping[str, Any], trained: Mapping[tuple[str, int], torch.nn.Module],
         sets: Mapping[str, BaseDataset], names: Sequence[str] = MAIN) -> list[dict[str, Any]]:
    """DiffROAR (P3 Sec. 5.2, B.5) per (name, seed, fraction): ``runs.diff_roar`` with the model's
    P3 maps, a fresh ``ce`` model trained ``roar_epochs`` from the seed on each removed set.  Rows
    ``{method, seed, measure ("DiffROAR k%", "ROAR top k%", "ROAR bottom k%"), value}``."""
    explainer = attributions.get("grad", space=params["map_space"])
    rows = []
    for (name, s), model in trained.items():
        if name not in names:
            continue
        for frac in params["roar_fractions"]:
            r = diff_roar(params, model, sets["train"], sets["test"], frac, attribution=explainer, seed=s,
                          num_epochs=params["roar_epochs"])
            rows += [{"method": name, "seed": s, "measure": f"{label} {frac:.0%}", "value": r[key]}
                     for key, label in (("diff_roar", "DiffROAR"), ("top", "ROAR top"), ("bottom", "ROAR bottom"))]
    return rows


def randomization(params: Mapping[str, Any], trained: Mapping[tuple[str, int], torch.nn.Module],
                  test: BaseDataset,
                  names: Sequence[str] = MAIN) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """The model-parameter randomization test (P3 C.2.6, Figs. 11, 15): cascading randomization of
    each model (``evaluation.cascading_randomization`` with P3's maps), rows ``{method, seed,
    layers, randomized, ssim}`` and the maps of the first image per stage (``{name: (L+1, 1, H, W)}``,
    first seed)."""
    x, y, _, _ = eval_images(params, test)
    explainer = attributions.get("grad", space=params["map_space"])
    rows, maps = [], {}
    for (name, s), model in trained.items():
        if name not in names:
            continue
        stages = evaluation.cascading_randomization(model, x, y, attribution=explainer, seed=s)
        kinds = {n: type(m).__name__ for n, m in model.named_modules()}
        rows += [{"method": name, "seed": s, "layers": r["layers"], "ssim": r["ssim"],
                  "randomized": r["randomized"] if r["randomized"] == "none" else
                  f"{r['randomized']} ({kinds.get(r['randomized'], '?')})"} for r in stages]
        if s == params["seeds"][0]:
            maps[name] = torch.cat([r["maps"][:1] for r in stages])
    return pd.DataFrame(rows), maps


def random_labels(params: Mapping[str, Any], sets: Mapping[str, BaseDataset], chosen: Mapping[str, dict]
                  ) -> tuple[list[dict[str, Any]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The data randomization test (P3 C.2.6, Fig. 9) with its control: each model of
    ``random_labels_for`` trained from scratch (``pretrain_epochs + num_epochs``, its chosen
    setting, its seed) on the training set with permuted labels (``runs.permuted_labels``, per
    seed) and, trained exactly the same way, on the true labels (from scratch: in the headline
    regime this is the notebook's own model).  Rows ``{method, seed, labels ("permuted" |
    "true"), measure, value}``: test accuracy, the share of the most frequent prediction, the
    mean |map| relative to the true-label twin's, and the SSIM of the max-normalized maps with the
    true-label twin's; and the maps of the first 4 images (first seed) ``{name: (true, permuted)}``."""
    x, y, _, _ = eval_images(params, sets["test"])
    xt, yt = batch(sets["test"])
    rows, maps = [], {}
    epochs = params["pretrain_epochs"] + params["num_epochs"]
    for name in params["random_labels_for"]:
        hp = hp_of(SPECS, chosen, name)
        for s in params["seeds"]:
            nets = {"permuted": fit_method(params, permuted_labels(sets["train"], seed=s), name, s, hp, num_epochs=epochs),
                    "true": fit_method(params, sets["train"], name, s, hp, num_epochs=epochs)}
            mt = explain(params, nets["true"], x, y)
            for labels, net in nets.items():
                with torch.no_grad():
                    pred = net(*to_device_of(net, xt)).argmax(1)
                m = explain(params, net, x, y)
                rows += [{"method": name, "seed": s, "labels": labels, "measure": k, "value": v} for k, v in (
                    ("test accuracy", metrics.accuracy(net, (xt, yt))),
                    ("share of the most frequent prediction", float(pred.bincount().max()) / len(pred)),
                    ("mean |map| / true-label twin's", float(m.abs().mean() / mt.abs().mean().clamp_min(1e-30))),
                    (RAND_SSIM, float(metrics.ssim(attributions.postprocess(m, "max"),
                                                   attributions.postprocess(mt, "max"), data_range=1.0).mean())))]
                if s == params["seeds"][0] and labels == "permuted":
                    maps[name] = (mt[:4], m[:4])
    return rows, maps


def neighbours(params: Mapping[str, Any], sets: Mapping[str, BaseDataset], sel: Mapping[str, Any],
               trained: Mapping[tuple[str, int], torch.nn.Module],
               starts: Mapping[int, torch.nn.Module | None]) -> pd.DataFrame:
    """How the verdicts move with the selection: every admissible grid point of the norm-regularized
    methods (``sel["admissible"]``: validation accuracy within ``selection_tol`` of ce's) trained on
    every seed, and ``l1_mifgsm`` at each admissible ℓ1 ε (P3 compares MI-FGSM with FGSM at two
    magnitudes).  Rows ``{method, hparams, chosen, seed, measure, value}`` on the first
    ``eval_subset`` test images: test accuracy, PGD accuracy, Gini, group Gini (both groupings)."""
    configs = [(n, s, hp, starts[s]) for n in AT for hp in sel["admissible"].get(n, []) for s in params["seeds"]]
    if "l1_mifgsm" in params.get("variants", []):
        configs += [("l1_mifgsm", s, hp, starts[s]) for hp in sel["admissible"].get("l1", []) for s in params["seeds"]]
    nets = fit_methods(params, sets["train"], configs)
    x, y, _, _ = eval_images(params, sets["test"])
    rows = []
    for (name, s, hp, _), net in [*zip(configs, nets), *((("ce", s, {}, None), trained["ce", s])
                                                        for s in params["seeds"])]:
        xd, yd = to_device_of(net, x, y)
        values = _basic_rows(params, net, sets["test"], xd, yd, explain(params, net, xd, yd), s)
        grid = SPECS[name].grid
        rows += [{"method": name, "hparams": _hp_text(hp), "chosen": bool(grid) and hp == sel["chosen"].get(grid),
                  "seed": s, "measure": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows)


def neighbour_verdicts(params: Mapping[str, Any], nb: pd.DataFrame) -> pd.DataFrame:
    """The structure claims at every admissible ε (``neighbours``): each method's own measure (Gini;
    group: both group Ginis) against ce's, paired over seeds, as a family of one per row; and
    MI-FGSM's PGD accuracy against FGSM's (ℓ1) at each magnitude."""
    ce = nb[nb.method == "ce"]
    pgd = f"PGD ε{params['pgd_eps']:g} accuracy"
    plan = [(n, m, "ce") for n, ms in (("l1", ("gini",)), ("group", ("group gini", GROUP_TRAINED)),
                                       ("elastic", ("gini",))) for m in ms] + [("l1_mifgsm", pgd, "l1")]
    out = []
    for name, measure, against in plan:
        for hp, g in nb[nb.method == name].groupby("hparams", sort=False):
            ref = ce if against == "ce" else nb[(nb.method == against) & (nb.hparams == hp)]
            a, b = (d[d.measure == measure].sort_values("seed")["value"].to_numpy() for d in (g, ref))
            acc = (g[g.measure == "accuracy"]["value"].mean(), ref[ref.measure == "accuracy"]["value"].mean())
            row = claims.claim(f"{LABELS[name]} vs {LABELS[against]}", "", "", test=claims.paired_test(a, b))
            out.append({"method": LABELS[name], "ε": hp, "chosen": "✓" if g["chosen"].iloc[0] else "",
                        "measure": measure, "against": LABELS[against],
                        "test accuracy (method / against)": f"{acc[0]:.3f} / {acc[1]:.3f}",
                        "value": claims.fmt_ms(a), "against value": claims.fmt_ms(b),
                        "difference": row["difference"], "p (one-sided)": row["p (one-sided)"],
                        "verdict": row["verdict"]})
    return pd.DataFrame(out)


def harmonization(params: Mapping[str, Any], sets: Mapping[str, BaseDataset],
                  starts: Mapping[int, torch.nn.Module | None],
                  ce_models: Mapping[int, torch.nn.Module] | None = None
                  ) -> tuple[pd.DataFrame, dict[tuple[str, float], torch.Tensor], float, dict[str, Any]]:
    """P3's harmonization (Prop. 4, C.3.1, Table 6): ``weighted_l2`` (the gaze map as attention, as
    P3's ``cub_train.py``) against plain ``l2`` adversarial training at every eps of
    ``harmonize_grid``, per seed, on the harmonization sets; ``ce`` (eps 0) beside them.  Rows
    ``{method, eps, seed, split, measure, value}``: test accuracy, top-5% / top-10% overlap of
    the maps with the gaze map on test images and, for the selection, on validation images; and
    the maps of the first 4 test images (first seed).  The ε of the claims is chosen as the other
    settings are (``select``): the best validation top-5% overlap of ``weighted_l2`` within
    ``selection_tol`` of ``ce``'s validation accuracy (first seed), among the ε at which plain
    ``l2`` is within that band too (the two are compared at matched accuracy; all ε if none).

    Returns
    -------
    tuple
        ``(rows, maps, eps, images)``: the rows as a DataFrame, ``{(method, eps): maps}`` of the
        first 4 test images (first seed), the ε chosen for the claims, and ``{"x", "y", "gaze"}``
        of those 4 images.
    """
    same = sets["harm_train"] is sets["train"]
    if params.get("harmonization_train"):  # the harmonization set's own training settings (paper: CUB-GHA's)
        params, same = {**params, **params["harmonization_train"]}, False
    rows, maps = [], {}
    xt, yt, _, gt = eval_images(params, sets["harm_test"])
    xv, yv, _, gv = eval_images(params, sets["harm_val"])
    for s in params["seeds"]:
        start = starts[s] if same else pretrained(params, sets["harm_train"], s)
        models = {("ce", 0.0): ce_models[s] if same and ce_models else
                  fit_method(params, sets["harm_train"], "ce", s, start=start)}
        for hp in params["harmonize_grid"]:
            for name in HARMONIZATION:
                models[name, float(hp["eps"])] = fit_method(params, sets["harm_train"], name, s, hp, start=start)
        for (name, eps), net in models.items():
            rows += [{"method": name, "eps": eps, "seed": s, "split": split, "measure": "accuracy",
                      "value": metrics.accuracy(net, batch(sets[key]))}
                     for split, key in (("test", "harm_test"), ("validation", "harm_val"))]
            for split, (x, y, g) in (("test", (xt, yt, gt)), ("validation", (xv, yv, gv))):
                pix = explain(params, net, x, y).abs().sum(1)
                for frac in (0.05, 0.10):
                    rows.append({"method": name, "eps": eps, "seed": s, "split": split,
                        "measure": f"top {frac:.0%} overlap",
                        "value": float(metrics.topk_intersection(pix.flatten(1), g.flatten(1).to(pix.device),
                                                                 frac).mean())})
            if s == params["seeds"][0]:
                maps[name, eps] = explain(params, net, xt[:4], yt[:4])
    df = pd.DataFrame(rows)
    return df, maps, harmonization_eps(df, params["selection_tol"], params["seeds"][0]), \
        {"x": xt[:4], "y": yt[:4], "gaze": gt[:4]}


def harmonization_eps(df: pd.DataFrame, tol: float, seed: int) -> float:
    """The ε of the harmonization claims from ``harmonization``'s rows: the best validation top-5%
    overlap of ``weighted_l2`` (seed ``seed``) within ``tol`` of ``ce``'s validation accuracy, among
    the ε at which plain ``l2`` is within that band too (compared at matched accuracy; all ε if
    there is none)."""
    val = df[(df.split == "validation") & (df.seed == seed)].pivot_table(
        index=["method", "eps"], columns="measure", values="value")
    ref = float(val.loc[("ce", 0.0), "accuracy"])
    plain_ok = {e for (m, e), r in val.iterrows() if m == "l2" and r["accuracy"] >= ref - tol}
    cands = [{"eps": e, "accuracy": r["accuracy"], "score": r["top 5% overlap"]}
             for (m, e), r in val.iterrows() if m == "weighted_l2"]
    cands = [c for c in cands if c["eps"] in plain_ok] or cands
    best, _ = select_hparams(cands, ref, tol)
    return float(cands[best]["eps"])


def aopc_table(df: pd.DataFrame, names: Sequence[str],
               steps: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """P3 Table 5 per model: the relative AOPC_MoFR drop (%) of each post-processing against its base
    map (``POST_PROCESSING``: sparsified grad against grad; Sparsified-SmoothGrad and Sparse
    MoreauGrad against SmoothGrad), mean ± std over seeds; and the per-seed drops (long)."""
    rows = []
    for (name, s), g in df[df.method.isin(names)].groupby(["method", "seed"]):
        v = dict(zip(g.measure, g.value))
        for kind, key in POST_PROCESSING:
            for k in steps:
                base = v[f"AOPC {k} ({kind})"]
                rows.append({"method": name, "seed": s, "post-processing": key, "steps": k,
                    "drop %": 100 * (base - v[f"AOPC {k} ({key})"]) / base if base else float("nan")})
    long = pd.DataFrame(rows)
    table = long.groupby(["post-processing", "method", "steps"], sort=False)["drop %"].agg(
        lambda v: claims.fmt_ms(v, "{:.1f}")).unstack("steps")
    table.columns = [f"Δ AOPC {k} (%)" for k in table.columns]
    table.index = [f"{p} — {LABELS[m]}" for p, m in table.index]
    return table, long


def benchmark_table(path: str | os.PathLike | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """``make bench``'s record of one training step per method relative to ``ce``
    (``benchmarks/adversarial_training_cost.py``, interleaved side by side): median seconds, time
    and autograd-graph memory ratios, and the machine it ran on; (None, None) if it was never run."""
    return protocol.benchmark_table(
        "benchmark_adversarial_training_cost.json",
        lambda c: (f"{c['model']} width {c['width']}, {c['size']}x{c['size']}, batch {c['batch_size']}, "
                   f"{c['threads']} thread(s), median of {c['repeats']}"), path)


def _vals(df, name, measure):
    return df[(df.method == name) & (df.measure == measure)].sort_values("seed")["value"].to_numpy()


def _by(df, measure):
    """``name -> per-seed values of measure`` (``claims.compare``'s ``values``)."""
    return lambda name: _vals(df, name, measure)


_compare = functools.partial(claims.compare, label=LABELS.get)  # "A beats B" rows, methods by label


def structure_rows(params: Mapping[str, Any], df: pd.DataFrame, note: str = "") -> list[dict[str, Any]]:
    """The structure claims (sparsity, group sparsity, Gaussian noise, top-k robustness) from the
    evaluation records ``df`` of the main models and the variants; ``note`` is added to each row
    (e.g. the regime).  Not yet a family (``claim_rows`` / ``claims.family`` make one)."""
    base = df[df.method.isin(list(MAIN) + list(params.get("variants", [])))]
    chosen_on = "ε chosen on validation as the sparsest setting within the accuracy band"
    extra = f"; {note}" if note else ""
    gs = f"{params['group_size']}×{params['group_size']}"
    return [
        _compare(_by(base, "gini"), "l1", "ce", "ℓ1-norm AT gives sparser maps than standard training (Gini)",
                 "Fig. 7, C.1.1, Sec. 5", note=f"P3 shows it visually; the Gini is ours; {chosen_on}{extra}"),
        _compare(_by(base, "top-5% mass"), "l1", "ce",
                 "ℓ1-norm AT concentrates more of the map in its top 5% of pixels", "ours (a second sparsity measure)",
                 beyond_paper=True, note=note),
        _compare(_by(base, "group gini"), "group", "ce",
                 f"group-norm AT gives group-sparse maps (Gini of {gs} patch norms, channels together) vs standard "
                 "training", "Fig. 7, Prop. 2",
                 note=f"the group Gini is ours; {chosen_on} (this group Gini){extra}"),
        _compare(_by(base, GROUP_TRAINED), "group", "ce",
                 f"group-norm AT gives group-sparse maps in the groups it penalises (Gini of each channel's {gs} "
                 "patch norms) vs standard training", "Fig. 7, Prop. 2",
                 note=f"the groups of the training (adversarial_training.group_norms); ε chosen on the other grouping"
                 f"{extra}"),
        _compare(_by(base, "group gini"), "group", "l1", "group-norm AT gives more group-sparse maps than ℓ1-norm AT",
                 "ours (an extension of Prop. 2)", beyond_paper=True,
                 note="P3 C.1.1: 'different norm regularizations do not lead to quantitatively different "
                 f"visualizations'{extra}"),
        _compare(_by(base, "gini"), "elastic", "ce", "elastic-net AT gives sparser maps than standard training",
                 "main-text figure, Fig. 7 (C.1.1)", note=note),
        _compare(_by(base, "gini"), "noise", "ce",
                 "Gaussian-noise training gives (a little) sparser maps than standard training", "C.2.1, Fig. 8",
                 note=note),
        _compare(_by(base, "gini"), AT, "noise",
                 "every norm-regularized AT gives sparser maps than Gaussian-noise training", "C.2.1, Fig. 8", note=note),
        _compare(_by(base, "top-k robustness"), AT, "ce",
                 "every norm-regularized AT makes the maps more robust to the top-k attack", "Sec. 5.3, C.2.7",
                 note=f"L2 top-k attack ε {params['topk_l2_eps']:g}, k = {params['topk_k']:.0%} of non-zero pixels, "
                 f"ranking the maps it scores{extra}"),
    ]


def claim_rows(params: Mapping[str, Any], df: pd.DataFrame, aopc_long: pd.DataFrame, sanity: pd.DataFrame,
               rand_rows: Sequence[Mapping[str, Any]], harm: pd.DataFrame, harm_eps: float,
               nb: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """P3's claims (notebook 03) with paired one-sided tests over seeds: seed ``s`` of
    two methods shares its initialisation (or pretrained start) and data order.  ``nb``
    (``neighbours``): MI-FGSM against FGSM at every admissible ℓ1 ε."""
    ms, rows = claims.fmt_ms, structure_rows(params, df)
    base = df[df.method.isin(list(MAIN) + list(params.get("variants", [])))]
    rows.append(_compare(_by(base, "stability"), AT, "ce",
        "every norm-regularized AT makes the maps more stable across retraining", "Sec. 5.3, B.7",
        note=f"{params['swap_fraction']:.1%} of the training rows swapped, other seed"))
    for frac in params["roar_fractions"]:
        rows.append(_compare(_by(base, f"DiffROAR {frac:.0%}"), AT, "ce",
            f"every norm-regularized AT has a higher DiffROAR ({frac:.0%} removed)", "Sec. 5.2, B.5",
            note=f"retrained {params['roar_epochs']} epochs"))
    variants = [v for v in params.get("variants", []) if v != "l1_mifgsm"]
    if variants:
        rows.append(_compare(_by(base, "gini"), variants, "ce",
            "the iterative and free variants also give sparser maps than standard training",
            "C.2.2, Fig. 13"))
    if "l1_mifgsm" in params.get("variants", []):
        rows.append(_mifgsm_row(params, base, nb))
    for kind, key in POST_PROCESSING:
        for k in params["aopc_steps"]:
            d = aopc_long[(aopc_long.method == "ce") & (aopc_long["post-processing"] == key) & (aopc_long.steps == k)] \
                .sort_values("seed")["drop %"].to_numpy()
            order_kept = key != "sparse moreaugrad"
            rows.append(claims.claim(f"{key} loses fidelity: AOPC_MoFR ({k} steps) drops against {kind}",
                "Table 5", f"drop {ms(d, '{:.1f}')}% (standard model)", test=claims.paired_test(d, 0.0),
                paper_effect=TABLE5[key].get(k),
                note=f"soft threshold at the {params['sparsify_q']:.0%} quantile of |map|" if order_kept else
                f"L1 weight per image at the {params['sparsify_q']:.0%} quantile of |SmoothGrad|, ρ "
                f"{MOREAU_KW['rho']:g}, {MOREAU_KW['steps']} proximal steps",
                not_testable="decided by construction: AOPC_MoFR reads only the order of the pixels (channels "
                "summed), and a soft threshold keeps the order of every pixel whose channels all pass it; it "
                "only swaps near-ties among partly thresholded pixels and reorders the zeroed, least relevant "
                "tail, so this protocol can move AOPC by a few percent, not by P3's drops" if order_kept else None))
    s = sanity.groupby(["method", "seed"]).apply(lambda g: g.sort_values("layers")["ssim"].iloc[-1],
                                                 include_groups=False)
    tw = df[df.measure == "SSIM with twin"]
    tests = {n: claims.paired_test(_vals(tw, n, "SSIM with twin"), s[n].sort_index().to_numpy()) for n in MAIN}
    t = claims.all_pass(tests)
    rows.append(claims.claim(
        "maps pass the model-randomization test: fully randomized weights change them more than "
        "retraining on other samples does (SSIM)", "C.2.6, Figs. 11, 15",
        f"binding: {LABELS[t['against']]} randomized {ms(s[t['against']].to_numpy())} vs twin "
        f"{ms(_vals(tw, t['against'], 'SSIM with twin'))}", test=t,
        note="the pass criterion (below the retrained twin's SSIM) is ours"))
    rows += _random_label_rows(params, tw, pd.DataFrame(rand_rows))
    h = harm[(harm.split == "test")]
    for frac in ("5%", "10%"):
        m = f"top {frac} overlap"
        at_eps, at_0 = h[h.eps == harm_eps], h[h.eps == 0.0]
        w, l2, ce = _vals(at_eps, "weighted_l2", m), _vals(at_eps, "l2", m), _vals(at_0, "ce", m)
        p6 = TABLE6[0][0 if frac == "5%" else 1]
        rows.append(claims.claim(
            f"harmonization (weighted ℓ2 with the gaze map) aligns the top {frac} of the maps with "
            f"the gaze better than plain ℓ2 AT at the same ε ({harm_eps:g})", "Prop. 4, Fig. 12, Table 6",
            f"weighted {ms(w)} vs ℓ2 {ms(l2)}", test=claims.paired_test(w, l2),
            note=f"P3's plain ℓ2 stays at {min(v[0 if frac == '5%' else 1] for v in TABLE6.values()):.1f}–"
            f"{max(v[0 if frac == '5%' else 1] for v in TABLE6.values()):.1f}% (ε 0: {p6}%)"))
        rows.append(claims.claim(
            f"harmonization aligns the top {frac} of the maps with the gaze better than standard "
            "training", "C.3.1", f"weighted {ms(w)} vs standard {ms(ce)}", test=claims.paired_test(w, ce),
            note="gaze maps here: blurred object masks"))
    return claims.family(rows)


def _mifgsm_row(params, base, nb):
    """MI-FGSM against FGSM (ℓ1) in PGD accuracy: at every admissible ℓ1 ε (``nb``), all must hold
    (P3 C.2.3 shows two magnitudes); without ``nb`` at the chosen ε only."""
    pgd, ms = f"PGD ε{params['pgd_eps']:g} accuracy", claims.fmt_ms
    text = "MI-FGSM AT makes the network more robust than FGSM (ℓ1) AT"
    where = "C.2.3, Fig. 10"
    if nb is None or nb[nb.method == "l1_mifgsm"].empty:
        return _compare(_by(base, pgd), "l1_mifgsm", "l1", text, where,
                        note=f"at the chosen ε only; sparsity: MI-FGSM {ms(_vals(base, 'l1_mifgsm', 'gini'))}, "
                        f"FGSM {ms(_vals(base, 'l1', 'gini'))}")
    tests, accs = {}, []
    for hp, g in nb[nb.method == "l1_mifgsm"].groupby("hparams", sort=False):
        ref = nb[(nb.method == "l1") & (nb.hparams == hp)]
        tests[hp] = claims.paired_test(_vals(g, "l1_mifgsm", pgd), _vals(ref, "l1", pgd))
        accs.append(f"{hp}: clean {ms(_vals(g, 'l1_mifgsm', 'accuracy'))} vs {ms(_vals(ref, 'l1', 'accuracy'))}")
    t = claims.all_pass(tests)
    g, ref = (nb[(nb.method == n) & (nb.hparams == t["against"])] for n in ("l1_mifgsm", "l1"))
    return claims.claim(text, where, f"binding ε ({t['against']}): MI-FGSM {ms(_vals(g, 'l1_mifgsm', pgd))} vs FGSM "
                        f"{ms(_vals(ref, 'l1', pgd))}", test=t,
                        note="P3: momentum 'could improve the adversarial robustness' (Fig. 10 shows maps only); "
                        "tested at every admissible ℓ1 ε, each against FGSM at the same ε; " + "; ".join(accs))


def _random_label_rows(params, tw, rr):
    """The data-randomization claims against the true-label twins trained the same way (``random_labels``)."""
    ms, rows = claims.fmt_ms, []
    perm, true = rr[rr.labels == "permuted"], rr[rr.labels == "true"]
    tests = {n: claims.paired_test(_vals(tw, n, "SSIM with twin"), _vals(perm, n, RAND_SSIM))
             for n in params["random_labels_for"]}
    t = claims.all_pass(tests)
    rows.append(claims.claim(
        "maps pass the data-randomization test: a model trained on permuted labels has maps less "
        "like the true-label model's than a retrained twin's (SSIM)", "C.2.6, Fig. 9",
        f"binding: {LABELS[t['against']]} {ms(_vals(perm, t['against'], RAND_SSIM))} vs twin "
        f"{ms(_vals(tw, t['against'], 'SSIM with twin'))}", test=t,
        note="the true-label model is trained as the permuted one (from scratch, same epochs, setting and seed); "
        "the pass criterion (below the retrained twin's SSIM) is ours; P3 shows elastic-net AT only"))
    share = "share of the most frequent prediction"
    for n in params["random_labels_for"]:
        if n not in AT:
            continue
        sp, st = _vals(perm, n, share), _vals(true, n, share)
        collapsed = float(np.mean(st)) >= 0.95
        t = claims.all_pass({"the true-label twin": claims.paired_test(sp, st),
                             "95% of the test set": claims.paired_test(sp, 0.95)})
        rows.append(claims.claim(
            f"{LABELS[n]} AT on permuted labels predicts one class for (almost) every input (≥ 95% of the test "
            "set), unlike the same training on true labels", "C.2.6, Fig. 9",
            f"permuted {ms(sp)} vs true labels {ms(st)}", test=t,
            note="P3: 'exactly the same prediction'; the 95% threshold and the true-label control are ours",
            not_testable="decided by the training, not the labels: the true-label twin trained the same way "
            f"collapses to one class too (share {ms(st)})" if collapsed else None))
    return rows


def finetune_rows(params: Mapping[str, Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    """The structure claims (``structure_rows``) in the second regime (``regime_params(.., "finetune")``),
    a family of their own."""
    return claims.family(structure_rows(params, df, note=f"fine-tuned {params['num_epochs']} epochs from a ce model "
                                                         f"of {params['pretrain_epochs']} epochs"))


def checks(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor,
           y: torch.Tensor) -> dict[str, bool]:
    """Profile-independent checks on a trained model (compared by nbval at every profile)."""
    from .. import adversarial_training as at

    x, y = to_device_of(model, x, y)
    with torch.enable_grad():
        xr = x[:4].clone().requires_grad_(True)
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y[:4], reduction="sum"), xr)[0]
    s = params["group_size"]
    d_group = at.one_step_perturbation(g, "group", 0.3, group_size=s)
    d_l1 = at.one_step_perturbation(g, "l1", 0.1)
    gaze = 0.8 * torch.rand(4, 1, *x.shape[-2:], generator=torch.Generator().manual_seed(0)).to(g.device)
    d_w = at.one_step_perturbation(g, "weighted_l2", 0.5, attention=gaze)
    unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    norm = leading_normalize(model)
    maps = explain({**params, "map_space": "normalized"}, model, x[:4], y[:4])
    pixel = attributions.grad(model, x[:4], y[:4]).detach()
    sigma = norm.std.view(1, -1, 1, 1) if norm is not None else 1.0
    return {"ℓ1 one-step = eps sign(g) (FGSM)": bool(torch.equal(d_l1, 0.1 * g.sign())),
            f"group one-step: every {s}x{s} patch of each channel has norm eps": bool(
                torch.allclose(at.group_norms(d_group, s)[g != 0], g.new_tensor(0.3), atol=1e-5)),
            "weighted ℓ2 one-step = cub_train.py's 2 eps (0.5 - A) g / ||g|| (raw A, max below 1)": bool(
                torch.allclose(d_w, 2 * 0.5 * (0.5 - gaze) * unit, atol=1e-6)),
            "the maps are P3's simplegrad: sigma_c x the pixel gradient": bool(
                torch.allclose(maps, pixel * sigma, atol=1e-6))}
