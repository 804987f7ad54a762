"""Cost of P2's RelEx per explained image: batched against one image at a time, and against the
baseline explainers (P2 S2.1 reports ~17 s per ImageNet image on an RTX 2080 Ti).

Run ``python -m benchmarks.relex_cost [--batch-sizes 1,8,32] [--repeats 2]``.  One model
(``small_cnn`` width 16, ReLU, ImageNet-like ``Normalize`` first, random weights: the cost does
not depend on training) on ``shapes`` 16x16 test images.  For each batch size N the same N
images are explained (a) in one batched call of ``attributions.relex`` and (b) one image per
call; both make the same draws (each image's generator is seeded from its bytes), so the masks
must agree: the max absolute difference is recorded.  Times are the median over ``repeats``
(after one untimed warm-up call) of seconds per explained image, taken with ``time.perf_counter``, with the machine's load
average before and after.  Then each baseline explainer's seconds per image on the largest
batch, and RelEx's ratio to each.  Writes ``results/benchmark_relex_cost.json``.
"""
import argparse
import os
import statistics
import time

import torch

from robust_saliency import attributions, data, models

from ._common import finish, machine, start, torch_threads

DEFAULT_CONFIG = {
    "batch_sizes": [1, 8, 32], "repeats": 2, "size": 16, "width": 16, "preset": "reference_code",
    "iters": None, "baselines": ["grad", "smoothgrad", "integrated_gradients", "deeplift", "gradcam"],
    "threads": 2, "output": "default", "verbose": True,
}


def _check_config(cfg):
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; accepted: {sorted(DEFAULT_CONFIG)}")
    bs = cfg["batch_sizes"]
    if not bs or any(isinstance(b, bool) or int(b) != b or b < 1 for b in bs):
        raise ValueError(f"batch_sizes={bs!r} is not valid; accepted: a non-empty list of ints >= 1")
    if isinstance(cfg["repeats"], bool) or int(cfg["repeats"]) != cfg["repeats"] or cfg["repeats"] < 1:
        raise ValueError(f"repeats={cfg['repeats']!r} is not valid; accepted: an int >= 1")


def _time(fn, repeats, warmup=True):
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call (imports, allocator)."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(int(repeats)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(config=None):
    """Run the benchmark for ``config`` (a dict updating ``DEFAULT_CONFIG``); return the results."""
    cfg = start(config, DEFAULT_CONFIG, _check_config)
    with torch_threads(cfg["threads"]):
        torch.manual_seed(0)
        test = data.load("shapes", "test", size=cfg["size"])
        model = models.build("small_cnn", test.num_classes, tuple(test.in_shape), width=cfg["width"],
                             mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]).eval()
        n_max = max(cfg["batch_sizes"])
        x = test.x[:n_max]
        with torch.no_grad():
            target = model(x).argmax(1)
        relex = attributions.get("relex", preset=cfg["preset"], iters=cfg["iters"])
        load0 = os.getloadavg()
        rows = []
        for n in cfg["batch_sizes"]:
            xb, tb = x[:n], target[:n]
            t_batch, m_batch = _time(lambda: relex(model, xb, tb), cfg["repeats"])
            t_single, m_single = _time(lambda: torch.cat([relex(model, xb[i:i + 1], tb[i:i + 1])
                                                          for i in range(n)]), cfg["repeats"])
            rows.append({"batch_size": n, "batched_s_per_image": t_batch / n,
                         "one_at_a_time_s_per_image": t_single / n, "speedup": t_single / t_batch,
                         "max_mask_difference": float((m_batch - m_single).abs().max())})
            if cfg["verbose"]:
                print(f"N={n}: batched {t_batch / n:.3f} s/image, one at a time {t_single / n:.3f} s/image, "
                      f"x{t_single / t_batch:.2f}, max |diff| {rows[-1]['max_mask_difference']:.2e}", flush=True)
        xb, tb = x, target
        relex_s = rows[-1]["batched_s_per_image"]
        base = {}
        for name in cfg["baselines"]:
            t, _ = _time(lambda: attributions.get(name)(model, xb, tb), cfg["repeats"])
            base[name] = {"s_per_image": t / len(xb), "relex_ratio": relex_s / (t / len(xb))}
        results = {"config": cfg, "relex": rows, "baselines": base,
                   "machine": machine(cfg["threads"], load0)}
    return finish(results, cfg["output"], "benchmark_relex_cost.json", cfg["verbose"], format_table)


def format_table(results):
    """The results as text: RelEx batched vs one at a time, and RelEx against each baseline."""
    lines = ["batch  batched s/img  single s/img  speedup  max|diff|"]
    for r in results["relex"]:
        lines.append(f"{r['batch_size']:>5}  {r['batched_s_per_image']:>13.4f}  {r['one_at_a_time_s_per_image']:>12.4f}"
                     f"  {r['speedup']:>7.2f}  {r['max_mask_difference']:.1e}")
    lines.append("baseline              s/img   RelEx x")
    for name, b in results["baselines"].items():
        lines.append(f"{name:<20} {b['s_per_image']:>7.4f}  {b['relex_ratio']:>8.0f}")
    return "\n".join(lines)


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.relex_cost", description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_CONFIG["batch_sizes"])))
    p.add_argument("--repeats", type=int, default=DEFAULT_CONFIG["repeats"])
    p.add_argument("--iters", type=int, default=None, help="RelEx iterations (default: the preset's)")
    p.add_argument("--output", default="default", help="a JSON path, 'default' or 'none'")
    a = p.parse_args(argv)
    return {"batch_sizes": [int(b) for b in a.batch_sizes.split(",")], "repeats": a.repeats,
            "iters": a.iters, "output": None if a.output == "none" else a.output}


if __name__ == "__main__":
    import sys
    main(_parse(sys.argv[1:]))
