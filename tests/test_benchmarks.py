"""Tests of benchmarks/regularizer_cost.py with a tiny configuration (structure, ratios, CLI)."""
import json
import sys
from pathlib import Path

import pytest
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds benchmarks/

from benchmarks import regularizer_cost as B  # noqa: E402

TINY = {"methods": ["ce", "l2_cosd"], "repeats": 1, "warmup": 0, "model": "small_cnn",
        "batch_size": 8, "verbose": False}


def test_main_tiny_config(tmp_path, capsys):
    out = tmp_path / "bench.json"
    res = B.main({**TINY, "output": str(out), "verbose": True})
    assert set(res["methods"]) == {"ce", "l2_cosd"}
    ce, reg = res["methods"]["ce"], res["methods"]["l2_cosd"]
    # one timed round: every ratio is l2_cosd's measurement over ce's
    assert reg["time_ratio"] == pytest.approx(reg["times_s"][0] / ce["times_s"][0])
    assert reg["time_ratio_of_medians"] == pytest.approx(reg["median_time_s"] / ce["median_time_s"])
    assert reg["mem_ratio"] == pytest.approx(reg["peak_graph_mb"] / ce["peak_graph_mb"])
    for m in (ce, reg):
        assert len(m["times_s"]) == 1 and m["median_time_s"] > 0 and m["peak_graph_mb"] > 0
        assert m["graph_bytes_left_after_step"] == 0
    # double backprop holds more graph memory than one forward/backward
    assert reg["mem_ratio"] > 1.2 and reg["p1_time_ratio"] == 2.75 and reg["p1_mem_ratio"] == 2.64
    assert reg["hparams"] == {"eps": 4, "lam_l2": 0.01, "lam_cos": 1.0}
    assert res["target"]["method"] == "l2_cosd" and res["target"]["cheaper_ok"] is None
    saved = json.loads(out.read_text())
    assert saved["methods"]["l2_cosd"]["mem_ratio"] == reg["mem_ratio"] and saved["config"]["batch_size"] == 8
    printed = capsys.readouterr().out
    assert "l2_cosd" in printed and "P1 time x" in printed


def test_bad_config():
    with pytest.raises(ValueError, match="must include 'ce'"):
        B.main({**TINY, "methods": ["l2"], "output": None})
    with pytest.raises(ValueError, match="repeats=0"):
        B.main({**TINY, "repeats": 0, "output": None})
    with pytest.raises(ValueError, match="unknown config key"):
        B.main({**TINY, "epochs": 3, "output": None})


def test_cli_parse():
    cfg = B._parse(["--repeats", "2", "--batch-size", "16", "--methods", "ce,hessian", "--output", "none"])
    assert cfg["repeats"] == 2 and cfg["batch_size"] == 16 and cfg["methods"] == ["ce", "hessian"]
    assert cfg["output"] is None


def test_relex_cost_tiny(tmp_path):
    from benchmarks import relex_cost as R

    out = tmp_path / "relex.json"
    res = R.main({"batch_sizes": [1, 3], "repeats": 1, "iters": 2, "baselines": ["grad"],
                  "output": str(out), "verbose": False})
    assert [r["batch_size"] for r in res["relex"]] == [1, 3]
    for r in res["relex"]:
        assert r["max_mask_difference"] < 1e-5 and r["batched_s_per_image"] > 0
    assert res["baselines"]["grad"]["relex_ratio"] > 1
    assert json.loads(out.read_text())["config"]["iters"] == 2
    with pytest.raises(ValueError, match="batch_sizes"):
        R.main({"batch_sizes": [0], "output": None})
    assert R._parse(["--batch-sizes", "2,4", "--output", "none"])["batch_sizes"] == [2, 4]


def test_adversarial_training_cost_tiny(tmp_path):
    from benchmarks import adversarial_training_cost as A

    out = tmp_path / "at.json"
    res = A.main({"methods": ["ce", "l1 (fast)", "l1 (iterative)"], "repeats": 1, "warmup": 0,
                  "batch_size": 4, "size": 16, "width": 2, "output": str(out), "verbose": False})
    ce, fast, it = (res["methods"][k] for k in ("ce", "l1 (fast)", "l1 (iterative)"))
    assert fast["time_ratio"] == pytest.approx(fast["times_s"][0] / ce["times_s"][0])  # one timed round
    assert fast["hparams"] == {"mode": "l1", "eps": 0.01}
    assert it["time_ratio"] > fast["time_ratio"] > 0  # 7 extra passes cost more than 1
    assert json.loads(out.read_text())["config"]["batch_size"] == 4
    with pytest.raises(ValueError, match="methods"):
        A.main({"methods": ["l1 (fast)"], "output": None})
    assert A._parse(["--methods", "ce,at_pgd", "--output", "none"])["methods"] == ["ce", "at_pgd"]


def test_marginal_density_cost_tiny(tmp_path):
    from benchmarks import marginal_density_cost as B

    out = tmp_path / "md.json"
    names = ["ce", "marginal_density (stable)", "marginal_density (efficient)", "at_pgd"]
    res = B.main({"methods": names, "repeats": 1, "warmup": 0, "batch_size": 4, "size": 16, "width": 2,
                  "output": str(out), "verbose": False})
    ce, st, ef, at = (res["methods"][k] for k in names)
    assert st["mem_ratio"] == pytest.approx(st["peak_graph_mb"] / ce["peak_graph_mb"])
    assert ef["hparams"] == {"variant": "efficient", "lam": 0.1}
    assert st["peak_graph_mb"] > ce["peak_graph_mb"]  # double backprop holds a second graph
    assert json.loads(out.read_text())["config"]["in_shape"] == [3, 16, 16]
    with pytest.raises(ValueError, match="methods"):
        B.main({"methods": ["cure"], "output": None})
    assert B._parse(["--methods", "ce,cure", "--output", "none"])["methods"] == ["ce", "cure"]


def test_alignment_step_cost_tiny(tmp_path, capsys):
    """Ours, the released transcription and the fused candidate side by side: the same loss and
    gradients from the same draw, ratios to the released step, paired-ratio quartiles, CLI."""
    import torch.nn as nn

    from benchmarks import alignment_step_cost as A

    out = tmp_path / "align.json"
    res = A.main({"repeats": 3, "warmup": 0, "batch_size": 4, "model": "small_cnn", "size": 16,
                  "output": str(out), "verbose": True})
    sides = res["variants"]
    assert list(sides) == ["released", "ours", "fused"]
    rel, ours = sides["released"], sides["ours"]
    assert rel["time_ratio"] == 1.0 and rel["mem_ratio"] == 1.0
    for v in sides.values():
        assert v["loss_abs_diff"] < 1e-5 and v["grad_max_rel_diff"] < 1e-4  # float32 rounding
        q1, q3 = v["time_ratio_quartiles"]
        assert q1 <= v["time_ratio"] <= q3 and len(v["paired_time_ratios"]) == 3
        assert v["graph_bytes_left_after_step"] == 0
    assert ours["mem_ratio"] == pytest.approx(ours["peak_graph_mb"] / rel["peak_graph_mb"])
    assert ours["mem_ratio"] <= 1.0  # the same graph as the released step, no more
    assert sides["fused"]["mem_ratio"] > 1.0  # both halves' second-order intermediates
    assert res["hparams"] == {"eps": 4, "lam_l2": 0.01, "lam_cos": 1.0}
    assert json.loads(out.read_text())["variants"]["ours"]["mem_ratio"] == ours["mem_ratio"]
    assert "time x released" in capsys.readouterr().out
    with pytest.raises(ValueError, match="variants"):
        A.main({"variants": ["ours"], "output": None})
    with pytest.raises(ValueError, match="batch-coupled"):
        A.fused_step(nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2)).train(),
                     torch.rand(2, 3, 5, 5), torch.tensor([0, 1]))
    cfg = A._parse(["--repeats", "2", "--variants", "released,ours", "--device", "cpu", "--output", "none"])
    assert cfg["variants"] == ["released", "ours"] and cfg["repeats"] == 2 and cfg["output"] is None
