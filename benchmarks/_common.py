"""What the benchmark scripts share: the machine record and writing / printing the results."""
import contextlib
import os
import platform
from pathlib import Path

import torch

from robust_saliency import cache


def machine(threads, load_before):
    """Where and under which load a benchmark ran (``load_before``: ``os.getloadavg()`` at start)."""
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": int(threads),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def finish(results, output, filename, verbose, format_table):
    """Write ``results`` atomically to ``results/<filename>`` (``output="default"``), to the path
    ``output``, or nowhere (None); print ``format_table(results)`` when ``verbose``."""
    if output is not None:
        path = (Path(__file__).resolve().parents[1] / "results" / filename if output == "default"
                else Path(output))
        cache.atomic_write_json(results, path)
        results["path"] = str(path)
    if verbose:
        print(format_table(results))
    return results


def start(config, defaults, check):
    """``defaults`` updated by ``config``, checked by ``check(cfg)``: the config a benchmark runs."""
    cfg = {**defaults, **(config or {})}
    check(cfg)
    return cfg


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``n`` torch threads, restoring the previous number after."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def check_method_config(cfg, defaults, methods):
    """The checks the per-method cost benchmarks share: known keys, ``methods`` a list with
    ``"ce"`` drawn from ``methods``, ``repeats`` and ``batch_size`` ints >= 1."""
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; accepted: {sorted(defaults)}")
    bad = [m for m in cfg["methods"] if m not in methods]
    if bad or "ce" not in cfg["methods"]:
        raise ValueError(f"methods={cfg['methods']!r} is not valid; accepted: a list with 'ce' drawn "
                         f"from {list(methods)}")
    for key in ("repeats", "batch_size"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key}={v!r} is not valid; accepted: an int >= 1")


def method_table(results, width=22):
    """The printed table of a per-method cost benchmark (``cost.step_costs`` records)."""
    lines = [f"{'method':<{width}}  median s/step  time x ce  graph MB  memory x ce (with state)"]
    for name, c in results["methods"].items():
        lines.append(f"{name:<{width}} {c['median_time_s']:>14.4f} {c['time_ratio']:>10.2f} {c['peak_graph_mb']:>9.2f}"
                     f" {c['mem_ratio']:>6.2f} ({c['mem_state_ratio']:.2f})")
    return "\n".join(lines)


def parse_method_args(argv, prog, description, defaults):
    """``--repeats``, ``--batch-size``, ``--methods a,b`` and ``--output`` of a per-method cost
    benchmark, as a config dict."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--repeats", type=int, default=defaults["repeats"])
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--methods", default=",".join(defaults["methods"]))
    p.add_argument("--output", default="default", help="a JSON path, 'default' or 'none'")
    a = p.parse_args(argv)
    return {"repeats": a.repeats, "batch_size": a.batch_size, "methods": a.methods.split(","),
            "output": None if a.output == "none" else a.output}


def shapes_method_costs(cfg, methods, **model_kw):
    """One per-method cost benchmark on ``shapes``: a ``cfg["model"]`` of ``cfg["width"]`` (and
    ``model_kw``) built from ``cfg["seed"]``, every method of ``cfg["methods"]`` (``methods``: name
    -> (method, hparams)) stepped on the same ``warmup + repeats`` batches, interleaved
    (``cost.step_costs``).  Returns ``{"config" (with in_shape), "methods", "machine"}``."""
    from robust_saliency import cost, data, models
    from robust_saliency.methods import get as get_method

    with torch_threads(cfg["threads"]):
        rounds = cfg["warmup"] + cfg["repeats"]
        bs = cfg["batch_size"]
        ds = data.load("shapes", "train", n=bs * rounds, size=cfg["size"], seed=cfg["seed"])
        torch.manual_seed(cfg["seed"])
        model = models.build(cfg["model"], ds.num_classes, ds.in_shape, width=cfg["width"],
                             mean=list(ds.mean), std=list(ds.std), **model_kw)
        meths = {name: get_method(methods[name][0], **methods[name][1]) for name in cfg["methods"]}
        batches = [(ds.x[r * bs:(r + 1) * bs], ds.y[r * bs:(r + 1) * bs]) for r in range(rounds)]
        load0 = os.getloadavg()
        costs = cost.step_costs(model, meths, batches, warmup=cfg["warmup"], seed=cfg["seed"])
        return {"config": {**cfg, "in_shape": list(ds.in_shape)},
                "methods": {n: {**c, "method": methods[n][0], "hparams": methods[n][1]} for n, c in costs.items()},
                "machine": machine(cfg["threads"], load0)}
