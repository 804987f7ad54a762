"""Training cost per step of P4's marginal-density regularizer (each implementation) and of its
baselines, relative to ``ce`` (issue 12; P4 Fig. 2b; SPEC section 8 "Cost").

Run ``python -m benchmarks.marginal_density_cost [--repeats 15] [--batch-size 64]``.  Every
method (``METHODS``: ce, marginal_density basic / stable / efficient, input_grad, hessian,
score_matching, cure, at_pgd with P4's 3 steps) trains its own copy of one initial model (the
small CNN of notebook 04's shapes part, 3 x 16 x 16 inputs) with Adam and gradient clipping on
the same batches, interleaved round-robin (``cost.step_costs``: time ratios are medians of the
per-round ratios to ce; memory is the exact peak of the bytes the autograd graphs hold in a
step).  P4 argues its regularizer is cheap and that Eq. 6 saves a gradient over Eq. 5: this puts
both to the test.  Writes ``results/benchmark_marginal_density_cost.json``.
"""
import argparse
import os

import torch

from robust_saliency import cost, data, models
from robust_saliency.methods import get as get_method

from ._common import finish, machine, start, torch_threads

METHODS = {
    "ce": ("ce", {}),
    "marginal_density (basic)": ("marginal_density", {"variant": "basic", "lam": 0.1}),
    "marginal_density (stable)": ("marginal_density", {"variant": "stable", "lam": 0.1}),
    "marginal_density (efficient)": ("marginal_density", {"variant": "efficient", "lam": 0.1}),
    "input_grad": ("input_grad", {"lam": 0.1}),
    "hessian": ("hessian", {"lam": 1e-3, "form": "paper"}),
    "score_matching": ("score_matching", {}),
    "cure": ("cure", {"lam": 1.0, "h": 0.5}),
    "at_pgd": ("at_pgd", {"eps": 16, "alpha": 8, "steps": 3}),
}
DEFAULT_CONFIG = {"methods": list(METHODS), "repeats": 15, "warmup": 1, "batch_size": 64, "size": 16,
                  "model": "small_cnn", "width": 16, "activation": "softplus", "seed": 0, "threads": 1,
                  "output": "default", "verbose": True}


def _check_config(cfg):
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; accepted: {sorted(DEFAULT_CONFIG)}")
    bad = [m for m in cfg["methods"] if m not in METHODS]
    if bad or "ce" not in cfg["methods"]:
        raise ValueError(f"methods={cfg['methods']!r} is not valid; accepted: a list with 'ce' drawn "
                         f"from {list(METHODS)}")
    for key in ("repeats", "batch_size"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key}={v!r} is not valid; accepted: an int >= 1")


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results."""
    cfg = start(config, DEFAULT_CONFIG, _check_config)
    with torch_threads(cfg["threads"]):
        rounds = cfg["warmup"] + cfg["repeats"]
        bs = cfg["batch_size"]
        ds = data.load("shapes", "train", n=bs * rounds, size=cfg["size"], seed=cfg["seed"])
        torch.manual_seed(cfg["seed"])
        # softplus: the Hessian and score-matching terms vanish on a ReLU network's second derivatives
        model = models.build(cfg["model"], ds.num_classes, ds.in_shape, width=cfg["width"],
                             activation=cfg["activation"], mean=list(ds.mean), std=list(ds.std))
        meths = {name: get_method(METHODS[name][0], **METHODS[name][1]) for name in cfg["methods"]}
        batches = [(ds.x[r * bs:(r + 1) * bs], ds.y[r * bs:(r + 1) * bs]) for r in range(rounds)]
        load0 = os.getloadavg()
        costs = cost.step_costs(model, meths, batches, warmup=cfg["warmup"], seed=cfg["seed"])
        results = {"config": {**cfg, "in_shape": list(ds.in_shape)},
                   "methods": {n: {**c, "method": METHODS[n][0], "hparams": METHODS[n][1]} for n, c in costs.items()},
                   "machine": machine(cfg["threads"], load0)}
    return finish(results, cfg["output"], "benchmark_marginal_density_cost.json", cfg["verbose"], format_table)


def format_table(results):
    lines = ["method                          median s/step  time x ce  graph MB  memory x ce (with state)"]
    for name, c in results["methods"].items():
        lines.append(f"{name:<30} {c['median_time_s']:>14.4f} {c['time_ratio']:>10.2f} {c['peak_graph_mb']:>9.2f}"
                     f" {c['mem_ratio']:>6.2f} ({c['mem_state_ratio']:.2f})")
    return "\n".join(lines)


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.marginal_density_cost", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=DEFAULT_CONFIG["repeats"])
    p.add_argument("--batch-size", type=int, default=DEFAULT_CONFIG["batch_size"])
    p.add_argument("--methods", default=",".join(DEFAULT_CONFIG["methods"]))
    p.add_argument("--output", default="default", help="a JSON path, 'default' or 'none'")
    a = p.parse_args(argv)
    return {"repeats": a.repeats, "batch_size": a.batch_size, "methods": a.methods.split(","),
            "output": None if a.output == "none" else a.output}


if __name__ == "__main__":
    import sys
    main(_parse(sys.argv[1:]))
