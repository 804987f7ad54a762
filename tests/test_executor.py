"""Tests of robust_saliency.executor and runs.fit_many: independent fits on Dask workers give
bitwise the weights (and cache keys) of the sequential run at the same threads per fit, a
failing fit is reported with its configuration while the others finish, cached fits are not
resubmitted."""
import pytest
import torch

from robust_saliency import executor, profiles, runs, training
from robust_saliency.data import ArrayDataset

N, K = 40, 3


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 6, 6, generator=g)
    return ArrayDataset(x, x.flatten(1)[:, :K].argmax(1), num_classes=K, classes=["a", "b", "c"],
                        name="toy", split="train")


def _params(cache_dir):
    return {"model": "mlp", "model_kw": {"hidden": 16}, "num_epochs": 2, "lr": 0.05,
            "optimizer": "sgd", "batch_size": 8, "progress": False, "cache_dir": str(cache_dir),
            "device": "cpu", "seed": 0}


JOBS = [{"method": "ce", "seed": 0}, {"method": "ce", "seed": 1},
        {"method": "l2", "seed": 0, "method_kw": {"lam": 0.1}},
        {"method": "at_pgd", "seed": 0, "method_kw": {"steps": 2}, "num_epochs": 1}]


def _spy_submissions(monkeypatch):
    """The labels of the jobs ``executor.run`` is given from now on (the run goes ahead)."""
    submitted, real_run = [], executor.run

    def spy(fn, items, labels=None, **kw):
        submitted.extend(labels)
        return real_run(fn, items, labels, **kw)

    monkeypatch.setattr(executor, "run", spy)
    return submitted


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("env,kind,threads", [
    ({}, "sequential", None),
    ({"ROBUST_SALIENCY_WORKERS": "2"}, "local", 1),
    ({"ROBUST_SALIENCY_WORKERS": "3", "ROBUST_SALIENCY_THREADS": "2"}, "local", 2),
    ({"ROBUST_SALIENCY_SCHEDULER": "tcp://somewhere:8786"}, "scheduler", 1),
])
def test_the_environment_chooses_the_executor(monkeypatch, env, kind, threads):
    for name in (executor.WORKERS_ENV, executor.SCHEDULER_ENV, executor.THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ex = executor.current()
    assert (ex.kind, ex.threads) == (kind, threads) and ex.parallel == (kind != "sequential")


@pytest.mark.parametrize("env,match", [
    ({"ROBUST_SALIENCY_WORKERS": "two"}, "ROBUST_SALIENCY_WORKERS='two' is not valid; accepted: an int >= 1"),
    ({"ROBUST_SALIENCY_WORKERS": "0"}, "accepted: an int >= 1"),
    ({"ROBUST_SALIENCY_SCHEDULER": "somewhere"}, "accepted: a scheduler address"),
    ({"ROBUST_SALIENCY_WORKERS": "2", "ROBUST_SALIENCY_SCHEDULER": "tcp://a:1"}, "both set"),
])
def test_bad_environment_names_the_variable(monkeypatch, env, match):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=match):
        executor.current()


def _fails_on_three(x):
    if x == 3:
        raise ArithmeticError("three is bad")
    return x * x


def test_sequential_run_reports_every_failure_after_finishing_the_others():
    done = []

    def fn(x):
        done.append(x)
        return _fails_on_three(x)

    with pytest.raises(executor.JobsFailed, match=r"1 of 5 job\(s\) failed.*\n  x=3: ArithmeticError: three is bad"):
        executor.run(fn, range(5), [f"x={x}" for x in range(5)], progress=False,
                     executor=executor.Executor("sequential"))
    assert done == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_local_cluster_fits_equal_the_sequential_ones_and_failures_are_reported(tmp_path, monkeypatch):
    """Two Dask workers, one thread each: bitwise the weights of the sequential run at one thread."""
    pytest.importorskip("dask.distributed")
    ds = _data()
    monkeypatch.setenv(executor.THREADS_ENV, "1")
    monkeypatch.delenv(executor.WORKERS_ENV, raising=False)
    sequential = [_weights(m) for m in runs.fit_many(_params(tmp_path / "seq"), ds, JOBS)]
    keys_seq = sorted(p.name for p in (tmp_path / "seq" / "models").iterdir())

    monkeypatch.setenv(executor.WORKERS_ENV, "2")
    try:
        params = _params(tmp_path / "dask")
        parallel = runs.fit_many(params, ds, JOBS)
        for a, b in zip(sequential, parallel):
            assert a.keys() == _weights(b).keys()
            assert all(torch.equal(a[k], b.state_dict()[k]) for k in a)
        assert sorted(p.name for p in (tmp_path / "dask" / "models").iterdir()) == keys_seq
        assert not any(m.train_info["from_cache"] for m in parallel)  # trained in this call
        assert all(m.train_info["trained_by"] == "a Dask worker" for m in parallel)
        assert all(m.train_info["from_cache"] for m in runs.fit_many(params, ds, JOBS))

        # cached fits are not resubmitted; a failing fit is named while the others finish
        submitted = _spy_submissions(monkeypatch)
        with pytest.raises(executor.JobsFailed) as info:
            runs.fit_many(params, ds, [*JOBS, {"method": "ce", "seed": 2, "num_epochs": 1},
                                       {"method": "ce", "seed": 3, "lr": 1e30}])
        assert len(submitted) == 2 and "seed 2" in submitted[0] and "lr=1e+30" in submitted[1]
        assert "1 of 2 job(s) failed" in str(info.value) and "seed 3, lr=1e+30" in str(info.value)
        assert "FloatingPointError" in str(info.value)
        assert runs.fit(params, ds, "ce", seed=2, num_epochs=1).train_info["from_cache"]
    finally:
        executor.shutdown()


def _toy_eval(params, model, item, ds):
    """An evaluation for ``cached_eval_many``: reads one parameter, uses the shared dataset."""
    with torch.no_grad():
        logits = model(ds.x)
    return {"accuracy": float((logits.argmax(1) == ds.y).float().mean()) + params["offset"] * item,
            "logits": logits[:item + 2]}


def test_cached_eval_many_on_workers_stores_what_the_sequential_run_stores(tmp_path, monkeypatch):
    """Evaluations run on two Dask workers come back to this process and are stored under the
    keys of the sequential run (the parameters they read replayed): a later sequential call hits
    them, and a second parallel call submits nothing."""
    pytest.importorskip("dask.distributed")
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    ds = _data()
    monkeypatch.setenv(executor.THREADS_ENV, "1")
    monkeypatch.delenv(executor.WORKERS_ENV, raising=False)
    params = {**_params(tmp_path / "models"), "offset": 0.5, "unread": 1}
    nets = runs.fit_many(params, ds, JOBS[:2])
    jobs = [(net, {"job": i}, i) for i, net in enumerate(nets)]
    call = dict(shared=(ds,), code=("robust_saliency.runs",))
    monkeypatch.setenv("ROBUST_SALIENCY_CACHE", str(tmp_path / "seq"))
    sequential = runs.cached_eval_many("toy", params, jobs, _toy_eval, **call)
    seq_files = sorted(p.name for p in (tmp_path / "seq" / "eval").iterdir())

    monkeypatch.setenv("ROBUST_SALIENCY_CACHE", str(tmp_path / "dask"))
    monkeypatch.setenv(executor.WORKERS_ENV, "2")
    try:
        parallel = runs.cached_eval_many("toy", params, jobs, _toy_eval, **call)
        submitted = _spy_submissions(monkeypatch)
        again = runs.cached_eval_many("toy", params, jobs, _toy_eval, **call)
        assert submitted == []  # all cached
    finally:
        executor.shutdown()
    assert sorted(p.name for p in (tmp_path / "dask" / "eval").iterdir()) == seq_files  # same keys, same reads
    for a, b, c in zip(sequential, parallel, again):
        assert a["accuracy"] == b["accuracy"] == c["accuracy"]
        assert torch.allclose(a["logits"], b["logits"], atol=1e-6) and torch.equal(b["logits"], c["logits"])
    assert sequential[1]["accuracy"] - sequential[0]["accuracy"] != 0  # the item reached the job
    monkeypatch.delenv(executor.WORKERS_ENV)
    monkeypatch.undo()  # executor.run itself again; the sequential cache folder is set below
    monkeypatch.setenv("ROBUST_SALIENCY_CACHE", str(tmp_path / "dask"))
    later = runs.cached_eval_many("toy", params, jobs, lambda *a: pytest.fail("recomputed"), **call)
    assert torch.equal(later[0]["logits"], parallel[0]["logits"])  # a sequential call hits the workers' entries
