"""P2 (Lim et al., CVPR 2021, RelEx): its facts and protocol on top of the library.

Facts: ``TABLE_S1`` (L2 size of P2's PGD perturbations per budget), ``TABLE_S3`` (deletion
and preservation on ImageNet, natural ResNet-50), ``EPS_NORMALIZED`` (P2's budgets in its
normalized units).  Protocol: ``settings`` (validated parameters), ``train_models`` (the
natural ``ce`` model and the robust one: ``at_pgd`` fine-tuning of it, per seed),
``explain`` / ``pixel_maps`` (each method's map and P2's post-processing, ``POSTPROCESS``),
``game_kw`` (P2's deletion/preservation conventions), ``evaluate`` (everything notebook 02
measures on one model and seed, cached), ``class_evidence`` (Fig. S5), ``tables`` and
``claim_rows`` (the claims with their paired tests over seeds).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .. import attacks, attributions, claims, metrics
from ..common import seeded, to_device_of
from ..settings import Settings
from ..settings import build as build_settings
from ..profiles import profile_params, resolve_device, train_config, validate
from ..runs import batch, cached_eval_many, fit_many, load_data

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..data import BaseDataset

__all__ = ["NOTEBOOK", "METHODS", "POSTPROCESS", "TABLE_S1", "TABLE_S2", "TABLE_S3", "EPS_NORMALIZED",
           "EXPLAINER_KW", "TARGETED", "TOPK_KW", "STRUCTURED_KW",
           "settings", "load_sets", "train_models", "pretrained", "test_images", "explainer_kw", "explain",
           "pixel_maps", "similarity_maps", "game_kw", "attack_label", "targeted_attacks", "structured_target",
           "clean_class_softmax", "map_panels",
           "evaluate", "evaluate_all", "class_evidence", "tables", "claim_rows", "model_table", "summary",
           "perturbation_table", "targeted_perturbation_table", "attack_success", "explainer_times",
           "form_comparison", "checks"]

NOTEBOOK = "02_relex"
METHODS = ("relex", "grad", "smoothgrad", "integrated_gradients", "deeplift", "gradcam")
LABELS = {"relex": "RelEx", "grad": "SimGrad", "smoothgrad": "SmGrad",
          "integrated_gradients": "IntGrad", "deeplift": "DeepLIFT", "gradcam": "GradCAM"}
# P2 S2.1: RelEx used as it is; GradCAM (and RT-Sal) min-max; the others |.| over channels
# normalized to their 99th percentile (SmoothGrad's convention).
POSTPROCESS = {"relex": "mean", "gradcam": "minmax"}
SHOWN_PARAMS = ("profile", "dataset", "model", "model_kw", "activation", "size", "n_train",
                "n_test", "num_epochs", "seeds", "eval_subset", "relex_preset", "relex_space",
                "explainer_settings", "pgd_eps", "predicted_class_eps", "targeted_methods", "topk_eps",
                "topk_k", "topk_steps", "structured_steps", "similarity_k", "robust", "evidence_classes",
                "evidence_images")
# Each baseline's settings (``explainer_settings``).  "p2_code": the released code's options.py
# and saliency classes -- SmoothGrad 50 draws of sigma 0.1 x each image's range on the normalized
# input, softmax; IntegratedGradient 100 points from the normalized zero, softmax, the code's
# alpha-weighted path; DeepLIFT (captum) on softmax from the normalized zero; GradCAM bilinear
# with align_corners=True, of the logit; SimpleGradient of the logit w.r.t. the normalized input.
# GradCAM's layer is the one deviation: P2's layer4 is the last stage's output after its ReLU
# (layer="block"); on the small CNN here that output gives an all-zero map for a sixth to
# almost half of the images (ReLU of a weighted sum of non-negative channels), which no rank
# similarity can score, so the map is taken at the last convolution's output (layer="conv").  "library": the library's defaults that notebook 02
# used before (SmoothGrad 16 draws of 0.15 x the batch range, IG 32 Gauss-Legendre points from
# black, DeepLIFT from black, GradCAM at the last conv, all on logits in pixel space).
EXPLAINER_KW = {
    "p2_code": {"grad": {"space": "normalized"},
                "smoothgrad": {"n": 50, "sigma": 0.1, "noise_range": "image", "output": "softmax",
                               "space": "normalized"},
                "integrated_gradients": {"steps": 100, "method": "p2_code", "baseline": "normalized_zero",
                                         "output": "softmax"},
                "deeplift": {"baseline": "normalized_zero", "output": "softmax"},
                "gradcam": {"layer": "conv", "align_corners": True}},
    "library": {"smoothgrad": {"n": 16, "sigma": 0.15}, "integrated_gradients": {"steps": 32}},
}
# The methods P2 attacks with its targeted attacks (SmGrad, IntGrad, GradCAM and RT-Sal; RT-Sal,
# a trained saliency network, is not part of this library).
TARGETED = ("smoothgrad", "integrated_gradients", "gradcam")
# P2's top-k attack as its code runs it (options.py, IterativeAttack): a step of 1 normalized
# unit (every iterate on a corner of the eps-box), softplus beta 30, the iterate with the smallest
# top-k intersection that keeps the label (the last one if none beats the clean image).
TOPK_KW = {"alpha": attacks.P2_TOPK_STEP, "softplus_beta": 30.0, "select": "intersection", "keep": "best_or_last"}
# P2's structured attack as its code runs it (ManipulationMethod): the last Adam iterate, no
# label check, no clamp (the code's clamp result is discarded), the target map and p(x) from the
# softplus-1000 network, and at each iteration the map of the class the network predicts there.
STRUCTURED_KW = {"keep": "last", "clip": False, "reference_beta": 1000.0, "map_class": "current"}
# P2's budgets in its normalized ImageNet units and Table S1 (L2 of the perturbation, same units).
EPS_NORMALIZED = (0.07, 0.1, 0.3, 1, 2, 4, 8)
TABLE_S1 = dict(zip(EPS_NORMALIZED, (17.8596, 24.3589, 67.5621, 215.2923, 405.0308, 680.0658,
                                     861.8575)))
TABLE_S3 = {"grad": (0.1336, 0.2519), "gradcam": (0.1232, 0.5647), "smoothgrad": (0.0800, 0.3845),
            "integrated_gradients": (0.0907, 0.3650), "deeplift": (0.0980, 0.3570),
            "relex": (0.0567, 0.4093)}  # (deletion, preservation)


def settings(profile: str, **notebook_params: Any) -> Settings:
    """The notebook's parameters over the profile and ``02_relex.yaml``, validated before any work."""
    params = validate(notebook=NOTEBOOK, **profile_params(profile, notebook=NOTEBOOK, **notebook_params))
    params.setdefault("attributions", list(METHODS))
    params.setdefault("relex_preset", "reference_code")
    params.setdefault("relex_space", "normalized")
    params.setdefault("explainer_settings", "p2_code")
    params.setdefault("targeted_methods", list(TARGETED))
    for key in ("weights", "robust_weights"):
        _weights_file(params, key)  # a missing file stops here, before any work
    train_config(params, cache_dir=None)
    unknown = [m for m in params["attributions"] if m not in METHODS]
    if unknown or params["attributions"][0] != "relex":
        raise ValueError(f"attributions={params['attributions']!r} is not valid; accepted: a list starting "
                         f"with 'relex', drawn from {list(METHODS)}")
    attributions.fitted.check_settings(params["relex_preset"], params["relex_space"])
    if not set(params["predicted_class_eps"]) <= set(params["pgd_eps"]):
        raise ValueError(f"predicted_class_eps={params['predicted_class_eps']!r} is not valid; accepted: a "
                         f"subset of pgd_eps={params['pgd_eps']!r}")
    bad = [m for m in params["targeted_methods"] if m not in attributions.DIFFERENTIABLE or m not in METHODS]
    if bad:
        raise ValueError(f"targeted_methods={params['targeted_methods']!r} is not valid; accepted: a list drawn "
                         f"from {[m for m in METHODS if m in attributions.DIFFERENTIABLE]} (differentiable maps)")
    for key in ("pgd_eps", "topk_eps"):
        for e in np.atleast_1d(params[key]):
            attacks.get("untargeted_pgd", eps=float(e))
    return build_settings(NOTEBOOK, params)


def _weights_file(params, key):
    """``params[key]`` (a file under ``data_root``, or an absolute path) as a Path, or None."""
    from pathlib import Path

    name = params.get(key)
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute():
        if params.get("data_root") is None:
            raise ValueError(f"{key}={name!r} is relative: give data_root (the folder holding it) or an absolute path")
        path = Path(params["data_root"]).expanduser() / path
    if not path.is_file():
        raise ValueError(f"{key}={str(path)!r} does not exist: put the torchvision state dict there "
                         f"(e.g. resnet50-0676ba61.pth from https://download.pytorch.org/models/); nothing is downloaded")
    return path


def pretrained(params: Mapping[str, Any], test_set: BaseDataset) -> dict[tuple[str, int], torch.nn.Module]:
    """P2's own setting: a trained torchvision model from local weights (``weights``, e.g.
    ``tv_resnet50`` on ``imagenet_val``), nothing trained; ``robust_weights`` adds a robust one
    (a torchvision-format state dict).  ``{("natural" | "robust", seed): model}`` for every seed
    (the same weights: seeds vary RelEx's and the attacks' draws), on the profile's device."""
    from .. import models

    out = {}
    for kind, key in (("natural", "weights"), ("robust", "robust_weights")):
        path = _weights_file(params, key)
        if path is None:
            continue
        net = models.build(params["model"], test_set.num_classes, tuple(test_set.in_shape),
                           weights_path=path).eval().to(resolve_device(params.get("device")))
        out.update({(kind, s): net for s in params["seeds"]})
    return out


def train_models(params: Mapping[str, Any], train_set: BaseDataset | None,
                 test_set: BaseDataset | None = None) -> dict[tuple[str, int], torch.nn.Module]:
    """``{("natural" | "robust", seed): model}``: ``ce`` per seed, and (``params["robust"]``) its
    ``at_pgd`` fine-tuning (``robust_kw``; P2's robust ResNet-50 is Madry's PGD training).
    With ``params["weights"]`` (P2's pretrained setting): ``pretrained(params, test_set)``."""
    if params.get("weights"):
        return pretrained(params, test_set)
    seeds = params["seeds"]
    natural = dict(zip(seeds, fit_many(params, train_set, [{"method": "ce", "seed": s} for s in seeds])))
    robust = fit_many(params, train_set, [
        {"method": "at_pgd", "seed": s, "init_from": natural[s], "method_kw": params["robust_kw"],
         "num_epochs": params["robust_epochs"], "lr": params["robust_lr"]}
        for s in seeds]) if params.get("robust") else []
    out = {}
    for i, s in enumerate(seeds):
        out["natural", s] = natural[s]
        if robust:
            out["robust", s] = robust[i]
    return out


def test_images(params: Mapping[str, Any],
                test_set: BaseDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, object masks) of the first ``eval_subset`` test images."""
    x, y = batch(test_set, params["eval_subset"])
    return x, y, test_set.masks[:len(x)]


def explainer_kw(params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The hyperparameters of ``method`` under ``params["explainer_settings"]`` (``EXPLAINER_KW``)."""
    return dict(EXPLAINER_KW[params.get("explainer_settings", "p2_code")].get(method, {}))


def explain(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor, method: str,
            target: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """The raw map of ``method`` for classes ``target`` (None: the prediction), with the settings
    of ``explainer_kw``.  The random draws of RelEx and SmoothGrad depend on ``seed`` and the
    images, so a clean image and its attacked copy get different draws (P2's code draws afresh
    in every call); "spearman (redraw)" in ``evaluate`` measures what fresh draws alone change."""
    x, target = to_device_of(model, x, target)
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(1)
    if method == "relex":
        return attributions.relex(model, x, target, preset=params["relex_preset"],
                                  space=params["relex_space"], seed=seed, iters=params.get("relex_iters"))
    # SmoothGrad's noise, like RelEx's, is seeded from the images: another image (an attacked
    # copy) gets fresh draws, as every call does in P2's code
    with seeded(attributions.fitted.image_seed(seed, x, int(torch.as_tensor(target).sum()))):
        return attributions.get(method, **explainer_kw(params, method))(model, x, target).detach()


def pixel_maps(method: str, raw: torch.Tensor) -> torch.Tensor:
    """P2's post-processing (``POSTPROCESS``): (N, 1, H, W) maps in [0, 1].  What the games, the
    retrieval and the figures use (P2's ``eval.py``: ``sal_normalize``)."""
    return attributions.postprocess(raw, POSTPROCESS.get(method, "p99"))


def similarity_maps(raw: torch.Tensor) -> torch.Tensor:
    """The maps P2's code compares (``eval.py``: ``rgb2gray``, the sum of |map| over channels, with
    no clipping), divided by their max: (N, 1, H, W).  Spearman and top-k intersection read only
    the order, so the scale does not matter; the 99th-percentile clipping of ``pixel_maps`` would
    tie the top 1% of pixels."""
    return attributions.postprocess(raw, "max")


def game_kw(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """P2's deletion / preservation conventions (its ``FieldMetric``, RISE's causal metric): one
    image row of pixels per step (224 of 224x224), into zeros of the *normalized* input (the
    dataset mean colour), scored by the softmax of the clean prediction."""
    return {"fractions": torch.linspace(0, 1, x.shape[-2] + 1).tolist(), "baseline": metrics.normalized_zero(model)}


def _games(model, x, pred, maps, gk):
    """(deletion curve, preservation curve, deletion AUC, preservation AUC) per image, P2's
    conventions ``gk`` (``game_kw``)."""
    dele = metrics.deletion_curve(model, x, pred, maps, **gk)
    pres = metrics.preservation_curve(model, x, pred, maps, **gk)
    fr = torch.tensor(gk["fractions"], device=dele.device)
    return dele, pres, torch.trapezoid(dele, x=fr, dim=1), torch.trapezoid(pres, x=fr, dim=1)


def attack_label(kind: str, attacked: str | None = None) -> str:
    """The name of an attack in the records: "PGD", "top-k on SmGrad", "structured on GradCAM"."""
    return "PGD" if kind == "pgd" else f"{'top-k' if kind == 'topk' else kind} on {LABELS[attacked]}"


def _normalized_l2(model, delta):
    """Per-image L2 norm of a perturbation in the model's normalized units (divided by its
    ``Normalize`` std per channel, as P2's Tables S1-S2 measure it; the pixel norm without one)."""
    from ..models import leading_normalize

    norm = leading_normalize(model)
    d = delta if norm is None else delta / norm._view(norm.std, delta)
    return d.flatten(1).norm(dim=1)


def _seed_of(seed, *parts):
    """A reproducible global-RNG seed for one attack run (SmoothGrad draws from the global RNG)."""
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(repr(parts).encode())) % (2 ** 31)


def targeted_attacks(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor,
                     target_x: torch.Tensor, seed: int = 0) -> dict[tuple, torch.Tensor]:
    """P2's two targeted attacks on each of ``params["targeted_methods"]``, as its code runs them
    (``TOPK_KW``, ``STRUCTURED_KW``; the attacked map with ``explainer_kw``'s settings):
    ``{("topk", method, eps): x_adv}`` for every ``topk_eps`` and ``{("structured", method): x_adv}``
    towards the map of the one image ``target_x`` (P2: one fixed photo of a tiger cat)."""
    out = {}
    for m in params["targeted_methods"]:
        kw = explainer_kw(params, m)
        for e in params["topk_eps"]:
            with seeded(_seed_of(seed, "topk", m, e)):
                out["topk", m, e] = attacks.topk(model, x, None, eps=e, k=params["topk_k"], steps=params["topk_steps"],
                                                 attribution=m, attribution_kw=kw, **TOPK_KW)
        with seeded(_seed_of(seed, "structured", m)):
            out["structured", m] = attacks.structured(model, x, None, target_x=target_x,
                                                      steps=params["structured_steps"], attribution=m,
                                                      attribution_kw=kw, **STRUCTURED_KW)
    return out


def _scores(model, x, pred, maps, base):
    """Softmax of ``pred`` under each image's explanation m * x (P2's numbers under its maps)."""
    p = metrics.explanation_probs(model, x, maps, base)
    return p.gather(1, pred.view(-1, 1)).squeeze(1)


def _evaluate(params, model, x, y, masks, target_x, seed, targeted):
    x, y, masks, target_x = to_device_of(model, x, y, masks, target_x)
    with torch.no_grad():
        pred = model(x).argmax(1)
    meths, k = params["attributions"], params["similarity_k"]
    gk = game_kw(model, x)
    base = gk["baseline"]
    raw = {m: explain(params, model, x, m, target=pred, seed=seed) for m in meths}
    clean = {m: pixel_maps(m, r) for m, r in raw.items()}
    clean_sim = {m: similarity_maps(r) for m, r in raw.items()}
    rows, curves, scores, adv_maps, adv_images = [], {}, {}, {}, {}

    def add(measure, method, value, eps=None, attack=None):
        rows.append({"measure": measure, "method": method, "eps": eps, "attack": attack, "value": float(value)})

    for m in meths:
        dele, pres, d_auc, p_auc = _games(model, x, pred, clean[m], gk)
        curves[m] = (dele.mean(0), pres.mean(0))
        add("deletion", m, d_auc.mean())
        add("preservation", m, p_auc.mean())
        add("object share", m, metrics.object_share(clean[m], masks).mean())
        add("retrieval (clean)", m, metrics.retrieval_rate(model, x, pred, clean[m], base).mean())
        flat = clean_sim[m].flatten(1)
        add("flat map", m, (flat.amax(1) == flat.amin(1)).float().mean())  # no order to compare
        scores["clean", m] = _scores(model, x[:4], pred[:4], clean[m][:4], base)
        redraw = similarity_maps(explain(params, model, x, m, target=pred, seed=seed + 1000))
        add("spearman (redraw)", m, metrics.spearman(clean_sim[m], redraw).mean())

    def attacked_set(key, attack, eps, xa, games=False):
        """Every method's maps of the attacked images ``xa`` (explaining the clean prediction, as
        P2's generate.py), scored against the clean maps."""
        d = xa - x
        with torch.no_grad():
            flipped = (model(xa).argmax(1) != pred).float()
        l2 = _normalized_l2(model, d)
        add("label changed", None, flipped.mean(), eps, attack)
        add("L2 of perturbation", None, d.flatten(1).norm(dim=1).mean(), eps, attack)
        for stat in ("mean", "min", "max"):
            add(f"L2 normalized ({stat})", None, getattr(l2, stat)(), eps, attack)
        for m in meths:
            r = explain(params, model, xa, m, target=pred, seed=seed)
            am = pixel_maps(m, r)
            sim = similarity_maps(r)
            adv_maps[key, m] = am[:4]
            adv_images[key] = xa[:4]
            scores[key, m] = _scores(model, xa[:4], pred[:4], am[:4], base)
            add("spearman", m, metrics.spearman(clean_sim[m], sim).mean(), eps, attack)
            add("top-k intersection", m, metrics.topk_intersection(clean_sim[m], sim, k).mean(), eps, attack)
            for name, img, mp in (("retrieval x'·m'", xa, am), ("retrieval x'·m", xa, clean[m]),
                                  ("retrieval x·m'", x, am)):
                add(name, m, metrics.retrieval_rate(model, img, pred, mp, base).mean(), eps, attack)
            if games:  # P2 Figs. S3-S4: the attacked image's map, played on the clean image
                _, _, d_auc, p_auc = _games(model, x, pred, am, gk)
                add("deletion", m, d_auc.mean(), eps, attack)
                add("preservation", m, p_auc.mean(), eps, attack)
        return am

    for e in params["pgd_eps"]:
        xa = attacks.untargeted_pgd(model, x, None, eps=e, seed=seed)
        attacked_set(("pgd", e), "PGD", e, xa, games=True)
        if e in params["predicted_class_eps"]:  # the alternative: each map explains x_adv's own prediction
            for m in meths:
                sim = similarity_maps(explain(params, model, xa, m, seed=seed))
                add("spearman (predicted class)", m, metrics.spearman(clean_sim[m], sim).mean(), e, "PGD")
                add("top-k intersection (predicted class)", m,
                    metrics.topk_intersection(clean_sim[m], sim, k).mean(), e, "PGD")
    target_maps = {}
    if targeted:
        with torch.no_grad():
            target_pred = model(target_x).argmax(1)
        t_raw = {m: explain(params, model, target_x, m, target=target_pred, seed=seed) for m in meths}
        target_maps = {m: pixel_maps(m, r) for m, r in t_raw.items()}
        for key, xa in targeted_attacks(params, model, x, target_x, seed).items():
            kind, attacked = key[0], key[1]
            eps = key[2] if kind == "topk" else None
            attacked_set(key, attack_label(kind, attacked), eps, xa)
            if kind == "structured":  # how close the attacked map came to the target map
                t_sim = similarity_maps(t_raw[attacked]).expand(len(x), -1, -1, -1)
                after = similarity_maps(explain(params, model, xa, attacked, target=pred, seed=seed))
                for when, maps in (("clean", clean_sim[attacked]), ("attacked", after)):
                    add(f"spearman to the target map ({when})", attacked, metrics.spearman(maps, t_sim).mean(),
                        None, attack_label(kind, attacked))
    return {"rows": rows, "curves": curves, "clean_maps": {m: v[:4] for m, v in clean.items()},
            "adv_maps": adv_maps, "adv_images": adv_images, "scores": scores, "target_image": target_x,
            "target_maps": target_maps}


def clean_class_softmax(model: torch.nn.Module, images: torch.Tensor, x_clean: torch.Tensor) -> torch.Tensor:
    """The model's softmax of the clean prediction (of ``x_clean``, one image or one per image)
    on each of ``images`` (P2's number under each image of Figs. S6-S9)."""
    images, x_clean = to_device_of(model, images, x_clean)
    with torch.no_grad():
        pred = model(x_clean).argmax(1).expand(len(images))
        return model(images).softmax(1).gather(1, pred.view(-1, 1)).squeeze(1).cpu()


def map_panels(params: Mapping[str, Any], out: Mapping[str, Any], model: torch.nn.Module, x_clean: torch.Tensor,
               keys: Sequence[tuple], target: bool = False, index: int = 0) -> dict[str, Any]:
    """``plotting.map_grid``'s arguments for image ``index`` of an ``evaluate`` output: the clean
    image, (``target``) the structured attack's target image, then the attacked images ``keys``
    (``("pgd", eps)``, ``("topk", method, eps)``, ``("structured", method)``); a column per method.
    Under each image the model's softmax of the clean prediction, under each map that of its
    explanation m * x (P2 Figs. S6-S9)."""
    meths = params["attributions"]
    extra = [out["target_image"][0]] if target else []
    imgs = torch.stack([x_clean[index]] + extra + [out["adv_images"][k][index] for k in keys])
    maps = {LABELS[m]: torch.stack([out["clean_maps"][m][index]] + ([out["target_maps"][m][0]] if target else [])
                                   + [out["adv_maps"][k, m][index] for k in keys]) for m in meths}
    notes = {LABELS[m]: [f"{float(out['scores']['clean', m][index]):.2f}"] + ([""] if target else [])
             + [f"{float(out['scores'][k, m][index]):.2f}" for k in keys] for m in meths}
    notes["input"] = [f"{float(v):.2f}" for v in clean_class_softmax(model, imgs, x_clean[index:index + 1])]
    if target:
        notes["input"][1] = "target"
    rows = ["clean"] + (["target"] if target else []) + [
        f"PGD ε{k[1]:g}" if k[0] == "pgd" else attack_label(k[0], k[1]).replace(" on ", "\non ")
        + (f" ε{k[2]:g}" if len(k) > 2 else "") for k in keys]
    return {"images": imgs, "maps": maps, "row_labels": rows, "notes": notes}


def structured_target(params: Mapping[str, Any], test_set: BaseDataset) -> torch.Tensor:
    """The one image whose map the structured attack aims at, (1, C, H, W): the first test image
    after the ``eval_subset`` explained ones (P2 aims every attack at one photo of a tiger cat)."""
    x, _ = batch(test_set, params["eval_subset"] + 1)
    return x[-1:]


def _evaluate_job(params, model, item, test_set):
    """One model's evaluation (``evaluate``): ``item`` = (kind, seed); module-level, so that an
    executor's worker can run it."""
    kind, seed = item
    return _evaluate(params, model, *test_images(params, test_set), structured_target(params, test_set), seed,
                     kind == "natural")


def _inputs(test_set, kind, seed):
    return {"test": test_set.fingerprint, "seed": seed, "targeted": kind == "natural"}


def _tag(out, kind, seed):
    for r in out["rows"]:
        r.update(model=kind, seed=seed)
    return out


def evaluate(params: Mapping[str, Any], model: torch.nn.Module, kind: str, test_set: BaseDataset,
             seed: int) -> dict[str, Any]:
    """Everything notebook 02 measures on one model and seed (cached under the model's key and
    the settings that determine it): rows ``{measure, method, eps, attack, value}`` (means over
    the ``eval_subset`` test images), deletion / preservation curves, and maps of the first 4
    images clean and attacked (for the figures).  Every map explains the *clean* prediction, on
    attacked images too (P2's ``generate.py`` fixes ``target_cls`` on the clean image); the
    predicted-class alternative is scored at ``predicted_class_eps``.  The targeted attacks
    (``targeted_attacks``) run on the natural model only, as P2 reports them.  ``evaluate_all``
    runs several models through the executor.

    Returns
    -------
    dict
        ``"rows"`` (list of ``{measure, method, eps, attack, value, model: kind, seed}``),
        ``"curves"`` (``{method: (deletion curve, preservation curve)}``), ``"clean_maps"``
        (``{method: maps}``), ``"adv_maps"`` (``{(attack key, method): maps}``; keys
        ``("pgd", eps)``, ``("topk", method, eps)``, ``("structured", method)``),
        ``"adv_images"`` (``{attack key: images}``), ``"scores"`` (``{("clean" or key, method):
        softmax of the clean prediction under each explanation}``), ``"target_image"`` and
        ``"target_maps"`` (``{method: map of the target image}``); maps, images and scores of
        the first 4 images.
    """
    return evaluate_all(params, {(kind, seed): model}, test_set)[kind, seed]


def evaluate_all(params: Mapping[str, Any], trained: Mapping[tuple[str, int], torch.nn.Module],
                 test_set: BaseDataset) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(kind, seed): evaluate(params, model, kind, test_set, seed)}`` for every model of
    ``trained``, the uncached ones through the executor (``runs.cached_eval_many``: Dask workers
    with ``ROBUST_SALIENCY_WORKERS``, else one after the other here)."""
    keys = list(trained)
    outs = cached_eval_many("p2_evaluate", params, [(trained[k], _inputs(test_set, *k), k) for k in keys],
                            _evaluate_job, shared=(test_set,), labels=[f"{k[0]} seed {k[1]}" for k in keys],
                            desc="evaluate models")
    return {k: _tag(o, *k) for k, o in zip(keys, outs)}


def class_evidence(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor,
                   classes: Sequence[int], seed: int = 0,
                   methods: Sequence[str] = ("relex", "grad")) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """P2 Fig. S5: explain each class of ``classes`` (whatever the prediction) and return the
    softmax over all classes of each explanation: ``{method: (len(classes), K)}`` (mean over
    images) and rows ``{method, class, retrieval}`` (share of images whose explanation of
    the class is classified as that class)."""
    (x,) = to_device_of(model, x)
    base = game_kw(model, x)["baseline"]
    probs, rows = {}, []
    for m in methods:
        per = []
        for c in classes:
            t = torch.full((len(x),), int(c), dtype=torch.long)
            e = pixel_maps(m, explain(params, model, x, m, target=t, seed=seed))
            p = metrics.explanation_probs(model, x, e, base)
            per.append(p.mean(0))
            rows.append({"method": m, "class": int(c), "seed": seed,
                "retrieval": float((p.argmax(1) == c).float().mean())})
        probs[m] = torch.stack(per)
    return probs, rows


def tables(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records (all rows of ``evaluate``) as one long DataFrame with method labels."""
    df = pd.DataFrame(records)
    df["label"] = df["method"].map(LABELS)
    return df


def _vals(df, measure, method, model="natural", eps=None, attack=None):
    """Per-seed values of ``measure`` (sorted by seed); ``attack`` None: the clean images, or
    "PGD" when ``eps`` is given."""
    attack = "PGD" if attack is None and eps is not None else attack
    q = (df.measure == measure) & (df.model == model)
    q &= df.method.isna() if method is None else (df.method == method)
    q &= df.attack.isna() if attack is None else (df.attack == attack)
    if eps is not None:
        q &= df.eps == eps
    return df[q].sort_values("seed")["value"].to_numpy()


def _by(df, measure, eps=None, model="natural", attack=None):
    """``method -> per-seed values of measure`` (``claims.compare``'s ``values``)."""
    return lambda method: _vals(df, measure, method, model, eps, attack)


_compare = functools.partial(claims.compare, label=LABELS.get)  # "A beats B" rows, methods by label


def claim_rows(params: Mapping[str, Any], df: pd.DataFrame,
               evidence: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """P2's claims with paired one-sided tests over seeds (natural model).  Every similarity row
    compares maps that explain the clean prediction (P2's code); the predicted-class variant,
    the top-k intersection and the robust-model comparison are ours ("beyond the paper"); the
    games, the retrievals and the class evidence score RelEx's own objective ("not testable
    here")."""
    ms, meths = claims.fmt_ms, params["attributions"]
    base = [m for m in meths if m != "relex"]
    rows = []
    redraw = f"RelEx's own redraw floor: {ms(_vals(df, 'spearman (redraw)', 'relex'))}"

    smallest = min(attacks.p2_eps(k) for k in EPS_NORMALIZED)  # P2's smallest budget in 0-255 units
    for e in params["pgd_eps"]:
        below = e < smallest - 0.5
        rows.append(_compare(_by(df, "spearman", eps=e), "relex", base,
            f"RelEx maps stay more similar (Spearman) under untargeted PGD ε {e:g}/255 "
            "than every baseline",
            "Fig. 3 (main paper), via S3.1" + (" (a budget below P2's grid)" if below else ""),
            note="every map explains the clean prediction, as P2's generate.py; labels changed: "
            f"{ms(_vals(df, 'label changed', None, eps=e))}; {redraw}", beyond_paper=below))
    for e in params["predicted_class_eps"]:
        rows.append(_compare(_by(df, "spearman (predicted class)", eps=e), "relex", base,
            "RelEx maps stay more similar than every baseline when each map of the image attacked at "
            f"ε {e:g}/255 explains that image's own prediction", "ours (a variant of Fig. 3's protocol)",
            note=redraw, beyond_paper=True))
    e0 = next((e for e in params["pgd_eps"] if e >= 4), params["pgd_eps"][0])  # P2's smallest budget
    rows.append(_compare(_by(df, "top-k intersection", eps=e0), "relex", base,
        f"RelEx keeps more of its top-k under PGD ε {e0:g}/255 than every baseline", "ours (Fig. S1's measure)",
        note=f"k = {params['similarity_k']} of the pixels; P2 (S3.2) presents the top-k intersection as a "
        "measure unrelated to fidelity and draws no ranking from it", beyond_paper=True))
    best = min(v[0] for m, v in TABLE_S3.items() if m != "relex")
    rows.append(_compare(_by(df, "deletion"), "relex", base, "RelEx has the best (lowest) deletion score",
        "Table S3", alternative="less", paper_effect=TABLE_S3["relex"][0] - best,
        not_testable="deletion removes the map's top pixels into the normalized zero in which RelEx's "
        "objective already minimises p_c((1 − m) ⊙ x): the game scores RelEx's own objective"))
    among = [m for m in base if m != "gradcam"]
    rows.append(_compare(_by(df, "preservation"), "relex", among,
        "RelEx preserves better than every baseline but GradCAM", "Table S3",
        paper_effect=TABLE_S3["relex"][1] - max(TABLE_S3[m][1] for m in among),
        note="P2's text claims the best preservation; its Table S3 has GradCAM ahead",
        not_testable="preservation keeps the map's top pixels and scores p_c(m ⊙ x), the first term of "
        "RelEx's objective"))
    clean = _vals(df, "retrieval (clean)", "relex")
    why = ("RelEx's explanation is optimised to be classified as the class it explains, which the attack "
           "keeps: it scores 1 already on clean images")
    top_eps = max(params["topk_eps"]) if len(params["topk_eps"]) else None
    for attacked in params["targeted_methods"]:
        for kind, eps, paper in (("topk", top_eps, "Fig. S2, S9"), ("structured", None, "Fig. S8, S3.7.3")):
            name = attack_label(kind, attacked)
            if not len(_vals(df, "retrieval x'·m'", "relex", eps=eps, attack=name)):
                continue
            rows.append(_compare(_by(df, "retrieval x'·m'", eps=eps, attack=name), "relex", base,
                f"RelEx explanations keep the class under the {'top-k' if kind == 'topk' else kind} attack on "
                f"{LABELS[attacked]}" + (f" (ε {eps:g}/255)" if eps is not None else "")
                + " better than every baseline", paper,
                note=f"the other maps see a transferred attack; RelEx on clean images: {ms(clean)}",
                not_testable=why))
    ev = pd.DataFrame(evidence).groupby(["method", "seed"])["retrieval"].mean()
    if {"relex", "grad"} <= set(ev.index.get_level_values(0)):
        r, g = ev["relex"].sort_index().to_numpy(), ev["grad"].sort_index().to_numpy()
        rows.append(claims.claim(
            "RelEx explanations of a chosen (non-predicted) class carry that class's evidence, more than "
            "SimGrad's", "ours (Fig. S5 shows RelEx alone)",
            f"classified as the chosen class: RelEx {ms(r)} vs SimGrad {ms(g)}",
            test=claims.paired_test(r, g), note="P2 shows RelEx's explanations alone; the comparison is ours",
            beyond_paper=True,
            not_testable="RelEx optimises p_c(m ⊙ x) for the requested class c, and the test "
            "scores whether m ⊙ x is classified as c"))
    if params.get("robust"):
        t = claims.paired_test(_vals(df, "spearman", "relex", "robust", e0), _vals(df, "spearman", "relex", "natural", e0))
        rows.append(claims.claim(f"RelEx maps are more stable on the robust model (Spearman, ε {e0:g}/255)",
            "ours (S3.7.2 shows robust-model maps qualitatively)",
            f"robust {ms(_vals(df, 'spearman', 'relex', 'robust', e0))} vs natural "
            f"{ms(_vals(df, 'spearman', 'relex', 'natural', e0))}", test=t, beyond_paper=True,
            note="every method is more stable on the robust model, whose labels PGD changes less"))
    return claims.family(rows)


def load_sets(params: Mapping[str, Any]) -> tuple[BaseDataset | None, BaseDataset]:
    """(train, test) sets of the profile (``size`` for the embedded image sets); train is None
    for pretrained weights (``params["weights"]``: nothing is trained, e.g. ``imagenet_val``)."""
    size_kw = {"size": params["size"]} if params.get("size") else {}
    train = None if params.get("weights") else load_data(params, params["dataset"], "train", **size_kw)
    return train, load_data(params, params["dataset"], "test", **size_kw)


def model_table(params: Mapping[str, Any], trained: Mapping[tuple[str, int], torch.nn.Module],
                test_set: BaseDataset, eps: float = 4) -> pd.DataFrame:
    """Clean test accuracy and accuracy under P2's PGD (ε ``eps``) of every model and seed."""
    x, y = batch(test_set)
    xe, ye = x[:params["eval_subset"] * 8], y[:params["eval_subset"] * 8]
    rows = []
    for (kind, s), m in trained.items():
        rows.append({"model": kind, "seed": s, "accuracy": metrics.accuracy(m, (x, y)),
            f"PGD ε{eps} accuracy": metrics.adversarial_accuracy(
                m, xe, ye, attacks.get("untargeted_pgd", eps=eps, seed=s))})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, measures: Sequence[str], index: Sequence[str] = ("model", "attack", "measure", "eps"),
            digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` over seeds per method label (columns) for ``measures``."""
    sub = df[df.measure.isin(measures)].copy()
    sub["eps"] = sub["eps"].fillna("–")
    sub["attack"] = sub["attack"].fillna("clean")
    idx = [i for i in index if sub[i].nunique() > 1 or i == "measure"]
    out = sub.groupby(idx + ["label"], sort=False)["value"].agg(lambda v: claims.fmt_ms(v, f"{{:.{digits}f}}"))
    return out.unstack("label")[[LABELS[m] for m in METHODS if LABELS[m] in set(sub.label)]]


def _pixels_ratio(size):
    """sqrt(our pixel count / P2's 224 x 224): how an L2 norm of the same per-pixel size scales."""
    return float(np.sqrt(size * size / 224 ** 2)) if size else None


def perturbation_table(df: pd.DataFrame, size: int | None = None) -> pd.DataFrame:
    """Table S1 at our scale: the L2 size of the PGD perturbation per ε, in input units and in the
    model's normalized units (P2's, per channel divided by the std), the share of changed labels,
    and P2's value at the same ε: as printed (224 x 224) and scaled to ``size`` x ``size`` images
    (times sqrt(size² / 224²): the norm of a perturbation of the same size per pixel)."""
    rows, r = [], _pixels_ratio(size)
    pgd = df[df.attack == "PGD"]
    for (kind, e), g in pgd[pgd.method.isna()].groupby(["model", "eps"]):
        p2_eps = [k for k in EPS_NORMALIZED if abs(attacks.p2_eps(k) - e) < 1]
        p2_l2 = TABLE_S1.get(p2_eps[0]) if p2_eps else None
        rows.append({"model": kind, "ε (0-255)": e, "ε (normalized)": round(e / 255 / attacks._IMAGENET_STD, 3),
            "L2 (input units)": claims.fmt_ms(g[g.measure == "L2 of perturbation"]["value"]),
            "L2 (normalized)": claims.fmt_ms(g[g.measure == "L2 normalized (mean)"]["value"]),
            "labels changed": claims.fmt_ms(g[g.measure == "label changed"]["value"]),
            "P2 L2 (normalized, 224x224)": p2_l2,
            f"P2 L2 scaled to {size}x{size}": None if p2_l2 is None or r is None else round(p2_l2 * r, 3)})
    return pd.DataFrame(rows)


# P2 Table S2: L2 (normalized units, 224 x 224) of the targeted perturbations on the natural
# ResNet-50, (min, avg, max) per attacked method (RT-Sal left out: not in this library).
TABLE_S2 = {"structured": {"integrated_gradients": (14.951, 628.346, 1007.269),
                           "smoothgrad": (21.448, 628.28, 1005.27), "gradcam": (15.345, 628.123, 1006.802)},
            "topk": {"integrated_gradients": (8.609, 54.487, 170.175), "smoothgrad": (3.301, 16.847, 22.06),
                     "gradcam": (3.02, 49.815, 169.387)}}


def targeted_perturbation_table(df: pd.DataFrame, size: int | None = None) -> pd.DataFrame:
    """Table S2 at our scale: min / mean / max over the images (top-k: and over its budgets) of
    the L2 size of each targeted perturbation in normalized units, mean ± std over seeds, the
    share of changed labels, and P2's (min, avg, max) as printed and scaled to ``size``."""
    rows, r = [], _pixels_ratio(size)
    nat = df[(df.model == "natural") & df.method.isna() & df.attack.notna() & (df.attack != "PGD")]
    for attack, g in nat.groupby("attack", sort=False):
        kind = "topk" if attack.startswith("top-k") else "structured"
        attacked = next(m for m in METHODS if attack == attack_label(kind, m))
        per_seed = {}
        for stat, agg in (("min", "min"), ("mean", "mean"), ("max", "max")):
            per_seed[stat] = g[g.measure == f"L2 normalized ({stat})"].groupby("seed")["value"].agg(agg)
        paper = TABLE_S2.get(kind, {}).get(attacked)
        rows.append({"attack": attack, "budgets (0-255)": ", ".join(f"{e:g}" for e in sorted(g.eps.dropna().unique()))
                     or "none", **{f"L2 {k} (normalized)": claims.fmt_ms(v) for k, v in per_seed.items()},
                     "labels changed": claims.fmt_ms(g[g.measure == "label changed"].groupby("seed")["value"].mean()),
                     "P2 (min, avg, max)": paper,
                     f"P2 avg scaled to {size}x{size}": None if paper is None or r is None else round(paper[1] * r, 3)})
    return pd.DataFrame(rows)


def attack_success(df: pd.DataFrame) -> pd.DataFrame:
    """How well each targeted attack did what it aims at, on the map it attacks (natural model,
    mean ± std over seeds), one row per attack and budget: the attacked map's top-k intersection
    and Spearman with its clean map (1: untouched; the top-k attack aims at a low intersection),
    and for the structured attack its Spearman with the target map before and after (the attack
    aims at a higher one)."""
    cols = {"top-k intersection": "top-k intersection with its clean map",
            "spearman": "Spearman with its clean map",
            "spearman to the target map (clean)": "Spearman with the target map, clean image",
            "spearman to the target map (attacked)": "Spearman with the target map, attacked image"}
    nat = df[(df.model == "natural") & df.attack.notna() & (df.attack != "PGD") & df.measure.isin(list(cols))]
    rows = []
    for (attack, eps), g in nat.groupby(["attack", nat.eps.fillna(-1.0)], sort=False):
        kind = "topk" if attack.startswith("top-k") else "structured"
        attacked = next(m for m in METHODS if attack == attack_label(kind, m))
        own = g[g.method == attacked]
        row = {"attack": attack, "ε (0-255)": "–" if eps < 0 else f"{eps:g}"}
        for meas, col in cols.items():
            v = own[own.measure == meas].sort_values("seed")["value"].to_numpy()
            row[col] = claims.fmt_ms(v) if len(v) else "–"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["attack", "ε (0-255)"])


def explainer_times(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor, seed: int = 0,
                    repeats: int = 3) -> pd.DataFrame:
    """Seconds per explained image of each method on ``x``: the median of ``repeats`` timed calls
    (RelEx: one), after an untimed call on one image that pays imports and first-call set-up
    (this machine; sub-millisecond figures are at the timer's resolution)."""
    import statistics
    import time
    (x,) = to_device_of(model, x)  # the copy to the model's device is not timed

    def done():  # a GPU runs asynchronously: the time ends when its work does
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    rows = []
    for m in params["attributions"]:
        explain(params, model, x[:1], m, seed=seed)
        times = []
        for _ in range(1 if m == "relex" else int(repeats)):
            done()
            t = time.perf_counter()
            explain(params, model, x, m, seed=seed)
            done()
            times.append(time.perf_counter() - t)
        rows.append({"method": LABELS[m], "seconds per image": statistics.median(times) / len(x)})
    out = pd.DataFrame(rows)
    out["× SimGrad"] = out["seconds per image"] / float(out.loc[out.method == "SimGrad", "seconds per image"].iloc[0])
    return out


def checks(model: torch.nn.Module, x: torch.Tensor) -> dict[str, bool]:
    """Profile-independent checks of the RelEx implementation on a trained model: batched ==
    one image at a time, masks in [0, 1], and the explanation of RelEx's class keeps it."""
    kw = {"iters": 5, "n_noise": 8, "seed": 0}
    t = torch.arange(len(x[:3])) % 10
    batched = attributions.relex(model, x[:3], t, **kw)
    alone = torch.cat([attributions.relex(model, x[i:i + 1], t[i:i + 1], **kw) for i in range(len(t))])
    return {"RelEx: a batch gives the masks of one image at a time (max diff < 1e-5)":
            bool((batched - alone).abs().max() < 1e-5),
            "RelEx: masks lie in [0, 1]": bool(batched.min() >= 0 and batched.max() <= 1),
            "RelEx: the presets are the released code's and the supplement's":
            attributions.fitted.PRESETS["reference_code"] == {"n_noise": 50, "lr": 0.1, "momentum": 0.99, "iters": 50}
            and attributions.fitted.PRESETS["supplement"]["n_noise"] == 100}


def form_comparison(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor,
                    seed: int = 0) -> pd.DataFrame:
    """RelEx in each form on the same images: the released code's preset and space (what every
    other number uses), the supplement's preset, and masks on [0, 1] pixels (the text's m * x).
    Per form: deletion and preservation (P2's conventions), the mean mask, how far the mask
    moved from its U[0, 0.01] start (mean |m - m0|), and Spearman against the reference form."""
    (x,) = to_device_of(model, x)
    with torch.no_grad():
        pred = model(x).argmax(1)
    gk = game_kw(model, x)
    m0 = attributions.fitted.initial_masks(x, pred, seed)  # where every form starts
    forms = {"reference_code (default)": {}, "supplement preset": {"preset": "supplement"},
             "pixel space (text)": {"space": "pixel"}}
    rows, ref = [], None
    for name, kw in forms.items():
        m = attributions.relex(model, x, pred, **{"preset": params["relex_preset"], "space": params["relex_space"],
                                                  "seed": seed, "iters": params.get("relex_iters"), **kw})
        pm = pixel_maps("relex", m)
        ref = pm if ref is None else ref
        _, _, d_auc, p_auc = _games(model, x, pred, pm, gk)
        rows.append({"form": name, "deletion": float(d_auc.mean()), "preservation": float(p_auc.mean()),
            "mean mask": float(m.mean()), "moved from start": float((m - m0).abs().mean()),
            "Spearman vs reference": float(metrics.spearman(ref, pm).mean())})
    return pd.DataFrame(rows)
