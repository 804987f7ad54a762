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
from ..runs import batch, cached_eval, fit_many, load_data

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..data import BaseDataset

__all__ = ["NOTEBOOK", "METHODS", "POSTPROCESS", "TABLE_S1", "TABLE_S3", "EPS_NORMALIZED",
           "settings", "load_sets", "train_models", "pretrained", "test_images", "explain", "pixel_maps", "game_kw",
           "evaluate", "class_evidence", "tables", "claim_rows", "model_table", "summary",
           "perturbation_table", "explainer_times", "form_comparison", "checks"]

NOTEBOOK = "02_relex"
METHODS = ("relex", "grad", "smoothgrad", "integrated_gradients", "deeplift", "gradcam")
LABELS = {"relex": "RelEx", "grad": "SimGrad", "smoothgrad": "SmGrad",
          "integrated_gradients": "IntGrad", "deeplift": "DeepLIFT", "gradcam": "GradCAM"}
# P2 S2.1: RelEx used as it is; GradCAM (and RT-Sal) min-max; the others |.| over channels
# normalized to their 99th percentile (SmoothGrad's convention).
POSTPROCESS = {"relex": "mean", "gradcam": "minmax"}
SHOWN_PARAMS = ("profile", "dataset", "model", "model_kw", "activation", "size", "n_train",
                "n_test", "num_epochs", "seeds", "eval_subset", "relex_preset", "relex_space",
                "pgd_eps", "clean_class_eps", "topk_eps", "topk_k", "topk_steps",
                "structured_steps", "similarity_k", "robust", "evidence_classes", "evidence_images")
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
    for key in ("weights", "robust_weights"):
        _weights_file(params, key)  # a missing file stops here, before any work
    train_config(params, cache_dir=None)
    unknown = [m for m in params["attributions"] if m not in METHODS]
    if unknown or params["attributions"][0] != "relex":
        raise ValueError(f"attributions={params['attributions']!r} is not valid; accepted: a list starting "
                         f"with 'relex', drawn from {list(METHODS)}")
    attributions.fitted.check_settings(params["relex_preset"], params["relex_space"])
    if not set(params["clean_class_eps"]) <= set(params["pgd_eps"]):
        raise ValueError(f"clean_class_eps={params['clean_class_eps']!r} is not valid; accepted: a "
                         f"subset of pgd_eps={params['pgd_eps']!r}")
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


def explain(params: Mapping[str, Any], model: torch.nn.Module, x: torch.Tensor, method: str,
            target: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """The raw map of ``method`` for classes ``target`` (None: the prediction).  The random
    draws of RelEx and SmoothGrad depend on ``seed`` and the images, so a clean image and its
    attacked copy get different draws (P2's code draws afresh in every call); "spearman
    (redraw)" in ``evaluate`` measures what fresh draws alone change."""
    x, target = to_device_of(model, x, target)
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(1)
    if method == "relex":
        return attributions.relex(model, x, target, preset=params["relex_preset"],
                                  space=params["relex_space"], seed=seed, iters=params.get("relex_iters"))
    kw = {"smoothgrad": {"n": 16, "sigma": 0.15}, "integrated_gradients": {"steps": 32}}.get(method, {})
    # SmoothGrad's noise, like RelEx's, is seeded from the images: another image (an attacked
    # copy) gets fresh draws, as every call does in P2's code
    with seeded(attributions.fitted.image_seed(seed, x, int(torch.as_tensor(target).sum()))):
        return attributions.get(method, **kw)(model, x, target).detach()


def pixel_maps(method: str, raw: torch.Tensor) -> torch.Tensor:
    """P2's post-processing (``POSTPROCESS``): (N, 1, H, W) maps in [0, 1]."""
    return attributions.postprocess(raw, POSTPROCESS.get(method, "p99"))


def game_kw(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """P2's deletion / preservation conventions (its ``FieldMetric``, RISE's causal metric): one
    image row of pixels per step (224 of 224x224), into zeros of the *normalized* input (the
    dataset mean colour), scored by the softmax of the clean prediction."""
    return {"fractions": torch.linspace(0, 1, x.shape[-2] + 1).tolist(), "baseline": metrics.normalized_zero(model)}


def _other_class_targets(x, pred):
    """For each image, the first image of the batch predicted as another class (the structured
    attack's target image; P2 uses one fixed "cat" image)."""
    other = pred[None, :] != pred[:, None]  # other[i, j]: image j has another class than image i
    fallback = (torch.arange(len(x), device=pred.device) + 1) % len(x)
    return x[torch.where(other.any(1), other.to(torch.uint8).argmax(1), fallback)]


def _games(model, x, pred, maps, gk):
    """(deletion curve, preservation curve, deletion AUC, preservation AUC) per image, P2's
    conventions ``gk`` (``game_kw``)."""
    dele = metrics.deletion_curve(model, x, pred, maps, **gk)
    pres = metrics.preservation_curve(model, x, pred, maps, **gk)
    fr = torch.tensor(gk["fractions"], device=dele.device)
    return dele, pres, torch.trapezoid(dele, x=fr, dim=1), torch.trapezoid(pres, x=fr, dim=1)


def _evaluate(params, model, x, y, masks, seed):
    x, y, masks = to_device_of(model, x, y, masks)
    with torch.no_grad():
        pred = model(x).argmax(1)
    meths, k = params["attributions"], params["similarity_k"]
    clean_raw = {m: explain(params, model, x, m, seed=seed) for m in meths}
    clean = {m: pixel_maps(m, r) for m, r in clean_raw.items()}
    gk = game_kw(model, x)
    rows, curves = [], {}
    for m in meths:
        dele, pres, d_auc, p_auc = _games(model, x, pred, clean[m], gk)
        curves[m] = (dele.mean(0), pres.mean(0))
        rows += [{"measure": "deletion", "method": m, "eps": None, "value": float(d_auc.mean())},
                 {"measure": "preservation", "method": m, "eps": None, "value": float(p_auc.mean())},
                 {"measure": "object share", "method": m, "eps": None,
                  "value": float(metrics.object_share(clean[m], masks).mean())}]
    adv_maps = {}
    for e in params["pgd_eps"]:
        xa = attacks.untargeted_pgd(model, x, None, eps=e, seed=seed)
        with torch.no_grad():
            flipped = float((model(xa).argmax(1) != pred).float().mean())
        rows += [{"measure": "L2 of perturbation", "method": None, "eps": e,
                  "value": float((xa - x).flatten(1).norm(dim=1).mean())},
                 {"measure": "label changed", "method": None, "eps": e, "value": flipped}]
        for m in meths:
            am = pixel_maps(m, explain(params, model, xa, m, seed=seed))
            adv_maps[e, m] = am[:4]
            rows += [{"measure": "spearman", "method": m, "eps": e,
                      "value": float(metrics.spearman(clean[m], am).mean())},
                     {"measure": "top-k intersection", "method": m, "eps": e,
                      "value": float(metrics.topk_intersection(clean[m], am, k).mean())}]
            if e in params["clean_class_eps"]:  # our reading: explain the clean class on x_adv
                ac = pixel_maps(m, explain(params, model, xa, m, target=pred, seed=seed))
                rows.append({"measure": "spearman (clean class)", "method": m, "eps": e,
                    "value": float(metrics.spearman(clean[m], ac).mean())})
    targeted = {"topk": attacks.topk(model, x, None, eps=params["topk_eps"], k=params["topk_k"],
                                     steps=params["topk_steps"]),
                "structured": attacks.structured(model, x, None, target_x=_other_class_targets(x, pred),
                                                 steps=params["structured_steps"])}
    for name, xa in targeted.items():
        for m in meths:
            am = pixel_maps(m, explain(params, model, xa, m, seed=seed))
            adv_maps[name, m] = am[:4]
            rows += [{"measure": f"retrieval ({name})", "method": m, "eps": None,
                      "value": float(metrics.retrieval_rate(model, xa, pred, am, gk["baseline"]).mean())},
                     {"measure": f"spearman ({name})", "method": m, "eps": None,
                      "value": float(metrics.spearman(clean[m], am).mean())}]
    for m in meths:  # the method's own noise floor: the same clean image, fresh random draws
        redraw = pixel_maps(m, explain(params, model, x, m, seed=seed + 1000))
        rows.append({"measure": "spearman (redraw)", "method": m, "eps": None,
            "value": float(metrics.spearman(clean[m], redraw).mean())})
    for m in meths:
        rows.append({"measure": "retrieval (clean)", "method": m, "eps": None,
            "value": float(metrics.retrieval_rate(model, x, pred, clean[m], gk["baseline"]).mean())})
    return {"rows": rows, "curves": curves, "clean_maps": {m: v[:4] for m, v in clean.items()},
            "adv_maps": adv_maps, "adv_images": {n: xa[:4] for n, xa in targeted.items()}}


def evaluate(params: Mapping[str, Any], model: torch.nn.Module, kind: str, test_set: BaseDataset,
             seed: int) -> dict[str, Any]:
    """Everything notebook 02 measures on one model and seed (cached under the model's key and
    the settings that determine it): rows ``{measure, method, eps, value}`` (means over the
    ``eval_subset`` test images), deletion / preservation curves, and maps of the first 4
    images clean and attacked (for the figures).

    Returns
    -------
    dict
        ``"rows"`` (list of ``{measure, method, eps, value, model: kind, seed}``), ``"curves"``
        (``{method: (deletion curve, preservation curve)}``), ``"clean_maps"`` (``{method: maps}``),
        ``"adv_maps"`` (``{(eps or attack name, method): maps}``) and ``"adv_images"``
        (``{attack name: images}``), maps and images of the first 4 images.
    """
    out = cached_eval("p2_evaluate", model, params,
                      lambda p: _evaluate(p, model, *test_images(p, test_set), seed),
                      inputs={"test": test_set.fingerprint, "seed": seed})
    for r in out["rows"]:
        r.update(model=kind, seed=seed)
    return out


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


def _vals(df, measure, method, model="natural", eps=None):
    q = (df.measure == measure) & (df.model == model)
    q &= df.method.isna() if method is None else (df.method == method)
    if eps is not None:
        q &= df.eps == eps
    return df[q].sort_values("seed")["value"].to_numpy()


def _by(df, measure, eps=None, model="natural"):
    """``method -> per-seed values of measure`` (``claims.compare``'s ``values``)."""
    return lambda method: _vals(df, measure, method, model, eps)


_compare = functools.partial(claims.compare, label=LABELS.get)  # "A beats B" rows, methods by label


def claim_rows(params: Mapping[str, Any], df: pd.DataFrame,
               evidence: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """P2's claims with paired one-sided tests over seeds (natural model)."""
    ms, meths = claims.fmt_ms, params["attributions"]
    base = [m for m in meths if m != "relex"]
    rows = []

    smallest = min(attacks.p2_eps(k) for k in EPS_NORMALIZED)  # P2's smallest budget in 0-255 units
    for e in params["pgd_eps"]:
        below = e < smallest - 0.5
        rows.append(_compare(_by(df, "spearman", eps=e), "relex", base,
            f"RelEx maps stay more similar (Spearman) under untargeted PGD ε {e:g}/255 "
            "than every baseline",
            "Fig. 3 (main paper), via S3.1" + (" (a budget below P2's grid)" if below else ""),
            note=f"labels changed: {ms(_vals(df, 'label changed', None, eps=e))}; RelEx's own redraw floor: "
            f"{ms(_vals(df, 'spearman (redraw)', 'relex'))}", beyond_paper=below))
    for e in params["clean_class_eps"]:
        rows.append(_compare(_by(df, "spearman (clean class)", eps=e), "relex", base,
            "RelEx maps stay more similar than every baseline when all explain "
            f"the clean class on the image attacked at ε {e:g}/255", "ours (a variant of Fig. 3's protocol)",
            note=f"RelEx's own redraw floor: {ms(_vals(df, 'spearman (redraw)', 'relex'))}",
            beyond_paper=True))
    e0 = next((e for e in params["pgd_eps"] if e >= 4), params["pgd_eps"][0])  # P2's smallest budget
    rows.append(_compare(_by(df, "top-k intersection", eps=e0), "relex", base,
        f"RelEx keeps more of its top-k under PGD ε {e0:g}/255 than every baseline", "Fig. S1",
        note=f"k = {params['similarity_k']} of the pixels; P2's text draws no ranking from Fig. S1",
        beyond_paper=True))
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
    for name, paper in (("topk", "Fig. S2, S9"), ("structured", "Fig. S8, S3.7.3")):
        rows.append(_compare(_by(df, f"retrieval ({name})"), "relex", base,
            f"RelEx explanations keep the class under the {name} attack better than every baseline", paper,
            note="attack on SimGrad (the differentiable map); other maps are transfer"
            + (f"; RelEx on clean images: {ms(clean)}" if len(clean) else ""),
            not_testable="RelEx's explanation is optimised to be classified as the class it explains, which "
            "the attack keeps: it scores 1 already on clean images"))
    ev = pd.DataFrame(evidence).groupby(["method", "seed"])["retrieval"].mean()
    if {"relex", "grad"} <= set(ev.index.get_level_values(0)):
        r, g = ev["relex"].sort_index().to_numpy(), ev["grad"].sort_index().to_numpy()
        rows.append(claims.claim(
            "RelEx explanations of a chosen (non-predicted) class carry that class's evidence", "Fig. S5",
            f"classified as the chosen class: RelEx {ms(r)} vs SimGrad {ms(g)}",
            test=claims.paired_test(r, g), note="vs SimGrad's explanation of the same class (ours)",
            not_testable="RelEx optimises p_c(m ⊙ x) for the requested class c, and the test "
            "scores whether m ⊙ x is classified as c"))
    if params.get("robust"):
        t = claims.paired_test(_vals(df, "spearman", "relex", "robust", e0), _vals(df, "spearman", "relex", "natural", e0))
        rows.append(claims.claim(f"RelEx maps are more stable on the robust model (Spearman, ε {e0:g}/255)",
            "ours (robust models: Fig. S4, S7)",
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


def summary(df: pd.DataFrame, measures: Sequence[str], index: Sequence[str] = ("model", "measure", "eps"),
            digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` over seeds per method label (columns) for ``measures``."""
    sub = df[df.measure.isin(measures)].copy()
    sub["eps"] = sub["eps"].fillna("–")
    idx = [i for i in index if sub[i].nunique() > 1 or i == "measure"]
    out = sub.groupby(idx + ["label"], sort=False)["value"].agg(lambda v: claims.fmt_ms(v, f"{{:.{digits}f}}"))
    return out.unstack("label")[[LABELS[m] for m in METHODS if LABELS[m] in set(sub.label)]]


def perturbation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table S1 at our scale: L2 size of the PGD perturbation (input units, and in P2's normalized
    units with ImageNet's std: / 0.226) and the share of changed labels, per ε, next to P2's."""
    rows = []
    for (kind, e), g in df[df.measure.isin(["L2 of perturbation", "label changed"])].groupby(["model", "eps"]):
        l2 = g[g.measure == "L2 of perturbation"]["value"]
        p2_eps = [k for k in EPS_NORMALIZED if abs(attacks.p2_eps(k) - e) < 1]
        rows.append({"model": kind, "ε (0-255)": e, "L2 (input units)": claims.fmt_ms(l2),
            "labels changed": claims.fmt_ms(g[g.measure == "label changed"]["value"]),
            "P2 ε (normalized)": p2_eps[0] if p2_eps else None,
            "P2 L2 (normalized, 224x224)": TABLE_S1.get(p2_eps[0]) if p2_eps else None})
    return pd.DataFrame(rows)


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
