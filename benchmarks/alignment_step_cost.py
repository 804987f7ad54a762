"""P1's l2+cosd training step: ours (``methods.get("l2_cosd")``) against P1's released step, side by side.

Run ``python -m benchmarks.alignment_step_cost [--repeats 9] [--batch-size 64] [--device cpu]``;
writes ``results/benchmark_alignment_step_cost.json``.

Sides (``VARIANTS``), each training its own copy of one initial model (``lenet``, softplus beta 3,
with the data's per-channel ``Normalize`` first, ``models.build``) with Adam (lr 1e-3) and
clipping 0.5 on the same batches, round-robin (``cost.step_costs``: a slow phase of a shared
machine hits every side alike):

* ``released``: RobustAGA's ``LitL2PlusCosdClassifier.default_step`` (project/module/
  pl_l2_plus_cosd_classifier.py; ``perturb="uniform"``, ``detach_source_grad=True``), transcribed
  in ``released_step``.  The released code normalizes its batches in the data pipeline and gives
  its networks the normalized input, so the transcription runs the network after the model's
  ``Normalize`` on ``(x - mean) / std`` and draws its perturbation ``z`` in that space, as the
  released code does (``eps / (255 std)`` times a uniform draw in [-1, 1], after the clean pass).
* ``ours``: the library's ``l2_cosd`` with P1's reference hyperparameters (``form="reference_code"``,
  the same loss for the same draw).
* ``fused``: a candidate, not the library's step: one forward over ``torch.cat([x, x + delta])``
  and one input-gradient pass with ``create_graph`` over both halves (``fused_step``; models
  without batch-coupled layers only).  It saves a forward and a first backward, but the double
  backward of the loss then runs over both halves (the clean half's only to carry zeros, its
  gradient being detached) and the graph holds the second-order intermediates of both: it pays
  where kernel launches dominate (a tiny model, a small batch, perhaps a GPU) and costs more
  where arithmetic does (the cpu profile's LeNet at batch 64).

Before timing, every side's loss and parameter gradients on the first batch are compared with
the released step's from the same initial weights and the same RNG state (``agreement``).

Time: per round, the paired ratio t_side / t_released of the same round; reported are its
median and quartiles over the rounds.  Memory: ``cost.SavedTensorPeak``, the exact peak of the
bytes held by the autograd graphs in a step (deterministic, one measurement).  Each batch is its
own tensor, as a DataLoader gives it: a storage is counted whole, so a step that saves its batch
as it is (ours on a model without ``Normalize``; the released step saves a normalized copy) would
be charged for all the data a sliced batch views (that made ours look 5% heavier than the
released step on a LeNet without ``Normalize`` in a 13-batch run; the two hold the same graph).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_saliency import cost, data, models, units
from robust_saliency.common import seeded
from robust_saliency.methods import get as get_method
from robust_saliency.papers import p1

from ._common import finish, machine, torch_threads

HPARAMS = p1.REFERENCE_HPARAMS["l2_cosd"]  # eps 4 (0-255 units), lam_l2 0.01, lam_cos 1.0
VARIANTS = ("released", "ours", "fused")
TARGET = {"time_ratio": 0.9, "mem_ratio": 1.0}  # ours against released

DEFAULT_CONFIG = {
    "variants": list(VARIANTS),  # must include "released" (the reference)
    "repeats": 9,          # timed rounds (each: one step of every side)
    "warmup": 1,           # untimed rounds first
    "batch_size": 64,
    "model": "lenet",
    "size": 32,            # shapes images, size x size
    "seed": 0,
    "num_threads": 1,
    "device": "cpu",       # e.g. "cuda" to see the sides where kernel launches, not arithmetic, dominate
    "output": "default",   # results/benchmark_alignment_step_cost.json; None: do not write
    "verbose": True,
}


def _split(model, x):
    """(network after the leading ``Normalize``, its mean, its std) shaped to broadcast with
    ``x``; ``(model, 0, 1)`` for a model without one."""
    norm = models.leading_normalize(model)
    if norm is None:
        return model, 0.0, 1.0
    if not (isinstance(model, nn.Sequential) and model[0] is norm):
        raise ValueError("a model with a Normalize must be an nn.Sequential that starts with it")
    return model[1:], norm._view(norm.mean, x), norm._view(norm.std, x)


def released_step(net, x_n, y, std, eps=4.0, lamb_l2=0.01, lamb_cos=1.0):
    """RobustAGA's ``LitL2PlusCosdClassifier.default_step`` (perturb ``"uniform"``,
    ``detach_source_grad=True``) on the normalized batch ``x_n``; ``std`` the normalization's
    (``eps / (255 std)`` is the released ``eps_into_norm``).  Returns the loss."""
    criterion_fn = lambda output, y: output[range(len(y)), y].sum()  # noqa: E731 (as released)
    with torch.enable_grad():
        x = x_n.detach()  # the released code sets requires_grad on its (fresh) batch itself
        x.requires_grad = True
        y_hat = net(x)
        yc_hat = criterion_fn(y_hat, y)
        grad = torch.autograd.grad(outputs=yc_hat, inputs=x, create_graph=True, retain_graph=True)[0]
        acc = (y_hat.argmax(dim=1) == y).sum().item() * 1.0 / len(y)  # noqa: F841 (logged there)
        ce_loss = F.cross_entropy(y_hat, y, reduction="mean")
        eps_into_norm = eps / (255 * std)
        z = eps_into_norm * (2 * torch.rand_like(x) - 1)
        grad = grad.detach()
        x_r = (x + z).clone().detach().requires_grad_()
        y_hat_r = net(x_r)
        yc_hat_r = criterion_fn(y_hat_r, y)
        grad_r = torch.autograd.grad(outputs=yc_hat_r, inputs=x_r, create_graph=True, retain_graph=True)[0]
        cossim = F.cosine_similarity(grad.flatten(start_dim=1), grad_r.flatten(start_dim=1)).mean()
        cosd = (1 - cossim) / 2
        l2 = (grad - grad_r).flatten(start_dim=1).norm(dim=1).square().mean()
        reg_loss = lamb_l2 * l2 + lamb_cos * cosd
        return ce_loss + reg_loss


def _released(model, x, y):
    net, mean, std = _split(model, x)
    loss = released_step(net, (x - mean) / std, y, std, HPARAMS["eps"], HPARAMS["lam_l2"], HPARAMS["lam_cos"])
    return loss, {}


def _batch_coupled(model):
    """Modules whose output for one sample depends on the others in the batch (BatchNorm in
    training mode), which a concatenated forward would change."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def fused_step(model, x, y, eps=4.0, lamb_l2=0.01, lamb_cos=1.0):
    """The candidate: one forward and one input-gradient pass over ``cat([x, x + delta])`` (same
    loss as ``released_step`` for the same draw, up to rounding).  Returns the loss."""
    if _batch_coupled(model):
        raise ValueError("the fused step needs a model without batch-coupled layers "
                         "(BatchNorm in training mode)")
    n = len(y)
    delta = (2.0 * torch.rand_like(x) - 1.0) * units.linf(eps)
    both = torch.cat([x, x + delta]).requires_grad_(True)
    logits = model(both)
    (g,) = torch.autograd.grad(logits.gather(1, torch.cat([y, y]).view(-1, 1)).sum(), both,
                               create_graph=True)
    _, _, std = _split(model, x)
    g = g * std  # the input gradient in the normalized space, as the released step's
    a, b = g[:n].detach().flatten(1), g[n:].flatten(1)
    l2 = (b - a).pow(2).sum(1).mean()
    cosd = 0.5 * (1.0 - F.cosine_similarity(b, a, dim=1, eps=1e-8).mean())
    return F.cross_entropy(logits[:n], y) + lamb_l2 * l2 + lamb_cos * cosd


def _fused(model, x, y):
    return fused_step(model, x, y, HPARAMS["eps"], HPARAMS["lam_l2"], HPARAMS["lam_cos"]), {}


def _sides(names):
    ours = get_method("l2_cosd", **HPARAMS)
    table = {"released": _released, "ours": ours, "fused": _fused}
    return {name: table[name] for name in names}


def _check_config(cfg):
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; accepted: {sorted(DEFAULT_CONFIG)}")
    names = list(cfg["variants"])
    if "released" not in names or not set(names) <= set(VARIANTS) or len(set(names)) != len(names):
        raise ValueError(f"variants={names!r} is not valid; accepted: distinct names from "
                         f"{list(VARIANTS)} including 'released' (the reference)")
    for key, low in (("repeats", 1), ("warmup", 0), ("batch_size", 1), ("num_threads", 1)):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key}={v!r} is not valid; accepted: an int >= {low}")
    if cfg["model"] not in models.NAMES:
        raise ValueError(f"model={cfg['model']!r} is not known; accepted: {list(models.NAMES)}")


def agreement(model, sides, x, y, seed=0):
    """Per side: the largest absolute difference of its loss and the largest difference of its
    parameter gradients (relative to the largest released gradient) from the released step's, on
    copies of ``model`` in training mode with the global RNG seeded by ``seed`` for each."""
    out = {}
    for name, step in sides.items():
        net = copy.deepcopy(model).train()
        with seeded(seed):
            loss, _ = step(net, x, y)
        grads = torch.autograd.grad(loss, [p for p in net.parameters()])
        out[name] = (float(loss.detach()), grads)
    ref_loss, ref_grads = out["released"]
    scale = max(float(g.abs().max()) for g in ref_grads)
    return {name: {"loss_abs_diff": abs(loss - ref_loss),
                   "grad_max_rel_diff": max(float((g - r).abs().max()) for g, r in zip(grads, ref_grads)) / scale}
            for name, (loss, grads) in out.items()}


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results dict."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    _check_config(cfg)
    with torch_threads(cfg["num_threads"]):
        results = _run(cfg)
    return finish(results, cfg["output"], "benchmark_alignment_step_cost.json", cfg["verbose"], format_table)


def _quartiles(values):
    if len(values) == 1:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


def _run(cfg):
    rounds = cfg["warmup"] + cfg["repeats"]
    bs = cfg["batch_size"]
    ds = data.load("shapes", "train", n=bs * rounds, size=cfg["size"], seed=cfg["seed"])
    with seeded(cfg["seed"]):
        model = models.build(cfg["model"], ds.num_classes, ds.in_shape, activation="softplus", beta=3.0,
                             mean=list(ds.mean), std=list(ds.std)).to(cfg["device"])
    sides = _sides(cfg["variants"])
    # each batch its own storage, as a DataLoader's (see the module docstring)
    batches = [(ds.x[r * bs:(r + 1) * bs].clone().to(cfg["device"]), ds.y[r * bs:(r + 1) * bs].clone().to(cfg["device"]))
               for r in range(rounds)]
    agree = agreement(model, sides, *batches[0], seed=cfg["seed"])
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    costs = cost.step_costs(model, sides, batches, reference="released", warmup=cfg["warmup"], seed=cfg["seed"])
    wall = time.perf_counter() - t0
    ref_times = costs["released"]["times_s"]
    per_side = {}
    for name, c in costs.items():
        paired = [t / r for t, r in zip(c["times_s"], ref_times)]
        per_side[name] = {**c, "paired_time_ratios": paired, "time_ratio_quartiles": _quartiles(paired),
                          **agree[name]}
    ours = per_side.get("ours")
    target = None if ours is None else {
        **TARGET, "time_ok": ours["time_ratio"] <= TARGET["time_ratio"],
        "mem_ok": ours["mem_ratio"] <= TARGET["mem_ratio"]}
    return {
        "config": {k: v for k, v in cfg.items() if k not in ("output", "verbose")},
        "hparams": dict(HPARAMS),
        "variants": per_side,
        "target": target,
        "measure": {"time": "median (and quartiles) over rounds of t_side / t_released in the same "
                            "round; a step = zero_grad + loss + backward + clip + Adam step + loss.item()",
                    "memory": "peak bytes of tensors saved for backward during one step "
                              "(cost.SavedTensorPeak; storages counted once; parameters excluded)"},
        "machine": {**machine(cfg["num_threads"], load0), "wall_time_s": wall},
    }


def format_table(results):
    """The results as a text table: time and graph memory per step of each side, as ratios to
    the released step, and each side's agreement with it."""
    head = (f"{'side':<9} {'ms/step':>8} {'time x released [q1, q3]':>26} {'graph MB':>9} "
            f"{'mem x':>6} {'|loss diff|':>11} {'grad diff':>9}")
    lines = [head, "-" * len(head)]
    for name, v in results["variants"].items():
        q1, q3 = v["time_ratio_quartiles"]
        lines.append(f"{name:<9} {1e3 * v['median_time_s']:>8.1f} {v['time_ratio']:>11.3f} [{q1:.3f}, {q3:.3f}]"
                     f" {v['peak_graph_mb']:>9.2f} {v['mem_ratio']:>6.3f} {v['loss_abs_diff']:>11.1e}"
                     f" {v['grad_max_rel_diff']:>9.1e}")
    cfg, mach = results["config"], results["machine"]
    lines.append(f"{cfg['model']} (softplus beta 3, Normalize) on {cfg['device']}, shapes {cfg['size']}x{cfg['size']}, "
                 f"batch {cfg['batch_size']}, {cfg['repeats']} rounds (+{cfg['warmup']} warm-up), "
                 f"{mach['threads']} thread(s), load average {mach['loadavg_before']} -> {mach['loadavg_after']}")
    t = results.get("target")
    if t is not None:
        lines.append(f"target ours: time <= x{t['time_ratio']}: {t['time_ok']}, graph memory <= "
                     f"x{t['mem_ratio']}: {t['mem_ok']}")
    return "\n".join(lines)


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.alignment_step_cost",
                                description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=DEFAULT_CONFIG["repeats"])
    p.add_argument("--warmup", type=int, default=DEFAULT_CONFIG["warmup"])
    p.add_argument("--batch-size", type=int, default=DEFAULT_CONFIG["batch_size"])
    p.add_argument("--variants", default=",".join(DEFAULT_CONFIG["variants"]),
                   help="comma-separated, must include released")
    p.add_argument("--threads", type=int, default=DEFAULT_CONFIG["num_threads"])
    p.add_argument("--device", default=DEFAULT_CONFIG["device"])
    p.add_argument("--output", default="default", help="JSON path ('none': do not write)")
    a = p.parse_args(argv)
    return {"repeats": a.repeats, "warmup": a.warmup, "batch_size": a.batch_size,
            "variants": [v for v in a.variants.split(",") if v], "num_threads": a.threads,
            "device": a.device, "output": None if a.output.lower() == "none" else a.output}


if __name__ == "__main__":
    main(_parse(sys.argv[1:]))
