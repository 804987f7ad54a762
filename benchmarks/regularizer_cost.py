"""Training cost of P1's regularizers per step, relative to ``ce`` (P1 Table 2).

Run ``python -m benchmarks.regularizer_cost [--repeats 5] [--batch-size 64]``.  Every method
(``ce``, ``l2``, ``l2_cosd``, ``hessian``, ``iga``, ``atex`` with P1's reference
hyperparameters for LeNet, ``methods.get``) trains its own copy of one initial model
(``lenet``, softplus beta 3, ``models.build``) with Adam (lr 1e-3) and gradient clipping 0.5, as
``training.train`` does.  A step is what ``training.train`` times: zero_grad, the method's loss,
backward, clipping, optimizer step, ``loss.item()``.  Methods are interleaved round-robin on the
same batches (batch ``r`` of ``shapes`` 32x32 for every method in round ``r``), so a slow phase
of a shared machine hits all methods alike; time ratios are medians over rounds of the paired
ratio t_method / t_ce of the same round.

Time and memory are measured by ``robust_saliency.cost.step_costs`` (its docstring says how:
memory is the exact peak of the bytes held by the autograd graphs in a step; ``mem_state_ratio``
adds parameters, gradients and Adam state to both sides).

The machine may be shared (e.g. a notebook running alongside): the results record the load
average before and after, and the number of torch threads (1 by default: with one thread per
process the timings of a 2-core machine are least disturbed by a second busy process).
"""
import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import torch

from robust_saliency import cache, cost, data, models
from robust_saliency.methods import get as get_method
from robust_saliency.papers import p1

P1_TABLE2 = p1.TABLE2  # (time, memory) ratios to CE per P1 column
P1_COLUMN = "CIFAR10 LeNet"
METHOD_HPARAMS = p1.REFERENCE_HPARAMS  # P1's reference settings

DEFAULT_CONFIG = {
    "methods": ["ce", "l2", "l2_cosd", "hessian", "iga", "atex"],
    "repeats": 5,          # timed rounds (each: one step of every method)
    "warmup": 1,           # untimed rounds first
    "batch_size": 64,
    "model": "lenet",
    "dataset": "shapes",
    "size": 32,
    "activation": "softplus",
    "beta": 3.0,
    "lr": 1e-3,
    "grad_clip": 0.5,
    "seed": 0,
    "num_threads": 1,
    "hparams": {},         # per-method overrides of METHOD_HPARAMS
    "output": "default",   # results/benchmark_regularizer_cost.json; None: do not write
    "verbose": True,
}

TARGET = {"method": "l2_cosd", "time_ratio": 2.0, "mem_ratio": 2.0, "cheaper_than": "hessian"}


def _check_config(cfg):
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; accepted: {sorted(DEFAULT_CONFIG)}")
    methods = list(cfg["methods"])
    if "ce" not in methods:
        raise ValueError(f"methods={methods!r} must include 'ce' (ratios are relative to it)")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods={methods!r} has duplicates")
    for key, low in (("repeats", 1), ("warmup", 0), ("batch_size", 1), ("num_threads", 1)):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key}={v!r} is not valid; accepted: an int >= {low}")
    if cfg["model"] not in models.NAMES:
        raise ValueError(f"model={cfg['model']!r} is not known; accepted: {list(models.NAMES)}")
    return methods


def _method(name, cfg, teacher):
    hp = {**METHOD_HPARAMS.get(name, {}), **cfg["hparams"].get(name, {})}
    if name == "atex":
        return get_method(name, teacher=teacher, **hp), hp
    return get_method(name, **hp), hp


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results dict."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    methods = _check_config(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["num_threads"])
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            results = _run(cfg, methods)
    finally:
        torch.set_num_threads(threads)
    out = cfg["output"]
    if out is not None:
        path = (Path(__file__).resolve().parents[1] / "results" / "benchmark_regularizer_cost.json"
                if out == "default" else Path(out))
        cache.atomic_write_json(results, path)
        results["path"] = str(path)
    if cfg["verbose"]:
        print(format_table(results))
    return results


def _run(cfg, methods):
    rounds = cfg["warmup"] + cfg["repeats"]
    bs = cfg["batch_size"]
    ds = data.load(cfg["dataset"], "train", n=bs * rounds, size=cfg["size"], seed=cfg["seed"])
    base = models.build(cfg["model"], ds.num_classes, ds.in_shape, activation=cfg["activation"],
                        beta=cfg["beta"])
    teacher = copy.deepcopy(base).eval()  # ATEX distils a trained teacher; a copy costs the same
    built = {name: _method(name, cfg, teacher) for name in methods}
    batches = [(ds.x[r * bs:(r + 1) * bs], ds.y[r * bs:(r + 1) * bs]) for r in range(rounds)]
    load_before = _loadavg()
    t_start = time.perf_counter()
    costs = cost.step_costs(base, {name: m for name, (m, _) in built.items()}, batches,
                            lr=cfg["lr"], grad_clip=cfg["grad_clip"], warmup=cfg["warmup"])
    wall = time.perf_counter() - t_start
    per_method = {}
    for name in methods:
        reported = P1_TABLE2[P1_COLUMN].get(name)
        per_method[name] = {"hparams": built[name][1], **costs[name],
                            "p1_time_ratio": None if reported is None else reported[0],
                            "p1_mem_ratio": None if reported is None else reported[1]}
    target = None
    if TARGET["method"] in per_method:
        m = per_method[TARGET["method"]]
        other = per_method.get(TARGET["cheaper_than"])
        target = {**TARGET,
                  "time_ok": m["time_ratio"] <= TARGET["time_ratio"],
                  "mem_ok": m["mem_ratio"] <= TARGET["mem_ratio"],
                  "cheaper_ok": None if other is None else bool(
                      m["time_ratio"] < other["time_ratio"] and m["mem_ratio"] < other["mem_ratio"])}
    cfg_out = {k: v for k, v in cfg.items() if k not in ("output", "verbose")}
    return {
        "config": cfg_out,
        "methods": per_method,
        "target": target,
        "p1_table2": P1_TABLE2,
        "p1_column": P1_COLUMN,
        "measure": {"time": "median over rounds of t_method / t_ce in the same round; a step = "
                            "zero_grad + loss + backward + clip + Adam step + loss.item()",
                    "memory": "peak bytes of tensors saved for backward during one step "
                              "(saved_tensors_hooks; storages counted once; parameters excluded)",
                    "mem_state": "the same plus 4x parameter bytes (weights, grads, Adam moments) "
                                 "and the teacher's weights for atex"},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": cfg["num_threads"],
                    "loadavg_before": load_before, "loadavg_after": _loadavg(),
                    "wall_time_s": wall},
    }


def format_table(results):
    """The results as a text table: median time and peak graph memory per step, ratios to ce, P1."""
    col = results["p1_column"]
    head = (f"{'method':<9} {'ms/step':>9} {'time x':>7} {'graph MB':>9} {'mem x':>6} "
            f"{'mem+state x':>11} | {'P1 time x':>9} {'P1 mem x':>8}  ({col})")
    lines = [head, "-" * len(head)]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for name, m in results["methods"].items():
        lines.append(f"{name:<9} {1e3 * m['median_time_s']:>9.1f} {m['time_ratio']:>7.2f} "
                     f"{m['peak_graph_mb']:>9.2f} {m['mem_ratio']:>6.2f} {m['mem_state_ratio']:>11.2f} | "
                     f"{fmt(m['p1_time_ratio'], '>9.2f')} {fmt(m['p1_mem_ratio'], '>8.2f')}")
    mach = results["machine"]
    cfg = results["config"]
    lines.append(f"{cfg['model']} ({cfg['activation']} beta {cfg['beta']}), {cfg['dataset']} "
                 f"{cfg['size']}x{cfg['size']}, batch {cfg['batch_size']}, {cfg['repeats']} rounds "
                 f"(+{cfg['warmup']} warm-up), {mach['torch_threads']} thread(s), load average "
                 f"{mach['loadavg_before']} -> {mach['loadavg_after']}")
    t = results.get("target")
    if t is not None:
        lines.append(f"target {t['method']}: time <= x{t['time_ratio']}: {t['time_ok']}, memory <= "
                     f"x{t['mem_ratio']}: {t['mem_ok']}, cheaper than {t['cheaper_than']}: "
                     f"{t['cheaper_ok']}")
    return "\n".join(lines)


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.regularizer_cost",
                                description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=DEFAULT_CONFIG["repeats"])
    p.add_argument("--batch-size", type=int, default=DEFAULT_CONFIG["batch_size"])
    p.add_argument("--warmup", type=int, default=DEFAULT_CONFIG["warmup"])
    p.add_argument("--model", default=DEFAULT_CONFIG["model"])
    p.add_argument("--methods", default=",".join(DEFAULT_CONFIG["methods"]),
                   help="comma-separated, must include ce")
    p.add_argument("--threads", type=int, default=DEFAULT_CONFIG["num_threads"])
    p.add_argument("--output", default="default", help="JSON path ('none': do not write)")
    a = p.parse_args(argv)
    return {"repeats": a.repeats, "batch_size": a.batch_size, "warmup": a.warmup, "model": a.model,
            "methods": [m for m in a.methods.split(",") if m], "num_threads": a.threads,
            "output": None if a.output.lower() == "none" else a.output}


if __name__ == "__main__":
    main(_parse(sys.argv[1:]))
