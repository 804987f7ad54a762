"""Tests of robust_saliency.cache: stable hashes, atomic checksummed files, memoization."""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from robust_saliency import cache as C


@dataclasses.dataclass
class _Cfg:
    lr: float = 0.1
    milestones: tuple = (1, 2)


# ----------------------------------------------------------------------------------------------
# config_hash
# ----------------------------------------------------------------------------------------------

def test_config_hash_is_canonical():
    a = {"b": [1, 2.5, (3, "x")], "a": {"z": None, "y": True}}
    b = {"a": {"y": True, "z": None}, "b": ((1, 2.5, [3, "x"]))}
    assert C.config_hash(a) == C.config_hash(b)  # key order, list vs tuple
    assert C.config_hash({"lr": 1}) == C.config_hash({"lr": 1.0})
    assert C.config_hash({"lr": np.float32(0.5)}) == C.config_hash({"lr": 0.5})
    assert C.config_hash({1, 2, 3}) == C.config_hash({3, 2, 1})
    # the sha256 of the canonical JSON written out by hand (sorted keys, no spaces, tuples as lists)
    blob = b'{"a":{"y":true,"z":null},"b":[1,2.5,[3,"x"]]}'
    assert C.config_hash(a) == hashlib.sha256(blob).hexdigest()
    assert C.config_hash(a) == "d0e5880941ea136b63dacff447ddd0c5ef760afc09f0be167b19e7d480809cf9"


def test_config_hash_distinguishes_values():
    base = {"lr": 0.1, "m": [1, 2], "flag": True, "name": "adam"}
    variants = [{"lr": 0.1000001}, {"m": [2, 1]}, {"flag": False}, {"name": "adamw"},
                {"extra": None}, {"m": [1, 2, 3]}]
    hashes = {C.config_hash(base)}
    for change in variants:
        hashes.add(C.config_hash({**base, **change}))
    assert len(hashes) == len(variants) + 1
    assert C.config_hash(True) != C.config_hash(1)
    assert C.config_hash("1") != C.config_hash(1)
    assert C.config_hash(float("nan")) != C.config_hash(float("inf"))


def test_config_hash_tensors_arrays_dataclasses_modules():
    t = torch.arange(6.0).reshape(2, 3)
    assert C.config_hash(t) == C.config_hash(t.clone())
    assert C.config_hash(t) == C.config_hash(t.t().contiguous().t())  # non-contiguous view
    assert C.config_hash(t) != C.config_hash(t.double())
    assert C.config_hash(t) != C.config_hash(t.reshape(3, 2))
    t2 = t.clone()
    t2[1, 2] += 1e-6
    assert C.config_hash(t) != C.config_hash(t2)
    assert C.config_hash(np.arange(4)) == C.config_hash(torch.arange(4))
    assert C.config_hash(torch.empty(0)) != C.config_hash(torch.empty(0, 2))
    assert C.config_hash(_Cfg()) == C.config_hash(_Cfg(lr=0.1, milestones=[1, 2]))
    assert C.config_hash(_Cfg()) != C.config_hash(_Cfg(lr=0.2))
    torch.manual_seed(0)
    m1 = torch.nn.Linear(2, 2)
    m2 = torch.nn.Linear(2, 2)
    assert C.config_hash(m1) != C.config_hash(m2)
    m2.load_state_dict(m1.state_dict())
    assert C.config_hash(m1) == C.config_hash(m2)


def test_config_hash_rejects_unstable_objects():
    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        C.config_hash({"x": Opaque()})

    class WithFingerprint:
        fingerprint = "abc"

    class OtherFingerprint:
        fingerprint = "abd"

    assert C.config_hash(WithFingerprint()) == C.config_hash(WithFingerprint())  # not by id
    assert C.config_hash(WithFingerprint()) == hashlib.sha256(b'{"__fingerprint__":"abc"}').hexdigest()
    assert C.config_hash(WithFingerprint()) != C.config_hash(OtherFingerprint())


def test_config_hash_same_in_another_process():
    obj = {"a": [1, 2.5, {"s": {"x", "y", "z"}}], "t": torch.linspace(0, 1, 5)}
    code = ("import torch; from robust_saliency import cache as C; "
            "print(C.config_hash({'t': torch.linspace(0, 1, 5), "
            "'a': (1, 2.5, {'s': {'z', 'y', 'x'}})}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == C.config_hash(obj)


# ----------------------------------------------------------------------------------------------
# atomic_save / load_verified
# ----------------------------------------------------------------------------------------------

def test_atomic_save_roundtrip_and_no_temp_files(tmp_path):
    obj = {"w": torch.randn(3, 4), "history": [{"loss": 0.5}], "n": 3}
    path = C.atomic_save(obj, tmp_path / "sub" / "m.pt")
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = C.load_verified(path)
    assert torch.equal(back["w"], obj["w"]) and back["history"] == obj["history"]
    assert C.load_verified(tmp_path / "missing.pt") is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_load_verified_detects_corruption(tmp_path, damage):
    path = C.atomic_save({"w": torch.randn(50)}, tmp_path / "m.pt")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-20] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"not a cache file at all")
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert C.load_verified(path) is None


def test_failed_save_keeps_previous_file(tmp_path):
    path = C.atomic_save({"v": 1}, tmp_path / "m.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        C.atomic_save({"v": Unpicklable()}, path)
    assert C.load_verified(path, weights_only=False) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    path = C.atomic_save({"v": 1}, tmp_path / "m.pt")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(C.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        C.atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert C.load_verified(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_atomic_write_json(tmp_path):
    obj = {"acc": np.float32(0.5), "curve": torch.tensor([1.0, 2.0]), "nan": float("nan"),
           "arr": np.arange(3), "nested": ({"k": np.int64(2)},), "path": tmp_path}
    path = C.atomic_write_json(obj, tmp_path / "r.json")
    back = json.loads(path.read_text())
    assert back == {"acc": 0.5, "curve": [1.0, 2.0], "nan": None, "arr": [0, 1, 2],
                    "nested": [{"k": 2}], "path": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


# ----------------------------------------------------------------------------------------------
# cached
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["torch", "json"])
def test_cached_computes_once_per_key(tmp_path, fmt):
    calls = []

    def fn():
        calls.append(1)
        return {"score": 0.25, "curve": [1, 2, 3], "pair": (1, 2)}

    first = C.cached({"metric": "rps", "eps": 4}, fn, tmp_path, fmt=fmt)
    second = C.cached({"eps": 4, "metric": "rps"}, fn, tmp_path, fmt=fmt)
    assert len(calls) == 1 and first == second
    C.cached({"metric": "rps", "eps": 8}, fn, tmp_path, fmt=fmt)
    assert len(calls) == 2
    if fmt == "json":
        assert first["pair"] == [1, 2]  # same types on a miss and on a hit


@pytest.mark.parametrize("fmt", ["torch", "json"])
def test_cached_recomputes_corrupt_file(tmp_path, fmt):
    calls = []

    def fn():
        calls.append(1)
        return {"x": 1.5}

    C.cached("k", fn, tmp_path, fmt=fmt)
    (path,) = list(tmp_path.iterdir())
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert C.cached("k", fn, tmp_path, fmt=fmt) == {"x": 1.5}
    assert len(calls) == 2
    assert C.cached("k", fn, tmp_path, fmt=fmt) == {"x": 1.5}
    assert len(calls) == 2


def test_cached_without_dir_and_bad_format(tmp_path):
    calls = []
    for _ in range(2):
        C.cached("k", lambda: calls.append(1), None)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="fmt='pickle'.*accepted"):
        C.cached("k", lambda: 1, tmp_path, fmt="pickle")
