"""Every method under every paper's metrics on common ground (notebook 05): the scoring core.

``evaluate_model`` scores one trained model on one batch by the measures of all four papers,
each computed by the same library function its own notebook uses:

* accuracy and PGD accuracy under L∞ and L2 ("PGD linf", "PGD l2": ``pgd_steps`` iterations,
  20 at the cpu profile; P1, P3, P4; ``attacks.pgd``);
* P1: RPS (random-perturbation similarity: cosine, PCC, SSIM between the map of x and of x + noise),
  Insertion and Adv-Insertion with P1's released protocol (``evaluation.saliency_report``,
  ``p1.insertion_settings``), and -- ours, P1 reports none -- the same three similarities between
  the clean map and the map under P1's targeted attribution attack (AAM,
  ``attacks.targeted_attribution``);
* P2: deletion and preservation (P2's conventions, ``p2.game_kw``, on its post-processed maps,
  ``p2.pixel_maps``), Spearman rank correlation and top-k intersection between the clean map and
  the map under P2's untargeted PGD and under the top-k attack (on P2's comparison maps,
  ``p2.similarity_maps``); as in P2's code, every one of these maps explains the clean
  prediction (P1's and P3's measures explain the label, as theirs do);
* P3: sparsity (Gini of the pixel map) and the share of the map's mass on the object (``masks``).

The leakage (P4, ``block_digits``) and worst-group (P4, ``spurious_shapes``) measures need their own
data and models: ``p4.evaluate_block`` and ``p4.evaluate_spurious`` score them.

The models: ``SPECS`` (every training method of P1, P3 and P4 and the baselines, one
``protocol.ModelSpec`` each: method, fixed hyperparameters, the grid it takes its setting from,
network keywords), trained by ``fit_models`` (ATEX distils the ``ce`` model of its seed, as
``p1.fit_methods`` does) and chosen by one rule for all, ``select``: on the validation split, the
strongest setting of each grid (grids are listed weakest first) whose accuracy is within ``tol``
of ``ce``'s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

import pandas as pd

from .. import attacks, attributions, claims, cost, metrics
from .. import methods as _methods
from ..cache import atomic_write_bytes
from ..common import seeded, to_device_of
from ..evaluation import saliency_report
from ..metrics.density import riemann_integrated_gradients
from ..metrics.robustness import _similarity_fns
from ..runs import batch, cached_eval_many, fit_many, hp_text, select_hparams
from ..profiles import profile_params, train_config, validate
from ..runs import load_data, split_validation
from ..settings import Settings
from ..settings import build as build_settings
from . import p1, p2, p4
from .protocol import ModelSpec, check_named_grid, with_paper_data

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from ..data import BaseDataset

__all__ = ["NOTEBOOK", "PARTS", "PAPER_DATA", "settings", "section", "main_sets", "part_sets", "part_models", "fit_part", "relex_records",
           "SPECS", "LABELS", "SIMILARITIES", "HIGHER_IS_BETTER", "evaluate_model", "fit_models", "select",
           "leaderboard", "summary", "write_leaderboard", "ranks", "rank_table", "metric_correlation", "pairwise",
           "COMPARISONS", "EVAL_KEYS", "evaluate_many", "step_cost_records", "leakage_records", "worst_group_records"]

NOTEBOOK = "05_unified_benchmark"
PARTS = ("block", "spurious")  # P4's own data: feature leakage (BlockMNIST) and worst-group accuracy
SIMILARITIES = ("cosine", "pcc", "ssim")  # P1's three map similarities
PAPER_DATA = {"dataset": "cifar10", "block_dataset": "block_mnist", "spurious_dataset": "waterbirds"}  # paper profile

# Every model of notebook 05: each regularized method takes its setting from the grid of its own name.
SPECS = {
    "ce": ModelSpec("ce"),
    "l2": ModelSpec("l2", grid="l2"),
    "cosd": ModelSpec("cosd", grid="cosd"),
    "l2_cosd": ModelSpec("l2_cosd", grid="l2_cosd"),
    "hessian": ModelSpec("hessian", grid="hessian", model_kw={"activation": "softplus"}),  # ReLU: zero Hessian
    "maxent": ModelSpec("maxent", grid="maxent"),
    "input_grad": ModelSpec("input_grad", grid="input_grad"),
    "iga": ModelSpec("iga", grid="iga"),
    "atex": ModelSpec("atex", grid="atex"),
    "marginal_density": ModelSpec("marginal_density", {"variant": "efficient"}, "marginal_density"),
    "score_matching": ModelSpec("score_matching", grid="score_matching"),
    "cure": ModelSpec("cure", grid="cure"),
    "at_fgsm": ModelSpec("at_fgsm", grid="at_fgsm"),
    "at_pgd": ModelSpec("at_pgd", grid="at_pgd"),
    "nrat_l1": ModelSpec("norm_regularized_at", {"mode": "l1"}, "nrat_l1"),
    "nrat_group": ModelSpec("norm_regularized_at", {"mode": "group"}, "nrat_group"),
    "nrat_elastic": ModelSpec("norm_regularized_at", {"mode": "elastic"}, "nrat_elastic"),
    "gaussian_noise": ModelSpec("gaussian_noise", grid="gaussian_noise"),
}
LABELS = {"ce": "standard (ST)", "l2": "ℓ2 (P1)", "cosd": "cosd (P1)", "l2_cosd": "ℓ2 + cosd (P1)",
          "hessian": "Hessian (softplus)", "maxent": "MaxEnt", "input_grad": "InputGrad", "iga": "IGA", "atex": "ATEX",
          "marginal_density": "marginal density (P4)", "score_matching": "score matching", "cure": "CURE",
          "at_fgsm": "AT-FGSM", "at_pgd": "AT-PGD", "nrat_l1": "norm-reg. AT, ℓ1 (P3)",
          "nrat_group": "norm-reg. AT, group (P3)", "nrat_elastic": "norm-reg. AT, elastic (P3)",
          "gaussian_noise": "Gaussian noise"}


def settings(profile: str, **notebook_params: Any) -> Settings:
    """The notebook's parameters over the profile and ``05_unified_benchmark.yaml``, checked before
    any work: ``models`` are names of ``SPECS`` starting with ``ce`` (the selection's reference),
    ``relex_models`` a subset of them, ``grid`` has one non-empty list for every model that takes
    a setting and each point builds its method, ``n_val`` is below ``n_train``, and the training
    settings of the main data and of each part (``section``) are valid."""
    notebook_params = with_paper_data(profile, PAPER_DATA, notebook_params)  # the papers' datasets
    params = validate(notebook=NOTEBOOK, **profile_params(profile, notebook=NOTEBOOK, **notebook_params))
    models = list(params["models"])
    unknown = [m for m in models if m not in SPECS]
    if unknown or models[0] != "ce" or len(set(models)) != len(models):
        raise ValueError(f"models={models!r} is not valid; accepted: distinct names of {list(SPECS)}, "
                         f"starting with 'ce' (the reference of the selection)")
    extra = [m for m in params["relex_models"] if m not in models]
    if extra:
        raise ValueError(f"relex_models={params['relex_models']!r} is not valid; accepted: names of models ({models})")
    check_named_grid(params["grid"] or {}, {SPECS[m].grid for m in models if SPECS[m].grid},
                     lambda n, hp: _job(params, n, 0, hp), key="grid")
    for part in PARTS:
        own = params.get(f"{part}_models")
        if own is not None and (own[0] != "ce" or not set(own) <= set(models) or len(set(own)) != len(own)):
            raise ValueError(f"{part}_models={own!r} is not valid; accepted: None or distinct names of models "
                             f"({models}), starting with 'ce'")
        grid = params.get(f"{part}_grid")
        if grid:
            check_named_grid(grid, set(grid) & set(own or models) - {"ce"} or {"a model of the part"},
                             lambda n, hp: _job(params, n, 0, hp), key=f"{part}_grid")
    n_val, n_train = params.get("n_val"), params.get("n_train")
    if not isinstance(n_val, int) or n_val < 1 or (n_train is not None and n_val >= n_train):
        raise ValueError(f"n_val={n_val!r} is not valid; accepted: an int in [1, n_train - 1] (n_train={n_train})")
    train_config(params, cache_dir=None)
    for part in PARTS:
        train_config(section(params, part), cache_dir=None)
    return build_settings(NOTEBOOK, params)


def section(params: Mapping[str, Any], part: str) -> dict:
    """The parameters of one part (``block``, ``spurious``): the shared ones with the part's own
    ``<part>_<key>`` settings (dataset, network, epochs, seeds, ...) in place of ``<key>``."""
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not valid; accepted: {list(PARTS)}")
    out = {k: v for k, v in params.items() if not k.startswith(tuple(f"{q}_" for q in PARTS))}
    out.update({k[len(part) + 1:]: v for k, v in params.items() if k.startswith(part + "_")})
    out["part"] = part
    return out


def main_sets(params: Mapping[str, Any]) -> dict[str, BaseDataset]:
    """The main data: ``{"train", "val", "test"}``, the validation rows (``n_val``, seed 0) held
    out of the ``n_train`` training rows."""
    kw = {"size": params["size"]} if params.get("size") else {}
    full, test = load_data(params, params["dataset"], "train", **kw), load_data(params, params["dataset"], "test", **kw)
    train, val = split_validation(full, int(params["n_val"]), seed=0)
    return {"train": train, "val": val, "test": test}


def part_sets(params: Mapping[str, Any], part: str) -> dict[str, BaseDataset]:
    """A part's data, as notebook 04 builds it: BlockMNIST (``p4.block_sets``) or the group-shift
    set (``p4.spurious_sets``: ``spurious_shapes`` with ``p_major`` of each class on its majority
    background, a second balanced set for validation)."""
    sp = section(params, part)
    if part == "block":
        return p4.block_sets({f"block_{k}": v for k, v in sp.items()})
    return p4.spurious_sets({f"spurious_{k}": v for k, v in sp.items()}, sp["dataset"])


def part_models(params: Mapping[str, Any], part: str) -> list[str]:
    """The models a part trains: its ``<part>_models``, or all of ``models``."""
    return list(section(params, part).get("models") or params["models"])


def fit_part(params: Mapping[str, Any], part: str, sets: Mapping[str, BaseDataset],
             chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The part's models (``part_models``) trained on its data (its network, epochs and
    ``seeds``).  Each takes the setting ``chosen`` on the main data, unless the part has a grid
    of its own for it (``<part>_grid``): then ``select`` picks it on the part's validation set
    with the same rule (first seed).  ``{"models": {(name, seed): model}, "chosen": {name: setting},
    "selection": the part's selection table or None}``."""
    sp = section(params, part)
    names, grid = part_models(params, part), dict(sp.get("grid") or {})
    sel = select(sp, sets, grid, float(params["selection_tol"]), seed=sp["seeds"][0]) if grid else None
    chosen = {n: (sel["chosen"] if n in grid else chosen).get(n) for n in names if n != "ce"}
    configs = [(n, s, chosen.get(n)) for n in names for s in sp["seeds"]]
    nets = {(n, s): net for (n, s, _), net in zip(configs, fit_models(sp, sets["train"], configs))}
    return {"models": nets, "chosen": chosen, "selection": None if sel is None else sel["table"]}


def relex_records(params: Mapping[str, Any], models: Mapping[tuple, torch.nn.Module], x: torch.Tensor,
                  y: torch.Tensor, masks: torch.Tensor | None = None) -> pd.DataFrame:
    """RelEx as one more explainer: ``evaluate_many`` of ``models`` on ``(x, y)`` with RelEx maps
    (P2's released settings) and, on the same images, with ``params``' attribution; the attacks
    on the map are skipped for both (RelEx is an optimisation per image: too costly to attack).
    Long records with a column ``explainer``."""
    out = []
    for name in ("relex", params["attribution"]):
        df = evaluate_many({**params, "attribution": name, "attribution_attacks": False}, models, x, y, masks)
        out.append(df.assign(explainer=name))
    return pd.concat(out, ignore_index=True)


def evaluate_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None = None, *,
                   attribution: str = "grad", pgd_linf: float = 8, pgd_l2: float = 0.5, pgd_steps: int = 20,
                   rps_eps: float = 8, rps_n: int = 4, aam_eps: float = 8, aam_steps: int = 20,
                   untargeted_eps: float = 8, untargeted_steps: int = 20, topk_eps: float = 8,
                   topk_steps: int = 20, k: float = 0.1, attribution_attacks: bool = True,
                   seed: int = 0) -> dict[str, float]:
    """Every paper's measures of ``model`` on ``(x, y)`` (module docstring), means over the images.

    Budgets in the library's units (L∞ in 0-255 pixel units, L2 in input units); ``k`` is the
    top-k fraction of P2's intersection and of the top-k attack; ``masks`` ((N, H, W) object masks)
    adds the object share.  ``attribution_attacks=False`` skips the attacks on the map (P1's
    AAM and the top-k attack: no AAM rows, no Adv-Insertion, no top-k-attack rows), for an
    explainer too costly to attack (RelEx).  Every attack and noise draw is seeded from ``seed``.  Returns
    ``{measure: value}``; the PGD entries are accuracies, the similarities higher-is-more-robust,
    deletion lower-is-better and preservation higher-is-better (P2's convention)."""
    if not 0 < k < 1:
        raise ValueError(f"k={k!r} is not valid; accepted: a fraction in (0, 1)")
    x, y = to_device_of(model, x, y)
    rows: dict[str, Any] = {"accuracy": metrics.accuracy(model, (x, y))}
    for norm, eps in (("linf", pgd_linf), ("l2", pgd_l2)):
        rows[f"PGD {norm}"] = metrics.adversarial_accuracy(
            model, x, y, attacks.get("pgd", norm=norm, eps=eps, steps=pgd_steps, seed=seed))
    aam = {"attack": "targeted_attribution", "attack_kw": {"eps": aam_eps, "steps": aam_steps}} if attribution_attacks else {}
    rep = saliency_report(model, x, y, [attribution], rps_eps=(rps_eps,), similarities=SIMILARITIES, rps_n=rps_n,
                          seed=seed, **aam, **p1.insertion_settings(model))[attribution]
    clean = rep["map"]
    for s, similar in _similarity_fns(SIMILARITIES).items():  # AAM: the clean map against the attacked one,
        rows[f"RPS {s}"] = float(rep["rps"][s][rps_eps].mean())  # post-processed as RPS's maps
        if attribution_attacks:
            rows[f"AAM {s}"] = float(similar(attributions.postprocess(clean, "abs_max"),
                                             attributions.postprocess(rep["map_adv"], "abs_max")).mean())
    rows["insertion"] = float(rep["insertion"].mean())
    if attribution_attacks:
        rows["adv-insertion"] = float(rep["adv_insertion"].mean())
    fn = attributions.get(attribution)  # P2's measures: maps of the clean prediction, as P2's code
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
    with seeded(seed):
        p2_clean = fn(model, x, pred).detach()
    gk = p2.game_kw(model, x)
    rows["deletion"] = float(metrics.deletion_score(model, x, pred, p2.pixel_maps(attribution, p2_clean), **gk).mean())
    rows["preservation"] = float(metrics.preservation_score(model, x, pred, p2.pixel_maps(attribution, p2_clean),
                                                            **gk).mean())
    base = p2.similarity_maps(p2_clean)
    with seeded(seed):
        moved_inputs = {"PGD": attacks.untargeted_pgd(model, x, None, eps=untargeted_eps, steps=untargeted_steps, seed=seed)}
        if attribution_attacks:
            moved_inputs["top-k attack"] = attacks.topk(model, x, pred, eps=topk_eps, k=k, steps=topk_steps,
                                                        attribution=attribution, seed=seed)
    for name, xa in moved_inputs.items():
        with seeded(seed):  # a stochastic explainer draws the same noise as for the clean map
            moved = p2.similarity_maps(fn(model, xa, pred).detach())
        rows[f"spearman ({name})"] = float(metrics.spearman(base, moved).mean())
        rows[f"top-k intersection ({name})"] = float(metrics.topk_intersection(base, moved, k).mean())
    pix = clean.abs().sum(1)
    rows["gini"] = float(metrics.gini(pix).mean())
    if masks is not None:
        (masks,) = to_device_of(model, masks)
        rows["object share"] = float(metrics.object_share(clean, masks).mean())
    return rows


def _job(params, name, seed, hp):
    """``fit``'s keywords for model ``name`` (``SPECS``) with grid setting ``hp``."""
    if name not in SPECS:
        raise ValueError(f"model {name!r} is not known; accepted: {list(SPECS)}")
    spec = SPECS[name]
    kw = {**spec.fixed, **dict(hp or {})}
    if spec.method != "atex":
        _methods.get(spec.method, **kw)  # a bad setting fails here, before any work
    return {"method": spec.method, "seed": seed, "method_kw": kw, "model_kw": dict(spec.model_kw) or None}


def fit_models(params: Mapping[str, Any], train_set: BaseDataset,
               configs: Sequence[tuple[str, int, Mapping[str, Any] | None]]) -> list[torch.nn.Module]:
    """Load-or-train each ``(name, seed, hp)`` of ``configs`` (``SPECS``; ``hp`` the grid setting)
    through the executor (``runs.fit_many``).  ATEX distils the ``ce`` model of its seed and starts
    from it, for ``atex_epochs`` epochs (default ``num_epochs``), as ``p1.fit_methods``: the
    teachers are fitted first, with the other models."""
    jobs = [_job(params, n, s, hp) for n, s, hp in configs]
    direct = [i for i, (n, _, _) in enumerate(configs) if n != "atex"]
    students = [i for i, (n, _, _) in enumerate(configs) if n == "atex"]
    teacher_seeds = sorted({configs[i][1] for i in students})
    nets = fit_many(params, train_set, [jobs[i] for i in direct] + [_job(params, "ce", s, None) for s in teacher_seeds],
                    desc=f"fits ({len(configs)})")
    out, teachers = dict(zip(direct, nets)), dict(zip(teacher_seeds, nets[len(direct):]))
    epochs = int(params.get("atex_epochs") or params["num_epochs"])
    out.update(zip(students, fit_many(params, train_set, [
        {**jobs[i], "method_kw": {"teacher": teachers[jobs[i]["seed"]], **jobs[i]["method_kw"]},
         "init_from": teachers[jobs[i]["seed"]], "num_epochs": epochs} for i in students], desc="ATEX fits")))
    return [out[i] for i in range(len(configs))]


def select(params: Mapping[str, Any], sets: Mapping[str, BaseDataset], grids: Mapping[str, Sequence[Mapping[str, Any]]],
           tol: float, seed: int = 0) -> dict[str, Any]:
    """One rule for every method: for each grid of ``grids`` (``{name: [settings, weakest first]}``),
    fitted from ``seed`` on ``sets["train"]``, the strongest setting whose accuracy on
    ``sets["val"]`` is at least ``ce``'s minus ``tol``; none: the most accurate
    (``runs.select_hparams``).  ``{"table", "chosen", "ce_accuracy"}``; the table has one row per
    setting with its strength rank, validation accuracy and the mark of the chosen one."""
    unknown = [n for n in grids if n not in SPECS or n == "ce"]
    if unknown:
        raise ValueError(f"grids for {unknown} are not valid; accepted: names of {[n for n in SPECS if n != 'ce']}")
    empty = [n for n, g in grids.items() if not g]
    if empty:
        raise ValueError(f"the grids of {empty} are empty; accepted: a list of settings, weakest first")
    configs = [("ce", seed, None)] + [(n, seed, hp) for n, points in grids.items() for hp in points]
    nets = iter(fit_models(params, sets["train"], configs))
    val = batch(sets["val"])
    ce_acc = metrics.accuracy(next(nets), val)
    rows, chosen = [], {}
    for name, points in grids.items():
        scored = [{"method": LABELS[name], "setting": hp_text(hp), "strength rank": k + 1,
                   "validation accuracy": metrics.accuracy(next(nets), val), "hp": dict(hp)} for k, hp in enumerate(points)]
        best, why = select_hparams(scored, ce_acc, tol, score="strength rank", accuracy="validation accuracy")
        chosen[name] = scored[best]["hp"]
        rows += [{**{k: v for k, v in r.items() if k != "hp"}, "chosen": "✓ " + why if i == best else ""}
                 for i, r in enumerate(scored)]
    return {"table": pd.DataFrame(rows), "chosen": chosen, "ce_accuracy": ce_acc}


# Which way each measure is better (matched by its first words: "PGD linf" by "PGD"); Gini: P3's reading,
# sparser maps are better.
HIGHER_IS_BETTER = {"accuracy": True, "PGD": True, "RPS": True, "AAM": True, "insertion": True, "adv-insertion": True,
                    "deletion": False, "preservation": True, "spearman": True, "top-k intersection": True, "gini": True,
                    "object share": True, "feature leakage": False, "null share": False, "worst-group accuracy": True,
                    "time × ce": False, "graph memory × ce": False}


def _better(measure):
    """+1 if a higher ``measure`` is better, -1 if lower is (``HIGHER_IS_BETTER``, by prefix)."""
    for prefix, up in HIGHER_IS_BETTER.items():
        if measure == prefix or measure.startswith(prefix + " ") or measure.startswith(prefix + "-"):
            return 1 if up else -1
    raise ValueError(f"measure {measure!r} has no direction; accepted: names starting with {list(HIGHER_IS_BETTER)}")


# Notebook 05's pairwise questions ``(a, b, measure, why)``: "a beats b on measure" where the papers
# never compared the two methods, or where one paper's argument predicts the opposite of another's
# result.  Every row is ours (``pairwise``); the why names the papers.
COMPARISONS = (
    ("l2_cosd", "marginal_density", "RPS cosine", "P1's gradient alignment vs P4's density smoothing: never compared"),
    ("l2_cosd", "nrat_l1", "RPS cosine", "P1 vs P3's norm-regularized AT: never compared"),
    ("l2_cosd", "marginal_density", "adv-insertion", "P1's attack game on P4's method: never compared"),
    ("marginal_density", "l2_cosd", "null share", "P4's leakage on P1's method: never compared (the null block's "
     "share of the map: P4's norm, 'feature leakage', falls with any penalty that shrinks every map)"),
    ("nrat_l1", "l2_cosd", "object share", "P3's object focus against P1's alignment: never compared"),
    ("nrat_l1", "marginal_density", "gini", "P3's sparsity against P4's smoothing: never compared"),
    ("l2_cosd", "maxent", "AAM cosine", "P1 argues a small Hessian norm (MaxEnt) leaves the normalized map fragile "
     "(P1's argument is on softplus networks; both are ReLU here)"),
    ("l2_cosd", "hessian", "top-k intersection (top-k attack)", "P1 compares on RPS and insertion, not on P2's top-k "
     "attack (the Hessian penalty is on a softplus copy of the network, l2 + cosd on the ReLU one: the activation "
     "differs as well as the method)"),
    ("at_pgd", "l2_cosd", "PGD linf", "robust accuracy: P1 reports none for its method"),
    ("marginal_density", "input_grad", "spearman (PGD)", "P4's claim of stable gradients, on P2's rank measure"),
)


def leaderboard(df: pd.DataFrame, measures: Sequence[str], names: Sequence[str] | None = None,
                digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` over seeds of ``measures`` (columns) per method (rows, ``LABELS``) of long
    records ``{method, seed, measure, value}`` (``names``: which methods, in order; default all)."""
    names = list(names or dict.fromkeys(df.method))
    return claims.seed_table(df, measures, names, LABELS, digits)


def summary(df: pd.DataFrame, measures: Sequence[str], names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per method of ``names`` (index: its name; default every method of ``df``) with the
    columns ``<measure> mean`` and ``<measure> std`` (over seeds) of each of ``measures`` that
    ``df`` has (a method without it: NaN), and ``seeds`` (the most seeds of any of its measures)."""
    names = list(names or dict.fromkeys(df.method))
    sub = df[df.measure.isin(measures) & df.method.isin(names)]
    agg = sub.groupby(["method", "measure"])["value"].agg(["mean", "std", "count"]).unstack("measure")
    table = pd.DataFrame(index=pd.Index(names, name="name"))
    for m in measures:
        if ("mean", m) in agg.columns:
            table[f"{m} mean"] = [agg.loc[n, ("mean", m)] if n in agg.index else float("nan") for n in names]
            table[f"{m} std"] = [agg.loc[n, ("std", m)] if n in agg.index else float("nan") for n in names]
    table["seeds"] = [int(agg.loc[n, "count"].max()) if n in agg.index else 0 for n in names]
    return table


def write_leaderboard(df: pd.DataFrame, measures: Sequence[str], stem: str | os.PathLike,
                      names: Sequence[str] | None = None) -> list[str]:
    """The leaderboard as ``<stem>.csv`` (a mean and a std column per measure, the number of seeds)
    and ``<stem>.tex`` (a LaTeX tabular of mean ± std), written atomically; returns the paths."""
    from pathlib import Path

    names = list(names or dict.fromkeys(df.method))
    table = summary(df, measures, names)
    table.insert(0, "method", [LABELS.get(n, n) for n in names])
    stem = Path(stem)
    tex = leaderboard(df, measures, names).to_latex(escape=True)
    atomic_write_bytes(table.to_csv(index=False).encode(), stem.with_suffix(".csv"))
    atomic_write_bytes(tex.encode(), stem.with_suffix(".tex"))
    return [str(stem.with_suffix(".csv")), str(stem.with_suffix(".tex"))]


def ranks(df: pd.DataFrame, measures: Sequence[str]) -> pd.DataFrame:
    """Per seed and measure, each method's rank (1 = best, ``HIGHER_IS_BETTER``; ties share the
    mean rank) among the methods scored on that seed.  Long rows ``{method, seed, measure, rank}``."""
    sub = df[df.measure.isin(measures)].copy()
    sub["signed"] = [-v * _better(m) for m, v in zip(sub.measure, sub.value)]
    sub["rank"] = sub.groupby(["seed", "measure"])["signed"].rank(method="average")
    return sub[["method", "seed", "measure", "rank"]].reset_index(drop=True)


def rank_table(df: pd.DataFrame, measures: Sequence[str], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean rank over seeds per method (rows) and measure (columns), with a last column "mean rank"
    over the measures that rank every method (``.attrs["mean over"]``: a part that trains a
    subset of the methods ranks them among fewer); the std over seeds of each rank is in
    ``.attrs["std"]`` (same shape)."""
    r = ranks(df, measures)
    names = list(names or dict.fromkeys(df.method))
    mean = r.groupby(["method", "measure"])["rank"].mean().unstack("measure").reindex(index=names, columns=list(measures))
    std = r.groupby(["method", "measure"])["rank"].std().unstack("measure").reindex(index=names, columns=list(measures))
    full = [m for m in measures if mean[m].notna().all()]  # a measure of a part's subset ranks fewer methods
    mean["mean rank"] = mean[full].mean(axis=1)
    mean.attrs["mean over"] = full
    mean.index = [LABELS.get(n, n) for n in mean.index]
    std.index = mean.index
    mean.attrs["std"] = std
    return mean


def metric_correlation(df: pd.DataFrame, measures: Sequence[str]) -> pd.DataFrame:
    """Spearman rank correlation between measures of the methods' mean scores, each oriented so
    that higher is better: which metrics rank the methods alike.  Square DataFrame over the
    ``measures`` that every method has (one set of methods for every cell)."""
    means = df[df.measure.isin(measures)].groupby(["method", "measure"])["value"].mean().unstack("measure")
    means = means[[m for m in measures if m in means.columns and means[m].notna().all()]]  # every method scored
    oriented = means * pd.Series({m: _better(m) for m in means.columns})
    return oriented.corr(method="spearman")


def pairwise(df: pd.DataFrame, comparisons: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Claim rows "``a`` beats ``b`` on ``measure``" (paired one-sided tests over seeds in the
    measure's better direction, ``claims.compare``) for each ``(a, b, measure, why)`` of
    ``comparisons`` (``why``: which papers disagree or never compared them), as one Holm family
    (``claims.family``).  Every row is ours (beyond the papers): no paper makes these claims.
    Each note ends with both methods' mean test accuracy on the measure's data (``ACCURACY_OF``),
    so that a win bought with accuracy shows."""
    rows = []
    for a, b, measure, why in comparisons:
        sub = df[df.measure == measure]
        if sub.empty:
            raise ValueError(f"measure {measure!r} is not in the records; accepted: {sorted(set(df.measure))}")

        by_seed = sub.pivot_table(index="seed", columns="method", values="value").reindex(columns=[a, b]).dropna()

        def values(name, by_seed=by_seed):  # paired by seed: the seeds both methods have
            return by_seed[name].to_numpy()

        acc = df[df.measure == ACCURACY_OF.get(measure, "accuracy")]
        means = {n: acc[acc.method == n]["value"].mean() for n in (a, b)}
        note = why + "; test accuracy " + " vs ".join(f"{LABELS.get(n, n)} {v:.3f}" for n, v in means.items()) \
            if not acc.empty else why
        rows.append(claims.compare(values, a, b, f"{LABELS.get(a, a)} beats {LABELS.get(b, b)} on {measure}",
                                   "ours (notebook 05)", alternative="greater" if _better(measure) > 0 else "less",
                                   label=LABELS.get, note=note, beyond_paper=True))
    return claims.family(rows)


# The accuracy that goes with a measure of a part (its own data and network): pairwise's notes show it.
ACCURACY_OF = {"feature leakage": "accuracy (BlockMNIST)", "null share": "accuracy (BlockMNIST)",
               "worst-group accuracy": "accuracy (group shift)"}


# evaluate_model's settings, read from the notebook's parameters under these names (and so keyed).
EVAL_KEYS = ("attribution", "pgd_linf", "pgd_l2", "pgd_steps", "rps_eps", "rps_n", "aam_eps", "aam_steps",
             "untargeted_eps", "untargeted_steps", "topk_eps", "topk_steps", "k", "attribution_attacks")


def _evaluate_job(params, model, seed, x, y, masks):
    """``evaluate_model`` of one model with the settings of ``params`` (``EVAL_KEYS``)."""
    return evaluate_model(model, x, y, masks, seed=seed, **{k: params[k] for k in EVAL_KEYS if k in params})


def evaluate_many(params: Mapping[str, Any], models: Mapping[tuple, torch.nn.Module], x: torch.Tensor,
                  y: torch.Tensor, masks: torch.Tensor | None = None) -> pd.DataFrame:
    """``evaluate_model`` of every model of ``models`` (keys ``(name, seed)``) on ``(x, y)`` with the
    settings of ``params`` (``EVAL_KEYS``; absent: ``evaluate_model``'s defaults), each cached under
    the model's key, the images and the settings it read, the uncached ones run through the
    executor (``runs.cached_eval_many``).  Long records ``{method, seed, measure, value}``."""
    keys = list(models)
    jobs = [(models[k], {"x": x, "y": y, "masks": masks, "seed": k[-1]}, k[-1]) for k in keys]
    outs = cached_eval_many("unified", params, jobs, _evaluate_job, shared=(x, y, masks),
                            labels=[" ".join(map(str, k)) for k in keys], desc=f"evaluations ({len(keys)})")
    return claims.records({k: {"rows": out} for k, out in zip(keys, outs)})


def step_cost_records(params: Mapping[str, Any], train_set: BaseDataset, chosen: Mapping[str, Mapping[str, Any]],
                      teacher: torch.nn.Module, n_batches: int = 4, seed: int = 0) -> pd.DataFrame:
    """Training cost per step of every model of ``chosen`` (``{name: setting}``, plus ``ce``) relative
    to ``ce`` (``cost.step_costs``: interleaved rounds, median time and graph memory), on the first
    ``n_batches`` batches of ``train_set``, each method against ``ce`` on its own network (Hessian:
    softplus) built from ``seed``, in its own interleaved rounds; ATEX distils ``teacher``.  Records ``{method, seed, measure, value}`` with measures
    "time × ce" and "graph memory × ce" (one measurement, no seeds: ``seed`` is the build's)."""
    from ..runs import build_model

    size = int(params.get("batch_size", 64))
    x, y = batch(train_set, n_batches * size)
    batches = [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]
    out = []
    for name in ["ce", *[n for n in chosen if n != "ce"]]:
        job = _job(params, name, seed, chosen.get(name))
        kw = {**job["method_kw"], **({"teacher": teacher} if name == "atex" else {})}
        net = build_model(params, train_set, seed=seed, **(job["model_kw"] or {}))
        costs = cost.step_costs(net, {"ce": _methods.get("ce"), name: _methods.get(job["method"], **kw)}, batches,
                                lr=float(params.get("lr", 1e-3)), grad_clip=params.get("grad_clip"), seed=seed) \
            if name != "ce" else {"ce": {"time_ratio_of_medians": 1.0, "mem_ratio": 1.0}}
        out += [{"method": name, "seed": seed, "measure": "time × ce", "value": float(costs[name]["time_ratio_of_medians"])},
                {"method": name, "seed": seed, "measure": "graph memory × ce", "value": float(costs[name]["mem_ratio"])}]
    return pd.DataFrame(out)


def _on_set(name, params, models, test, job, needs, accepted):
    """``job(params, model, None, test)`` for every model of ``models``, cached under ``name`` and
    on the executor, as long records; ValueError if ``test`` lacks the attribute ``needs``."""
    if getattr(test, needs, None) is None:
        raise ValueError(f"test={getattr(test, 'name', type(test).__name__)!r} has no {needs}; accepted: {accepted}")
    keys = list(models)
    outs = cached_eval_many(name, params, [(models[k], {"data": test.fingerprint}, None) for k in keys], job,
                            shared=(test,), labels=[" ".join(map(str, k)) for k in keys], desc=f"{name} ({len(keys)})")
    return claims.records({k: {"rows": out} for k, out in zip(keys, outs)})


def _leakage_job(params, model, _, test):
    x, y = batch(test, params.get("leakage_n"))
    x, y, mask = to_device_of(model, x, y, test.null_mask[:len(x)])
    ig = riemann_integrated_gradients(model, x, y, steps=int(params.get("ig_steps", 32))).detach()
    null, whole = (ig * mask).flatten(1), ig.flatten(1)
    return {"feature leakage": float(metrics.feature_leakage(model, x, y, mask, maps=ig).mean()),
            "null share": float((null.norm(dim=1) / whole.norm(dim=1).clamp_min(1e-30)).mean()),
            "accuracy (BlockMNIST)": metrics.accuracy(model, batch(test))}


def leakage_records(params: Mapping[str, Any], models: Mapping[tuple, torch.nn.Module], test: BaseDataset) -> pd.DataFrame:
    """P4's feature leakage (Eq. 9: the Frobenius norm of the IG map on the null block, mean per
    image; ``metrics.feature_leakage`` with ``ig_steps``) of every model of ``models`` (keys
    ``(name, seed)``, trained on BlockMNIST or its stand-in) on the first ``leakage_n`` images of
    ``test`` (all if absent), with beside it the null block's share of the map's Frobenius norm
    ("null share": a penalty that shrinks every map lowers the norm, not the share) and the
    model's accuracy on all of ``test`` ("accuracy (BlockMNIST)"), as notebook 04 scores them;
    cached and on the executor.  Long records."""
    return _on_set("unified_leakage", params, models, test, _leakage_job, "null_mask",
                   "a BlockMNIST set (block_digits, block_mnist)")


def _worst_group_job(params, model, _, test):
    x, y = batch(test)
    (x,) = to_device_of(model, x)
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 512]).argmax(1).cpu() for i in range(0, len(x), 512)])
    worst = metrics.worst_group_accuracy(pred, y, torch.as_tensor(test.groups))
    return {"worst-group accuracy": float(worst), "accuracy (group shift)": float((pred == y).float().mean())}


def worst_group_records(params: Mapping[str, Any], models: Mapping[tuple, torch.nn.Module],
                        test: BaseDataset) -> pd.DataFrame:
    """Worst-group and overall accuracy (P4 Table 2; "worst-group accuracy", "accuracy (group
    shift)") of every model of ``models`` (keys
    ``(name, seed)``) on ``test`` (a set with ``groups``), cached and on the executor.  Long records."""
    return _on_set("unified_worst_group", params, models, test, _worst_group_job, "groups",
                   "a group-shift set (spurious_shapes, waterbirds, celeba)")
