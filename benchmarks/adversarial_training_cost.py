"""Training cost per step of P3's norm-regularized adversarial training and of the other
adversarial-training methods, relative to ``ce``.

Run ``python -m benchmarks.adversarial_training_cost [--repeats 5] [--batch-size 64]``.  Every
method (``METHODS``: ce, norm_regularized_at one-step l1 / group / elastic, iterative l1, MI-FGSM
l1, free l1, at_pgd, gaussian_noise) trains its own copy of one initial model with Adam and
gradient clipping on the same batches, interleaved round-robin (``cost.step_costs``: time
ratios are medians of the per-round ratios to ce; memory is the exact peak of the bytes the
autograd graphs hold in a step).  A free-training step is one of its ``replays`` per batch, so
its cost per *batch* is ``replays`` times the per-step figure.  Writes
``results/benchmark_adversarial_training_cost.json``.
"""
from ._common import check_method_config, finish, method_table, parse_method_args, shapes_method_costs, start

METHODS = {
    "ce": ("ce", {}),
    "l1 (fast)": ("norm_regularized_at", {"mode": "l1", "eps": 0.01}),
    "group (fast)": ("norm_regularized_at", {"mode": "group", "eps": 0.1, "group_size": 4}),
    "elastic (fast)": ("norm_regularized_at", {"mode": "elastic", "eps": 0.01, "eps2": 0.01}),
    "l1 (iterative)": ("norm_regularized_at", {"mode": "l1", "eps": 0.01, "training": "iterative"}),
    "l1 (MI-FGSM)": ("norm_regularized_at", {"mode": "l1", "eps": 0.01, "training": "mifgsm"}),
    "l1 (free; per replay)": ("norm_regularized_at", {"mode": "l1", "eps": 0.01, "training": "free"}),
    "at_pgd": ("at_pgd", {"eps": 4, "alpha": 1, "steps": 5}),
    "gaussian_noise": ("gaussian_noise", {"sigma": 8}),
}
DEFAULT_CONFIG = {"methods": list(METHODS), "repeats": 5, "warmup": 1, "batch_size": 64, "size": 32,
                  "model": "small_cnn", "width": 16, "seed": 0, "threads": 1, "output": "default",
                  "verbose": True}


def _check_config(cfg):
    check_method_config(cfg, DEFAULT_CONFIG, METHODS)


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results."""
    cfg = start(config, DEFAULT_CONFIG, _check_config)
    results = shapes_method_costs(cfg, METHODS)
    return finish(results, cfg["output"], "benchmark_adversarial_training_cost.json", cfg["verbose"],
                  format_table)


def format_table(results):
    return method_table(results, width=22)


def _parse(argv):
    return parse_method_args(argv, "python -m benchmarks.adversarial_training_cost", __doc__.split("\n")[0], DEFAULT_CONFIG)


if __name__ == "__main__":
    import sys
    main(_parse(sys.argv[1:]))
