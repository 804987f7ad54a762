"""Every method under every paper's metrics on common ground (notebook 05): the scoring core.

``evaluate_model`` scores one trained model on one batch by the measures of all four papers,
each computed by the same library function its own notebook uses:

* accuracy and PGD-20 accuracy under L∞ and L2 (P1, P3, P4; ``attacks.pgd``);
* P1: RPS (random-perturbation similarity: cosine, PCC, SSIM between the map of x and of x + noise),
  Insertion and Adv-Insertion with P1's released protocol (``evaluation.saliency_report``,
  ``p1.insertion_settings``), and -- ours, P1 reports none -- the same three similarities between
  the clean map and the map under P1's targeted attribution attack (AAM,
  ``attacks.targeted_attribution``);
* P2: deletion and preservation (P2's conventions, ``p2.game_kw``), Spearman rank correlation and
  top-k intersection between the clean map and the map under P2's untargeted PGD and under the
  top-k attack (on P2's comparison maps, ``p2.similarity_maps``);
* P3: sparsity (Gini of the pixel map) and the share of the map's mass on the object (``masks``).

The leakage (P4, ``block_digits``) and worst-group (P4, ``spurious_shapes``) measures need their own
data and models: ``p4.evaluate_block`` and ``p4.evaluate_spurious`` score them.
"""
from __future__ import annotations

from typing import Any

import torch

from .. import attacks, attributions, metrics
from ..common import seeded, to_device_of
from ..evaluation import saliency_report
from . import p1, p2

__all__ = ["SIMILARITIES", "evaluate_model"]

SIMILARITIES = ("cosine", "pcc", "ssim")  # P1's three map similarities


def _similar(a, b, name):
    fn = {"cosine": metrics.cosine, "pcc": metrics.pcc, "ssim": metrics.ssim}[name]
    return fn(a, b)


def evaluate_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None = None, *,
                   attribution: str = "grad", pgd_linf: float = 8, pgd_l2: float = 0.5, pgd_steps: int = 20,
                   rps_eps: float = 8, rps_n: int = 4, aam_eps: float = 8, aam_steps: int = 20,
                   untargeted_eps: float = 8, untargeted_steps: int = 20, topk_eps: float = 8,
                   topk_steps: int = 20, k: float = 0.1, seed: int = 0) -> dict[str, float]:
    """Every paper's measures of ``model`` on ``(x, y)`` (module docstring), means over the images.

    Budgets in the library's units (L∞ in 0-255 pixel units, L2 in input units); ``k`` is the
    top-k fraction of P2's intersection and of the top-k attack; ``masks`` ((N, H, W) object masks)
    adds the object share.  Every attack and noise draw is seeded from ``seed``.  Returns
    ``{measure: value}``; the PGD entries are accuracies, the similarities higher-is-more-robust,
    deletion lower-is-better and preservation higher-is-better (P2's convention)."""
    if not 0 < k < 1:
        raise ValueError(f"k={k!r} is not valid; accepted: a fraction in (0, 1)")
    x, y = to_device_of(model, x, y)
    rows: dict[str, Any] = {"accuracy": metrics.accuracy(model, (x, y))}
    for norm, eps in (("linf", pgd_linf), ("l2", pgd_l2)):
        rows[f"PGD-{pgd_steps} {norm}"] = metrics.adversarial_accuracy(
            model, x, y, attacks.get("pgd", norm=norm, eps=eps, steps=pgd_steps, seed=seed))
    rep = saliency_report(model, x, y, [attribution], rps_eps=(rps_eps,), similarities=SIMILARITIES, rps_n=rps_n,
                          attack="targeted_attribution", attack_kw={"eps": aam_eps, "steps": aam_steps},
                          seed=seed, **p1.insertion_settings(model))[attribution]
    clean, adv = rep["map"], rep["map_adv"]
    for s in SIMILARITIES:  # AAM: the clean map against the attacked one, post-processed as RPS's maps
        rows[f"RPS {s}"] = float(rep["rps"][s][rps_eps].mean())
        rows[f"AAM {s}"] = float(_similar(attributions.postprocess(clean, "abs_max"),
                                          attributions.postprocess(adv, "abs_max"), s).mean())
    rows["insertion"] = float(rep["insertion"].mean())
    rows["adv-insertion"] = float(rep["adv_insertion"].mean())
    gk = p2.game_kw(model, x)
    rows["deletion"] = float(metrics.deletion_score(model, x, y, clean, **gk).mean())
    rows["preservation"] = float(metrics.preservation_score(model, x, y, clean, **gk).mean())
    fn = attributions.get(attribution)
    base = p2.similarity_maps(clean)
    with seeded(seed):
        x_pgd = attacks.untargeted_pgd(model, x, None, eps=untargeted_eps, steps=untargeted_steps, seed=seed)
        x_top = attacks.topk(model, x, None, eps=topk_eps, k=k, steps=topk_steps, attribution=attribution, seed=seed)
    for name, xa in (("PGD", x_pgd), ("top-k attack", x_top)):
        moved = p2.similarity_maps(fn(model, xa, y).detach())
        rows[f"spearman ({name})"] = float(metrics.spearman(base, moved).mean())
        rows[f"top-k intersection ({name})"] = float(metrics.topk_intersection(base, moved, k).mean())
    pix = clean.abs().sum(1)
    rows["gini"] = float(metrics.gini(pix).mean())
    if masks is not None:
        (masks,) = to_device_of(model, masks)
        rows["object share"] = float(metrics.object_share(clean, masks).mean())
    return rows
