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
