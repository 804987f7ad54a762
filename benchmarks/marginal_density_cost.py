"""Training cost per step of P4's marginal-density regularizer (each implementation) and of its
baselines, relative to ``ce`` (P4 Fig. 2b).

Run ``python -m benchmarks.marginal_density_cost [--repeats 15] [--batch-size 64]``.  Every
method (``METHODS``: ce, marginal_density basic / basic_max (basic, max-subtracted) / stable /
efficient, input_grad, hessian, score_matching, cure, at_pgd with P4's 3 steps) trains its own
copy of one initial model (the small CNN of notebook 04's shapes part, 3 x 16 x 16 inputs) with
Adam and gradient clipping on the same batches, interleaved round-robin (``cost.step_costs``:
time ratios are medians of the per-round ratios to ce; memory is the exact peak of the bytes
the autograd graphs hold in a step).  P4 argues its regularizer is cheap and that Eq. 6 saves
a gradient over Eq. 5: this puts both to the test.  Writes ``results/benchmark_marginal_density_cost.json``.
"""
from ._common import check_method_config, finish, method_table, parse_method_args, shapes_method_costs, start

METHODS = {
    "ce": ("ce", {}),
    "marginal_density (basic)": ("marginal_density", {"variant": "basic", "lam": 0.1}),
    "marginal_density (basic_max)": ("marginal_density", {"variant": "basic_max", "lam": 0.1}),
    "marginal_density (stable)": ("marginal_density", {"variant": "stable", "lam": 0.1}),
    "marginal_density (efficient)": ("marginal_density", {"variant": "efficient", "lam": 0.1}),
    "input_grad": ("input_grad", {"lam": 0.1}),
    "hessian": ("hessian", {"lam": 1e-3, "form": "paper"}),
    "score_matching": ("score_matching", {}),
    "cure": ("cure", {"lam": 0.3, "h": 1.5}),
    "at_pgd": ("at_pgd", {"eps": 16, "alpha": 8, "steps": 3}),
}
DEFAULT_CONFIG = {"methods": list(METHODS), "repeats": 15, "warmup": 1, "batch_size": 64, "size": 16,
                  "model": "small_cnn", "width": 16, "activation": "softplus", "seed": 0, "threads": 1,
                  "output": "default", "verbose": True}


def _check_config(cfg):
    check_method_config(cfg, DEFAULT_CONFIG, METHODS)


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results."""
    cfg = start(config, DEFAULT_CONFIG, _check_config)
    # softplus: the Hessian and score-matching terms vanish on a ReLU network's second derivatives
    results = shapes_method_costs(cfg, METHODS, activation=cfg["activation"])
    return finish(results, cfg["output"], "benchmark_marginal_density_cost.json", cfg["verbose"], format_table)


def format_table(results):
    return method_table(results, width=30)


def _parse(argv):
    return parse_method_args(argv, "python -m benchmarks.marginal_density_cost", __doc__.split("\n")[0], DEFAULT_CONFIG)


if __name__ == "__main__":
    import sys
    main(_parse(sys.argv[1:]))
