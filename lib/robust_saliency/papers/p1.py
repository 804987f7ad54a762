"""P1 (Joo et al., AAAI 2023, local gradient alignment): its protocol on top of the library.

``fit_method`` trains a method the way P1 does (ATEX distils the seed's ``ce`` model),
``evaluate_saliency`` is its Table 1 evaluation (accuracy, RPS, Insertion, targeted AAM and
Adv-Insertion; cached), ``select_hparams`` its model-selection rule.
"""
import torch

from .. import evaluation, metrics, training
from ..runs import cached_eval, fit

__all__ = ["fit_method", "evaluate_saliency", "select_hparams"]


def fit_method(params, train_set, method, seed, hparams=None):
    """Load-or-train ``method`` with ``hparams`` for ``seed`` (``fit``), the way P1 trains it.

    ``atex`` (Tang 2022) distils a trained teacher: the ``ce`` model of the same seed, which the
    student starts from, fine-tuned for ``params["atex_epochs"]`` epochs (default: the
    profile's ``num_epochs``).  Every other method trains from the seed's initial weights.
    """
    hparams = dict(hparams or {})
    if method != "atex":
        return fit(params, train_set, method, seed=seed, method_kw=hparams)
    teacher = fit(params, train_set, "ce", seed=seed)
    epochs = params.get("atex_epochs") or params["num_epochs"]
    return fit(params, train_set, "atex", seed=seed, method_kw={"teacher": teacher, **hparams},
               init_from=teacher, num_epochs=int(epochs))


def evaluate_saliency(params, model, test_set, x, y, attributions=None, rps_eps=None,
                      attack="targeted_attribution"):
    """Accuracy on ``test_set`` and ``evaluation.saliency_report`` on ``(x, y)`` (P1 Table 1),
    cached under the model's training key and the evaluation settings (``cached_eval``).

    Settings from ``params``: ``attributions``, ``rps_eps_grid`` (default ``[rps_eps]``),
    ``rps_n``, ``attack_eps`` (0-255 units) and ``attack_steps`` of P1's targeted AAM (frame
    target), ``seed`` 0 for the RPS draws; RPS with cosine, PCC and SSIM.  ``attributions``
    and ``rps_eps`` (a list) override the params; ``attack=None`` skips the attack (a cheap
    evaluation, e.g. for a hyperparameter grid).  Returns ``{"accuracy": float, "report"}``.
    """
    eps_grid = list(rps_eps or params.get("rps_eps_grid") or [params["rps_eps"]])
    config = {"attributions": list(attributions or params["attributions"]), "rps_eps": eps_grid,
              "similarities": ["cosine", "pcc", "ssim"], "rps_n": int(params["rps_n"]),
              "attack": attack,
              "attack_eps": None if attack is None else params["attack_eps"],
              "attack_steps": None if attack is None else int(params["attack_steps"]),
              "x": x, "y": y, "test_set": training.dataset_identity(test_set),
              "report_version": evaluation.REPORT_VERSION}

    def compute():
        loader = torch.utils.data.DataLoader(test_set, batch_size=512)
        attack_kw = None if attack is None else {"eps": params["attack_eps"],
                                                 "steps": config["attack_steps"]}
        report = evaluation.saliency_report(
            model, x, y, config["attributions"], rps_eps=eps_grid,
            similarities=config["similarities"], rps_n=config["rps_n"], attack=attack,
            attack_kw=attack_kw, seed=0)
        return {"accuracy": metrics.accuracy(model, loader), "report": report}

    return cached_eval("saliency", model, config, compute)


def select_hparams(rows, reference_accuracy, tol=0.01, score="score", accuracy="accuracy"):
    """P1's model selection: the row with the highest ``score`` among those whose ``accuracy``
    is at least ``reference_accuracy - tol`` (P1: Grad RPS within 1% test accuracy of CE).

    ``rows``: a list of dicts (one per hyperparameter setting).  If no row is within the
    tolerance, the most accurate row is returned.  Returns ``(index, reason)`` with ``reason``
    'highest score within tolerance' or 'none within tolerance: most accurate'.
    """
    if not rows:
        raise ValueError("rows=[] is not valid; accepted: a non-empty list of dicts")
    ok = [i for i, r in enumerate(rows) if r[accuracy] >= reference_accuracy - tol]
    if ok:
        return max(ok, key=lambda i: (rows[i][score], rows[i][accuracy])), \
            "highest score within tolerance"
    return max(range(len(rows)), key=lambda i: rows[i][accuracy]), \
        "none within tolerance: most accurate"
