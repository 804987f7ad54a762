"""Evaluation caches keyed by what produced them: the parameters the evaluation reads (recorded,
not listed by hand), its inputs, the trained model's key and the source of the code it runs."""
import json

import pytest
import torch

from robust_saliency import cache, runs
from robust_saliency.papers import p1, p2, p3, p4


def _keyed(model, key="k" * 64):
    model.train_info = {"key": key}  # what fit() attaches: cached_eval caches models that have one
    return model.eval()


def _entries(folder):
    return [cache.load_verified(p, weights_only=False) for p in sorted((folder / "eval").glob("*.pt"))]


def test_read_recorder_records_item_get_contains_and_iteration():
    rec = runs.ReadRecorder({"a": 1, "b": 2, "c": 3})
    assert rec["a"] == 1 and rec.get("z") is None and ("b" in rec)
    assert rec.keys_read() == ["a", "b", "z"] and not rec.read_all
    spread = {**rec}
    assert spread == {"a": 1, "b": 2, "c": 3} and rec.read_all and rec.keys_read() == ["a", "b", "c"]


def test_a_change_to_a_read_parameter_or_the_code_is_a_miss_an_unread_one_a_hit(tmp_path, monkeypatch):
    net, calls = _keyed(torch.nn.Linear(2, 2)), []

    def fn(p):
        calls.append(1)
        return {"v": p["a"] + (p["b"] if p["a"] > 0 else 0)}  # reads b only when a > 0

    code = ("robust_saliency.units",)

    def ev(**params):
        return runs.cached_eval("t", net, params, fn, inputs={"x": torch.ones(2)}, code=code, cache_dir=tmp_path)

    assert ev(a=0, b=5, c=1)["v"] == 0 and len(calls) == 1
    assert ev(a=0, b=5, c=2)["v"] == 0 and len(calls) == 1  # c is never read: a hit
    assert ev(a=1, b=5, c=2)["v"] == 6 and len(calls) == 2  # a is read: a miss, which also reads b
    assert ev(a=1, b=7, c=2)["v"] == 8 and len(calls) == 3  # b is now known to be read
    assert ev(a=1, b=7, c=9)["v"] == 8 and len(calls) == 3
    assert json.loads(next((tmp_path / "eval").glob("t-reads-*.json")).read_text()) == {"all": False, "keys": ["a", "b"]}
    runs.cached_eval("t", net, {"a": 1, "b": 7}, fn, inputs={"x": torch.zeros(2)}, code=code, cache_dir=tmp_path)
    assert len(calls) == 4  # other inputs (by content): a miss
    _keyed(net, "m" * 64)
    assert ev(a=1, b=7)["v"] == 8 and len(calls) == 5  # another trained model: a miss
    real = cache.source_hash
    monkeypatch.setattr(cache, "source_hash", lambda *names: real(*names)[::-1])  # the code changed
    assert ev(a=1, b=7)["v"] == 8 and len(calls) == 6
    bare = torch.nn.Linear(2, 2)  # no training key: never cached
    runs.cached_eval("t", bare, {"a": 0, "b": 0}, fn, code=code, cache_dir=tmp_path)
    runs.cached_eval("t", bare, {"a": 0, "b": 0}, fn, code=code, cache_dir=tmp_path)
    assert len(calls) == 8
    with pytest.raises(ValueError, match="code="):
        runs.cached_eval("t", net, {"a": 0}, fn, cache_dir=tmp_path)  # fn is not library code


def test_source_hash_covers_the_imports_and_changes_with_any_file_of_them(tmp_path, monkeypatch):
    closure = cache.module_closure("robust_saliency.papers.p2")
    assert {"robust_saliency.metrics.games", "robust_saliency.attributions.fitted", "robust_saliency.runs",
            "robust_saliency.papers", "robust_saliency"} <= set(closure)
    assert "robust_saliency.plotting" not in cache.module_closure("robust_saliency.training")
    with pytest.raises(ValueError, match="not a module"):
        cache.module_closure("numpy")
    before = cache.source_hash("robust_saliency.papers.p2")
    assert before == cache.source_hash(p2.evaluate)  # an object stands for its module
    units = cache.source_hash("robust_saliency.units")
    assert "robust_saliency.metrics.games" not in cache.module_closure("robust_saliency.units")
    real = cache._module_file
    copy = tmp_path / "games.py"
    copy.write_text(real("robust_saliency.metrics.games").read_text() + "\n# a change\n")
    monkeypatch.setattr(cache, "_module_file",
                        lambda name: copy if name == "robust_saliency.metrics.games" else real(name))
    assert cache.source_hash("robust_saliency.papers.p2") != before
    assert cache.source_hash("robust_saliency.units") == units  # a file outside its closure: no change


def _check_reads_hashed(tmp_path, call, params, data=None, monkeypatch=None):
    """Run ``call(recorder)`` on a fresh cache: every parameter it reads, inside the cached function
    or around it, is among the parameters its cache entry hashed; the entry is keyed by the
    dataset's fingerprint (``data``) and the code; a change of the code's source is a miss."""
    rec = runs.ReadRecorder(params)
    first = call(rec)
    entries = _entries(tmp_path)
    assert entries, "nothing was cached"
    hashed = set().union(*(e["params"] for e in entries))
    if not rec.read_all:  # read through a function of the parameters (P4's section): checked by the caller
        assert set(rec.keys_read()) <= hashed, sorted(set(rec.keys_read()) - hashed)
        assert set(rec.keys_read()) & hashed  # the evaluation does read parameters
    if data is not None:
        assert all(data.fingerprint in json.dumps(e["inputs"]) for e in entries)
    assert all(len(e["code"]) == 64 for e in entries)
    if monkeypatch is not None:
        call(params)
        assert len(_entries(tmp_path)) == len(entries)  # the same call: a hit
        real = cache.source_hash
        monkeypatch.setattr(cache, "source_hash", lambda *names: real(*names)[::-1])
        call(params)
        assert len(_entries(tmp_path)) == 2 * len(entries)  # the code changed: a miss, stored anew
    return first


def test_p1_evaluation_keys_every_parameter_it_reads(cache_dir):
    torch.manual_seed(0)
    model = _keyed(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 4)))
    x, y = torch.rand(4, 3, 12, 12), torch.tensor([0, 1, 2, 3])
    params = {"attributions": ["grad"], "rps_eps": 16, "rps_n": 1, "insertion": "paper", "attack_eps": 4,
              "attack_steps": 1, "unrelated": 1}
    _check_reads_hashed(cache_dir, lambda p: p1.evaluate_saliency(
        p, model, torch.utils.data.TensorDataset(x, y), x, y, attack=None), params)


def _tiny(settings, **kw):
    return settings("smoke", **kw)


@pytest.mark.slow  # ~25-50 s: P2's whole evaluation (RelEx included), twice
def test_p2_evaluation_keys_every_parameter_it_reads(cache_dir, monkeypatch):
    params = _tiny(p2.settings, n_test=8, eval_subset=2)
    _, test = p2.load_sets(params)
    model = _keyed(runs.build_model(params, test, seed=0))
    _check_reads_hashed(cache_dir, lambda p: p2.evaluate(p, model, "natural", test, 0), params, test, monkeypatch)


def test_p3_evaluation_keys_every_parameter_it_reads(cache_dir, monkeypatch):
    params = _tiny(p3.settings, n_test=8, eval_subset=2)
    sets = p3.load_sets(params)
    model = _keyed(runs.build_model(params, sets["train"], seed=0))
    _check_reads_hashed(cache_dir, lambda p: p3.evaluate(p, model, sets["test"], 0), params, sets["test"], monkeypatch)


def test_p4_evaluations_key_every_parameter_they_read(cache_dir, monkeypatch):
    """P4's evaluations read their part's settings (``section``, a function of the parameters):
    every setting of the part they read is hashed, and no other (a progress switch is no miss)."""
    params = _tiny(p4.settings)
    sets = p4.block_sets(params)
    model = _keyed(runs.build_model(p4.section(params, "block"), sets["train"], seed=0))
    real, parts = p4.section, []

    def recorded(p, part):
        parts.append(runs.ReadRecorder(real(p, part)))
        return parts[-1]

    monkeypatch.setattr(p4, "section", recorded)
    _check_reads_hashed(cache_dir, lambda p: p4.evaluate_block(p, model, sets["test"]), params, sets["test"])
    hashed = set().union(*(e["params"] for e in _entries(cache_dir)))
    assert set(parts[0].keys_read()) <= hashed and "ig_steps" in hashed and "progress" not in hashed
    n = len(_entries(cache_dir))
    p4.evaluate_block({**params, "progress": not params.get("progress")}, model, sets["test"])
    assert len(_entries(cache_dir)) == n  # a setting it does not read: a hit
    p4.evaluate_block({**params, "block_ig_steps": params["block_ig_steps"] + 1}, model, sets["test"])
    assert len(_entries(cache_dir)) == n + 1  # one it reads: a miss


def test_the_training_key_covers_the_training_code(monkeypatch):
    from robust_saliency import methods, training

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 1, 2, 2), torch.arange(8) % 2),
                                         batch_size=4)
    before = training.train_key(net, methods.get("ce"), loader, num_epochs=1)
    assert before == training.train_key(net, methods.get("ce"), loader, num_epochs=1)
    assert {"robust_saliency.regularizers.alignment", "robust_saliency.adversarial_training"} <= set(
        cache.module_closure("robust_saliency.methods"))  # every method's code is in the closure
    real = cache.source_hash
    monkeypatch.setattr(cache, "source_hash", lambda *names: real(*names)[::-1])
    assert training.train_key(net, methods.get("ce"), loader, num_epochs=1) != before
