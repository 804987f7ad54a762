"""Evaluation: what attacks, attributes and scores a model in one call (above ``attacks`` and
``metrics``).

``saliency_report`` computes P1's Table 1 (and its appendix) per sample for a list of
attribution methods: clean maps, RPS for several similarities and noise levels, Insertion, and
with an attribution attack the attacked maps, Adv-Insertion and whether the prediction was
kept.  ``attribution_scores`` is its short form (RPS and Insertion of raw maps) for the tour,
``attribution_maps`` the maps alone (for figures), ``activation_maximization`` the inputs a
model rates highest per class (P4 A.6, by gradient ascent), ``sanity_checks`` the tour's checks of
trained models and their scores.  Each method runs with torch's global RNG
seeded (``common.seeded``), so stochastic methods (smoothgrad) give the same maps whatever ran
before.  Inputs are moved to the model's device (``common.to_device_of``); the results are
tensors on that device, except ``roar_sets``' datasets, which are held on the CPU.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from . import attacks as _attacks
from . import attributions as _attr
from .common import device_of, generator, seeded, to_device_of
from .metrics import accuracy, adv_insertion_curve, insertion_curve, rps
from .metrics.accuracy import _predict
from .metrics.robustness import _similarity_fns

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .data import ArrayDataset, BaseDataset

__all__ = ["attribution_maps", "activation_maximization", "saliency_report",
           "attribution_scores", "sanity_checks", "cascading_randomization", "roar_sets"]

def saliency_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attributions: Sequence[str],
                    rps_eps: float | Sequence[float] = (16,), similarities: str | Sequence[str] = ("cosine",),
                    rps_n: int = 10, postprocess: str | None = "abs_max", attack: str | None = None,
                    attack_kw: Mapping[str, Any] | None = None, baseline: str | torch.Tensor = "zero",
                    fractions: Sequence[float] | torch.Tensor | None = None, seed: int | None = 0,
                    chunk: int = 64, progress: bool = False) -> dict[str, dict[str, Any]]:
    """P1 Table 1 (and its appendix) for each attribution method on one batch, per sample.

    For every name in ``attributions`` (``attributions.get``): the clean map; ``rps`` for each
    similarity and each eps of ``rps_eps`` (0-255 units; the same ``rps_n`` noise draws serve
    all similarities; maps post-processed by ``postprocess`` as in ``rps``); P1's Insertion
    curve and score (``insertion_curve``, ``baseline``, ``fractions``); and, when ``attack``
    names an attribution attack of ``attacks`` (e.g. ``"targeted_attribution"``, P1's AAM),
    the attacked input ``x_adv = attack(model, x, y)`` made against that attribution with
    ``attack_kw`` (the attack's units: linf budgets in 0-255 pixel units, e.g. ``{"eps": 4,
    "steps": 100}``), its map, P1's
    Adv-Insertion (the clean x inserted in the order of the attacked map) and whether the
    attack kept the prediction.  Samples go in chunks of ``chunk`` (captum methods expand each
    sample); chunk ``i`` draws its RPS noise with seed ``seed + i`` (None: the global RNG), and
    each method runs with torch's global RNG seeded by ``seed`` (``common.seeded``; restored
    after), so a stochastic attribution (smoothgrad) gives the same numbers whatever ran before.

    Returns ``{name: {"map", "rps": {similarity: {eps: (N,)}}, "insertion", "insertion_curve",
    and with an attack "x_adv", "map_adv", "adv_insertion", "adv_insertion_curve",
    "label_kept"}}`` (tensors, first dimension N).
    """
    x, y = to_device_of(model, x, y)
    eps_list = list(rps_eps) if isinstance(rps_eps, (list, tuple)) else [rps_eps]
    sims = list(similarities) if isinstance(similarities, (list, tuple)) else [similarities]
    sim_names = list(_similarity_fns(sims))
    fns = {name: _attr.get(name) for name in attributions}
    attack_kw = dict(attack_kw or {})
    if attack is not None:
        for name in fns:
            _attacks.get(attack, attribution=name, **attack_kw)  # bad names fail before any work
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive int; got chunk={chunk}")
    it = list(fns.items())
    if progress:
        import sys

        from tqdm import tqdm
        it = tqdm(it, desc="attributions", file=sys.stderr)
    out = {}
    for name, fn in it:
        parts = {}

        def add(key, value):
            parts.setdefault(key, []).append(value)

        with seeded(seed):
            for i in range(0, len(x), int(chunk)):
                xb, yb = x[i:i + chunk].detach(), y[i:i + chunk]
                h = fn(model, xb, yb).detach()
                add("map", h)
                for e in eps_list:
                    r = rps(model, xb, yb, fn, e, n=rps_n, similarity=sims, postprocess=postprocess,
                            seed=None if seed is None else seed + i)
                    for s, v in r.items():
                        add(("rps", s, e), v)
                curve = insertion_curve(model, xb, yb, h, fractions=fractions, baseline=baseline)
                add("insertion_curve", curve)
                add("insertion", curve.mean(1))
                if attack is not None:
                    x_adv = _attacks.get(attack, attribution=name, **attack_kw)(model, xb, yb)
                    h_adv = fn(model, x_adv, yb).detach()
                    adv = adv_insertion_curve(model, xb, yb, h_adv, fractions=fractions,
                                              baseline=baseline)
                    add("x_adv", x_adv)
                    add("map_adv", h_adv)
                    add("adv_insertion_curve", adv)
                    add("adv_insertion", adv.mean(1))
                    add("label_kept", _predict(model, x_adv) == _predict(model, xb))
        res = {"rps": {s: {} for s in sim_names}}
        for key, chunks in parts.items():
            if isinstance(key, tuple):
                res["rps"][key[1]][key[2]] = torch.cat(chunks)
            else:
                res[key] = torch.cat(chunks)
        out[name] = res
    return out


def attribution_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, methods: Sequence[str],
                       rps_eps: float = 8, rps_n: int = 10, similarity: str = "cosine",
                       baseline: str | torch.Tensor = "zero",
                       fractions: Sequence[float] | torch.Tensor | None = None, seed: int | None = 0,
                       chunk: int = 64, progress: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Score attribution methods on one batch: P1's RPS (at ``rps_eps``, 0-255 units, raw maps)
    and insertion score and curve, per sample (``saliency_report`` without post-processing).

    ``methods``: names for ``attributions.get``.  Returns
    ``{method: {"map": (N,C,H,W), "rps": (N,), "insertion": (N,), "insertion_curve": (N,F)}}``.
    """
    rep = saliency_report(model, x, y, methods, rps_eps=(rps_eps,), similarities=(similarity,),
                          rps_n=rps_n, postprocess=None, baseline=baseline, fractions=fractions,
                          seed=seed, chunk=chunk, progress=progress)
    sim = next(iter(_similarity_fns(similarity)))
    return {m: {"map": r["map"], "rps": r["rps"][sim][rps_eps], "insertion": r["insertion"],
                "insertion_curve": r["insertion_curve"]} for m, r in rep.items()}


def attribution_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attributions: Sequence[str],
                     seed: int | None = 0) -> dict[str, torch.Tensor]:
    """``{name: map}`` of each attribution method (``attributions.get``) on ``(x, y)``, detached;
    each method runs with torch's global RNG seeded by ``seed`` (restored after)."""
    x, y = to_device_of(model, x, y)
    out = {}
    for name in attributions:
        fn = _attr.get(name)
        with seeded(seed):
            out[name] = fn(model, x.detach(), y).detach()
    return out


AM_INITS = ("noise", "gray")


def activation_maximization(model: nn.Module, classes: Sequence[int] | torch.Tensor, in_shape: Sequence[int],
                            steps: int = 200, lr: float = 0.05, seed: int | None = 0, init: str = "noise",
                            jitter: int = 0) -> torch.Tensor:
    """P4 A.6 (Figs. 9-10): the input each class's logit likes best, by gradient ascent on
    g_k(x) from a random start; one image per class of ``classes``, all optimised in one batch.

    Start ``init``: 'noise' (uniform in [0.4, 0.6], from a local generator seeded by ``seed``)
    or 'gray' (0.5 everywhere).  Each of ``steps`` steps: Adam (``lr``) on the input to
    maximize sum_k g_k(x_k), then x clamped to [0, 1].  ``jitter`` > 0 rolls the batch by a
    random shift of up to ``jitter`` pixels (both spatial axes, drawn from the same generator)
    before each forward pass (Lucid's jitter; 0: none, P4 names no regularizer).  ``in_shape``:
    one input's shape (C, H, W).  The model runs in eval mode (its mode is restored after; batch
    norm in train mode would couple the classes) on its parameters' device and dtype; its
    parameters' ``.grad`` are not touched.  Returns detached images (K, *in_shape) in [0, 1].
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} is not valid; accepted: a non-negative int")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr={lr!r} is not valid; accepted: a positive number")
    if init not in AM_INITS:
        raise ValueError(f"init={init!r} is not known; accepted: {list(AM_INITS)}")
    in_shape = tuple(int(d) for d in in_shape)
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0 \
            or (jitter and len(in_shape) < 2):
        raise ValueError(f"jitter={jitter!r} is not valid for in_shape={in_shape}; accepted: a "
                         f"non-negative int (> 0 only for inputs with two spatial axes)")
    param = next(model.parameters(), None)
    device = device_of(model, default="cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    classes = torch.as_tensor(classes, device=device).long().reshape(-1)
    if classes.numel() == 0 or (classes < 0).any():
        raise ValueError(f"classes={classes.tolist()} is not valid; accepted: a non-empty sequence "
                         f"of class indices >= 0")
    g = generator(seed, device)
    shape = (classes.numel(), *in_shape)
    if init == "noise":
        x = 0.4 + 0.2 * torch.rand(shape, generator=g, device=device, dtype=dtype)
    else:
        x = torch.full(shape, 0.5, device=device, dtype=dtype)
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            xin = x
            if jitter:
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=g, device=device).tolist()
                xin = torch.roll(x, (dy, dx), dims=(-2, -1))
            with torch.enable_grad():
                score = model(xin).gather(1, classes.view(-1, 1)).sum()
                (grad,) = torch.autograd.grad(-score, x)
            x.grad = grad
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    finally:
        model.train(was_training)
    return x.detach()


def sanity_checks(models: Mapping[tuple[str, int], nn.Module], test_sets: Mapping[str, ArrayDataset],
                  scores: Mapping[int, Mapping[str, Mapping[str, torch.Tensor]]], x: torch.Tensor,
                  y: torch.Tensor, dataset: str, seed: int, ig_images: int = 4) -> dict[str, list[bool]]:
    """``{check: [bool, ...]}``: properties every trained model and score must have.

    ``models``: ``{(dataset, seed): model}``; ``test_sets``: ``{dataset: dataset}``;
    ``scores``: ``{seed: attribution_scores(models[(dataset, seed)], x, y, ...)}``.  Checks:
    every model beats 1.5x chance on its test set; RPS within [-1, 1]; each insertion curve
    ends at p_y(x) (all pixels inserted); Integrated Gradients' completeness (sum of the map =
    f(x) - f(0), 128 steps, float64) on the first ``ig_images`` images for
    ``models[(dataset, seed)]``.
    """
    checks = {}
    for (dname, _), net in models.items():
        acc = accuracy(net, (test_sets[dname].x, test_sets[dname].y))
        checks.setdefault("every model beats chance", []).append(acc > 1.5 / test_sets[dname].num_classes)
    for s, per in scores.items():
        for v in per.values():
            checks.setdefault("RPS within [-1, 1]", []).append(bool((v["rps"].abs() <= 1 + 1e-5).all()))
        net = models[(dataset, s)]
        xs, ys = to_device_of(net, x, y)
        with torch.no_grad():
            p_y = net(xs).softmax(1).gather(1, ys[:, None])[:, 0]
        ends = torch.stack([v["insertion_curve"][:, -1].to(p_y.device) for v in per.values()])
        checks.setdefault("insertion curve ends at p_y(x)", []).append(
            bool(torch.allclose(ends, p_y.expand_as(ends), atol=1e-5)))
    net64 = copy.deepcopy(models[(dataset, seed)]).double()
    xs, ys = to_device_of(net64, x[:ig_images].double(), y[:ig_images])
    ig = _attr.get("integrated_gradients", steps=128)(net64, xs, ys)
    with torch.no_grad():
        gap = net64(xs).gather(1, ys[:, None])[:, 0] - net64(torch.zeros_like(xs)).gather(1, ys[:, None])[:, 0]
    checks["IG completeness: sum of map = f(x) - f(0)"] = [
        bool(torch.allclose(ig.sum((1, 2, 3)), gap, rtol=2e-2, atol=2e-2))]
    return checks


def cascading_randomization(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            attribution: str | Callable[..., torch.Tensor] = "grad",
                            seed: int = 0) -> list[dict[str, Any]]:
    """The model-parameter randomization test (Adebayo 2018; P3 C.2.6, Figs. 11, 15): the layers
    with weights (conv, linear, batch norm) are re-initialised cumulatively from the output back
    (PyTorch's ``reset_parameters``, seeded), and after each the map of class ``y`` is compared
    with the trained model's by SSIM of the per-image max-normalized maps (``postprocess``
    "max", data range 1).  Returns rows ``{"randomized": layer name ("none" first),
    "layers": how many are random, "ssim": mean over images, "maps": the (N, 1, H, W) maps}``;
    ``model`` itself is left unchanged (a deep copy is randomized).  ``attribution``: a name or an
    explainer of ``attributions.get`` (e.g. ``get("grad", space="normalized")``)."""
    from .metrics import ssim

    explain = _attr.get(attribution) if isinstance(attribution, str) else attribution
    kinds = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    net = copy.deepcopy(model).eval()
    names = [n for n, m in net.named_modules() if isinstance(m, kinds)]
    if not names:
        raise ValueError("cascading_randomization needs a model with conv, linear or batch-norm layers")
    modules = dict(net.named_modules())

    def maps():
        with seeded(seed):
            return _attr.postprocess(explain(net, x, y).detach(), "max")

    base = maps()
    rows = [{"randomized": "none", "layers": 0, "ssim": float(ssim(base, base, data_range=1.0).mean()),
             "maps": base}]
    for i, name in enumerate(reversed(names)):
        with seeded(seed + 1 + i):
            modules[name].reset_parameters()
        m = maps()
        rows.append({"randomized": name, "layers": i + 1, "ssim": float(ssim(base, m, data_range=1.0).mean()),
                     "maps": m})
    return rows


def roar_sets(model: nn.Module, dataset: BaseDataset, fraction: float,
              attribution: str | Callable[..., torch.Tensor] = "grad", baseline: str | torch.Tensor = "mean",
              batch_size: int = 256, seed: int = 0) -> dict[str, BaseDataset]:
    """ROAR / DiffROAR (Hooker 2019; P3 Sec. 5.2, B.5): ``{"top": ..., "bottom": ...}``, copies of
    ``dataset`` (an in-memory dataset: ``x``, ``y``, ``take``) with the ``fraction`` most / least
    relevant pixels of every image (by ``model``'s ``attribution`` map of the true label -- a name
    or an explainer of ``attributions.get`` --, |.| summed over channels) set to ``baseline`` ('mean': each image's channel means; 'zero'; or a
    tensor).  An in-memory dataset gives ``ArrayDataset`` copies, a file-based one (ImageNette)
    ``UInt8ImageDataset`` copies (8-bit pixels, one byte per value in memory).
    Retrain on each and score on the matching test copies; DiffROAR = accuracy(bottom
    removed) - accuracy(top removed).  Maps are computed in batches with torch's global RNG
    seeded (``seed``)."""
    from .data import ArrayDataset, BaseDataset, UInt8ImageDataset
    from .metrics import removed_images

    if not isinstance(dataset, BaseDataset):
        raise ValueError(f"roar_sets needs a dataset of the library (data.load's); got {type(dataset).__name__}")
    in_memory = hasattr(dataset, "x") and torch.is_tensor(dataset.x)
    explain = _attr.get(attribution) if isinstance(attribution, str) else attribution
    out, bs = {"top": [], "bottom": []}, int(batch_size)
    with seeded(seed):
        for i in range(0, len(dataset), bs):
            y = dataset.y[i:i + bs]
            x = dataset.x[i:i + bs] if in_memory else torch.stack([dataset[j][0] for j in range(i, i + len(y))])
            maps = explain(model, x, y).detach().cpu()  # the copies are held on the CPU, as the dataset
            for key, most in (("top", True), ("bottom", False)):
                r = removed_images(x, maps, fraction, most, baseline)
                out[key].append(r if in_memory else (r * 255).round().to(torch.uint8))
    meta = {"classes": dataset.classes, "name": dataset.name,
            "extras": {k: getattr(dataset, k) for k in dataset.extras}}
    split = f"{dataset.split}, {{}} {fraction:g} removed by {attribution}"
    if in_memory:
        return {k: ArrayDataset(torch.cat(v), dataset.y.clone(), num_classes=dataset.num_classes,
                                split=split.format(k), **meta) for k, v in out.items()}
    return {k: UInt8ImageDataset(torch.cat(v), dataset.y.clone(), split=split.format(k), mean=dataset.mean,
                                 std=dataset.std, **meta) for k, v in out.items()}
