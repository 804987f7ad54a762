"""Runs: what a notebook calls instead of writing a training loop.  Load the profile's data,
build a model from a seed, load-or-train it through the cached loop (``training.train``),
validate a hyperparameter grid, and cache evaluations of trained models on disk."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import cache as _cache
from . import data, models, training
from . import executor as _executor
from . import methods as _methods
from .common import device_of
from .profiles import accepted_names, train_config
from .results import default_cache_dir

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Collection, Iterator, Sequence

__all__ = ["load_data", "build_model", "fit", "fit_many", "batch", "split_validation", "swap_samples",
           "permuted_labels", "diff_roar", "select_hparams", "hp_text", "check_grid", "cached_eval",
           "ReadRecorder"]


def load_data(params: Mapping[str, Any], dataset: str | None = None, split: str = "train",
              **kw: Any) -> data.BaseDataset:
    """``data.load`` for the notebook parameters: ``dataset`` (default ``params["dataset"]``),
    ``data_root`` and the subset size ``n_train`` / ``n_test`` of the profile (capped at the
    split's size for the small embedded sets)."""
    name = dataset or params["dataset"]
    n = params.get("n_train" if split == "train" else "n_test")
    if n is not None and "n" not in kw:
        full = data.load(name, split, data_root=params.get("data_root"), **kw)
        if n >= len(full):
            return full
        kw["n"] = n
    return data.load(name, split, data_root=params.get("data_root"), **kw)


def build_model(params: Mapping[str, Any], train_set: data.BaseDataset, model: str | None = None,
                seed: int = 0, **kw: Any) -> torch.nn.Module:
    """``models.build`` for ``train_set`` with the profile's activation/beta, initialised from
    ``seed`` (the same seed gives the same initial weights).

    Keywords come from ``kw``, then ``params["model_kw"]`` when ``model`` is the profile's
    model.  ``params["normalize"]`` puts a ``Normalize`` first with ``train_set``'s per-channel
    mean and std (image datasets; normalization is the model's first layer).
    """
    name = model or params["model"]
    if name == params.get("model"):
        for k, v in (params.get("model_kw") or {}).items():
            kw.setdefault(k, v)
    kw.setdefault("activation", params.get("activation", "relu"))
    kw.setdefault("beta", params.get("beta", 3.0))
    mean, std = getattr(train_set, "mean", None), getattr(train_set, "std", None)
    if params.get("normalize") and "mean" not in kw and mean is not None and std is not None \
            and len(train_set.in_shape) == 3:
        kw["mean"], kw["std"] = list(mean), list(std)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.build(name, train_set.num_classes, tuple(train_set.in_shape), **kw)


def fit(params: Mapping[str, Any], train_set: torch.utils.data.Dataset, method: str | training.Method = "ce",
        seed: int = 0, model: str | None = None, model_kw: Mapping[str, Any] | None = None,
        method_kw: Mapping[str, Any] | None = None, init_from: torch.nn.Module | None = None,
        **cfg_overrides: Any) -> torch.nn.Module:
    """Load-or-train one model: build ``model`` (default ``params["model"]``) from ``seed``,
    train it on ``train_set`` with ``method`` through the cached training loop
    (``training.train``), and return it in eval mode. A second call with the same
    configuration loads the cached weights instead of training.

    ``init_from``: a model whose weights replace the initial ones (ATEX's student starts as
    a copy of its teacher); they enter the cache key.  ``cfg_overrides`` (e.g. ``num_epochs``)
    override the training settings of ``params``.
    """
    return training.train(*_train_args(params, train_set, method, seed, model, model_kw, method_kw,
                                       init_from, **cfg_overrides))


def _train_args(params, train_set, method="ce", seed=0, model=None, model_kw=None, method_kw=None,
                init_from=None, **cfg_overrides):
    """``(model, method, loader, cfg)`` of ``training.train`` for ``fit``'s arguments."""
    net = build_model(params, train_set, model=model, seed=seed, **(model_kw or {}))
    if init_from is not None:
        try:
            net.load_state_dict(init_from.state_dict())
        except (RuntimeError, AttributeError) as err:
            raise ValueError(f"init_from={type(init_from).__name__} does not fit the model "
                             f"{params.get('model') if model is None else model!r}: {err}") from None
    meth = _methods.get(method, **(method_kw or {})) if isinstance(method, str) else method
    cfg = train_config(params, seed=seed, **cfg_overrides)
    if cfg.threads is None:
        cfg.threads = _executor.threads_per_job()
    loader = torch.utils.data.DataLoader(train_set, batch_size=params.get("batch_size", 128), shuffle=False,
                                         # the profile's loader settings (not in the training key;
                                         # page-locked memory only helps copies to an accelerator)
                                         num_workers=int(params.get("num_workers") or 0),
                                         pin_memory=bool(params.get("pin_memory")) and torch.device(cfg.device).type != "cpu")
    return net, meth, loader, cfg


def fit_many(params: Mapping[str, Any], train_set: torch.utils.data.Dataset,
             jobs: Sequence[Mapping[str, Any]], desc: str = "fits") -> list[torch.nn.Module]:
    """``[fit(params, train_set, **job) for job in jobs]``, the fits that are not cached yet
    trained through the executor (``executor.current()``: sequential by default, Dask workers
    with ``ROBUST_SALIENCY_WORKERS`` or ``ROBUST_SALIENCY_SCHEDULER``).

    Each job holds ``fit``'s keywords (``method``, ``seed``, ``model``, ``model_kw``,
    ``method_kw``, ``init_from`` and training overrides such as ``num_epochs``); a job may also
    name its own ``train_set``.  The fits must be independent (none starts from another's
    result: fit those first).  A worker trains a fit without a shared disk and returns its
    cache file, which this process writes; the weights and cache keys are those of the
    sequential run at the same threads per fit.  Fits already cached, and repeated jobs, are
    not submitted; if some fits fail, the others finish (and are cached) and
    ``executor.JobsFailed`` names each failed fit's configuration and error.
    """
    jobs = [dict(job) for job in jobs]
    sets = [job.pop("train_set", train_set) for job in jobs]
    ex = _executor.current()
    pending = []
    if ex.parallel:
        labels, seen = [], set()
        for job, ds in zip(jobs, sets):
            args = _train_args(params, ds, **job)
            key = training.train_key(*args)
            path = training.cached_path(args[1], args[3], key)
            if path is None:
                raise ValueError("fit_many with Dask workers needs a cache folder (cache_dir): the "
                                 "workers' results are written there")
            if key in seen or training.is_cached(path, key):
                continue
            seen.add(key)
            pending.append((args, key, path))
            labels.append(f"{args[1]!r}, seed {args[3].seed}" + "".join(
                f", {k}={v!r}" for k, v in job.items() if k not in ("method", "seed", "method_kw", "init_from")))
        shared = list({id(a[2].dataset): a[2].dataset for a, _, _ in pending}.values())
        where = {id(d): i for i, d in enumerate(shared)}
        items = [((net, meth, _loader_kw(loader), cfg), key, where[id(loader.dataset)])
                 for (net, meth, loader, cfg), key, _ in pending]
        _executor.run(_train_elsewhere, items, labels, desc=desc, progress=bool(params.get("progress", True)),
                      executor=ex, shared=shared,
                      on_result=lambda i, data: _cache.atomic_write_bytes(data, pending[i][2]))
    out = [fit(params, ds, **job) for job, ds in zip(jobs, sets)]
    trained = {key for _, key, _ in pending}
    for net in out:  # trained by a worker in this call, loaded here from the file it returned
        if net.train_info["key"] in trained:
            net.train_info = {**net.train_info, "from_cache": False, "trained_by": "a Dask worker"}
    return out


def _loader_kw(loader):
    """What rebuilds ``loader`` around its dataset (``_train_args``'s DataLoader)."""
    return {"batch_size": loader.batch_size, "num_workers": loader.num_workers,
            "pin_memory": loader.pin_memory, "drop_last": loader.drop_last}


def _train_elsewhere(job, *datasets):
    """In a worker: train one fit into a private folder and return its cache file's bytes."""
    import tempfile

    (net, meth, loader_kw, cfg), key, ds = job
    loader = torch.utils.data.DataLoader(datasets[ds], shuffle=False, **loader_kw)
    with tempfile.TemporaryDirectory() as folder:
        cfg = training.TrainConfig.make(cfg, cache_dir=folder, checkpoint=False, progress=False)
        trained = training.train(net, meth, loader, cfg)
        if trained.train_info["key"] != key:
            raise RuntimeError(f"the worker's cache key {trained.train_info['key'][:12]} differs from "
                               f"this process's {key[:12]}: the worker runs other code or library "
                               f"versions (install the same commit on the workers)")
        return Path(trained.train_info["path"]).read_bytes()


def batch(dataset: torch.utils.data.Dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of ``dataset`` (all for None) as stacked tensors ``(x, y)``, where the
    dataset holds them (the CPU): every function that takes a model moves them to its device."""
    n = len(dataset) if n is None else min(int(n), len(dataset))
    if hasattr(dataset, "x") and torch.is_tensor(dataset.x):
        return dataset.x[:n], dataset.y[:n]
    items = [dataset[i] for i in range(n)]
    return torch.stack([t[0] for t in items]), torch.as_tensor([int(t[1]) for t in items])


class _Pending(Exception):
    """Raised inside ``cached_eval`` to ask only whether a value is cached."""


def _raise_pending(params):
    raise _Pending


def _eval_elsewhere(job, *shared):
    """In a worker: one evaluation ``fn(params, model, item, *shared)`` with its parameter reads
    recorded; returns (value on the CPU, reads) for the client to store (``cached_eval_many``)."""
    fn, params, model, item = job
    rec = ReadRecorder(params)
    value = _cache.to_cpu(fn(rec, model, item, *shared))
    return value, {"all": rec.read_all, "keys": rec.keys_read()}


def cached_eval_many(name: str, params: Mapping[str, Any], jobs: Sequence[tuple[torch.nn.Module, object, Any]],
                     fn: Callable[..., Any], shared: Sequence[Any] = (), labels: Sequence[str] | None = None,
                     desc: str | None = None, code: Sequence[str] | None = None) -> list[Any]:
    """``[cached_eval(name, model, params, lambda p: fn(p, model, item, *shared), inputs=inputs)
    for model, inputs, item in jobs]``, the misses run through the executor (``executor.current()``:
    in this process by default, on Dask workers with ``ROBUST_SALIENCY_WORKERS``).

    ``fn`` must be a module-level function (it pickles) and is keyed by its module's source, as
    ``cached_eval`` keys a function (``code``: other modules instead).  On workers each miss runs with its parameter reads recorded
    and the value comes back to this process, which stores it under the same key ``cached_eval``
    computes here (the reads replayed) as soon as it arrives, so no shared disk is needed, a
    stopped run keeps the finished evaluations and a later sequential run hits the same
    entries.  The values are the same as in-process up to float rounding: the workers run one
    torch thread each.
    """
    jobs = [tuple(j) for j in jobs]
    labels = [f"{name} {i}" for i in range(len(jobs))] if labels is None else list(labels)
    code = tuple(code or (fn.__module__,))
    ex = _executor.current()
    if not ex.parallel:
        return [cached_eval(name, model, params, _bind(fn, model, item, shared), inputs=inputs, code=code)
                for model, inputs, item in jobs]
    out, missing = [None] * len(jobs), []
    for i, (model, inputs, _) in enumerate(jobs):
        try:
            out[i] = cached_eval(name, model, params, _raise_pending, inputs=inputs, code=code)
        except _Pending:
            missing.append(i)

    def store(j, result):  # as each job finishes: a stopped run keeps the finished evaluations
        i = missing[j]
        model, inputs, _ = jobs[i]
        out[i] = cached_eval(name, model, params, _replay(*result), inputs=inputs, code=code)

    if missing:
        _executor.run(_eval_elsewhere, [(fn, dict(params), jobs[i][0], jobs[i][2]) for i in missing],
                      [labels[i] for i in missing], desc=desc or name, progress=bool(params.get("progress", True)),
                      executor=ex, shared=shared, on_result=store)
    return out


def _bind(fn, model, item, shared):
    """``fn(params, model, item, *shared)`` as the one-argument function ``cached_eval`` calls."""
    def run(params):
        return fn(params, model, item, *shared)
    return run


def _replay(value, reads):
    """``fn(params)`` for ``cached_eval`` that reads what a worker's evaluation read and returns its value."""
    def replay(params):
        if reads["all"]:
            list(params)
        for k in reads["keys"]:
            params.get(k)
        return value
    return replay


def split_validation(dataset: torch.utils.data.Dataset, n_val: int, seed: int = 0
                     ) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """``(train, validation)``: ``n_val`` rows of ``dataset`` drawn with ``seed`` held out for
    model selection, the rest for training, each in the original order.  Datasets of the
    library split with ``take`` (their fingerprints, hence the training cache keys, differ from
    the full set's); other datasets with ``torch.utils.data.Subset``."""
    n = len(dataset)
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 1 <= n_val < n:
        raise ValueError(f"n_val={n_val!r} is not valid; accepted: an int in [1, {n - 1}] "
                         f"(the training set has {n} rows)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    if hasattr(dataset, "take"):
        return dataset.take(train_idx), dataset.take(val_idx)
    return (torch.utils.data.Subset(dataset, train_idx.tolist()),
            torch.utils.data.Subset(dataset, val_idx.tolist()))


def _library_dataset(dataset, name):
    """Whether ``dataset`` (a dataset of the library, else ValueError) is held in memory."""
    if not isinstance(dataset, data.BaseDataset):
        raise ValueError(f"{name} must be a dataset of the library (data.load's, with take and a "
                         f"fingerprint); got {type(dataset).__name__}")
    return hasattr(dataset, "x") and torch.is_tensor(dataset.x)


def swap_samples(train_set: data.BaseDataset, test_set: data.BaseDataset, n: int,
                 seed: int = 0) -> tuple[data.BaseDataset, data.BaseDataset]:
    """P3's stability protocol (B.7): ``(train, common_test)`` -- ``n`` training rows drawn with
    ``seed`` replaced by ``n`` test rows drawn with ``seed``, and the test set without those
    rows (the test images both runs never trained on).  Extras (masks, ...) follow their rows.
    In-memory sets give an ``ArrayDataset``; file-based ones (ImageNette) a ``data.JoinedDataset``
    of the kept and the added rows."""
    from .data import ArrayDataset, JoinedDataset

    in_memory = _library_dataset(train_set, "train_set") & _library_dataset(test_set, "test_set")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < min(len(train_set), len(test_set)):
        raise ValueError(f"n={n!r} is not valid; accepted: an int in [0, {min(len(train_set), len(test_set)) - 1}]")
    g = torch.Generator().manual_seed(int(seed))
    drop = torch.randperm(len(train_set), generator=g)[:n]
    moved = torch.randperm(len(test_set), generator=g)[:n].sort().values
    keep = torch.ones(len(train_set), dtype=torch.bool)
    keep[drop] = False
    rest = torch.ones(len(test_set), dtype=torch.bool)
    rest[moved] = False
    kept, added = train_set.take(keep.nonzero().flatten()), test_set.take(moved)
    split = f"train, {n} rows from test (seed {seed})"
    if not in_memory:
        return JoinedDataset(kept, added, split=split), test_set.take(rest.nonzero().flatten())
    extras = {k: torch.cat([getattr(kept, k), getattr(added, k)]) for k in train_set.extras
              if k in test_set.extras}
    swapped = ArrayDataset(torch.cat([kept.x, added.x]), torch.cat([kept.y, added.y]),
                           num_classes=train_set.num_classes, classes=train_set.classes,
                           name=train_set.name, split=split, extras=extras)
    return swapped, test_set.take(rest.nonzero().flatten())


def permuted_labels(dataset: data.BaseDataset, seed: int = 0) -> data.BaseDataset:
    """P3's data-randomization test (Adebayo 2018; C.2.6): the same images with their labels
    permuted by ``seed`` (a model trained on it can only memorise)."""
    _library_dataset(dataset, "dataset")
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(int(seed)))
    out = dataset.take(torch.arange(len(dataset)))
    out.y = dataset.y[perm].clone()
    out.split = f"{dataset.split}, labels permuted (seed {seed})"
    return out


def diff_roar(params: Mapping[str, Any], model: torch.nn.Module, train_set: data.BaseDataset,
              test_set: data.BaseDataset, fraction: float,
              attribution: str | Callable[..., torch.Tensor] = "grad", seed: int = 0,
              baseline: str | torch.Tensor = "mean", **fit_kw: Any) -> dict[str, float]:
    """DiffROAR (Hooker 2019's ROAR; P3 Sec. 5.2, B.5) of ``model``'s maps: ``{"top", "bottom",
    "diff_roar"}``.  The ``fraction`` most (``top``) and least (``bottom``) relevant pixels of
    every train and test image are removed (``evaluation.roar_sets``: by ``model``'s
    ``attribution`` map of the true label, set to ``baseline``); a fresh ``params["model"]`` is
    trained from ``seed`` with ``ce`` on each removed training set (``fit``, cached by the
    removed data's fingerprint; ``fit_kw`` e.g. ``num_epochs``) and scored on the matching test
    copy.  DiffROAR = accuracy(bottom removed) - accuracy(top removed): higher means the map
    ranks the pixels the data's label depends on first."""
    from .evaluation import roar_sets
    from .metrics import accuracy

    sets = {split: roar_sets(model, ds, fraction, attribution=attribution, baseline=baseline, seed=seed)
            for split, ds in (("train", train_set), ("test", test_set))}
    nets = fit_many(params, None, [{"train_set": sets["train"][k], "method": "ce", "seed": seed, **fit_kw}
                                   for k in ("top", "bottom")])
    out = {k: accuracy(net, batch(sets["test"][k])) for k, net in zip(("top", "bottom"), nets)}
    out["diff_roar"] = out["bottom"] - out["top"]
    return out


def select_hparams(rows: Sequence[Mapping[str, Any]], reference_accuracy: float, tol: float = 0.01,
                   score: str = "score", accuracy: str = "accuracy") -> tuple[int, str]:
    """Model selection (P1's rule, also notebook 03's): the row with the highest ``score`` among
    those whose ``accuracy`` is at least ``reference_accuracy - tol`` (P1: Grad RPS within 1%
    accuracy of CE).

    ``rows``: a list of dicts (one per hyperparameter setting).  If no row is within the
    tolerance, the most accurate row is returned.  Returns ``(index, reason)`` with ``reason``
    'highest score within tolerance' or 'none within tolerance: most accurate'.
    """
    if not rows:
        raise ValueError("rows=[] is not valid; accepted: a non-empty list of dicts")
    ok = [i for i, r in enumerate(rows) if r[accuracy] >= reference_accuracy - tol]
    if ok:
        return max(ok, key=lambda i: (rows[i][score], rows[i][accuracy])), \
            "highest score within tolerance"
    return max(range(len(rows)), key=lambda i: rows[i][accuracy]), \
        "none within tolerance: most accurate"


def hp_text(hp: Mapping[str, Any] | None) -> str:
    """A grid point for a selection table: "lam=0.1, p=2" (floats by ``:g``; "–" for none)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (hp or {}).items()) or "–"


def check_grid(grid: dict[str, list[dict[str, Any]]],
               methods: Collection[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Validate a hyperparameter grid ``{method: [hparams, ...]}`` before any training.

    Every method name must be known (and in ``methods`` when given) and every hparams dict
    must construct its method (``methods.get``; ATEX with a stand-in teacher), so a
    typo fails here with the method's own message.  Returns ``grid``.
    """
    if not isinstance(grid, dict) or not all(isinstance(v, (list, tuple)) and v
                                             for v in grid.values()):
        raise ValueError(f"grid={grid!r} is not valid; accepted: a dict {{method: [hparams dict, "
                         f"...]}} with a non-empty list per method")
    known = accepted_names("method")
    for name, points in grid.items():
        if name not in known or (methods is not None and name not in methods):
            accepted = known if methods is None else list(methods)
            raise ValueError(f"grid key {name!r} is not a method of this run; accepted: {accepted}")
        for hp in points:
            if not isinstance(hp, dict):
                raise ValueError(f"grid[{name!r}] item {hp!r} is not valid; accepted: a dict of "
                                 f"hyperparameters")
            extra = {"teacher": torch.nn.Identity()} if name == "atex" else {}
            _methods.get(name, **hp, **extra)
    return grid


class ReadRecorder(Mapping):
    """A read-only view of a parameters dict that records which keys are read: ``[k]``, ``get``,
    ``in`` (a missing key read is recorded too: its absence is part of the result), and every key
    on iteration (``keys``, ``items``, ``values``, ``dict(...)``, ``{**...}``): ``read_all``."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params, self.read, self.read_all = params, set(), False

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._params[key]

    def __contains__(self, key: object) -> bool:
        self.read.add(key)
        return key in self._params

    def __iter__(self) -> Iterator[str]:
        self.read_all = True
        return iter(self._params)

    def __len__(self) -> int:
        self.read_all = True
        return len(self._params)

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def keys_read(self) -> list[str]:
        """The keys read: every key of the parameters if they were iterated, else those read."""
        return sorted(map(str, self._params)) if self.read_all else sorted(map(str, self.read))


_ABSENT = "<absent>"


def _param_values(params, keys):
    return {k: params.get(k, _ABSENT) for k in keys}


def cached_eval(name: str, model: torch.nn.Module, params: Mapping[str, Any],
                fn: Callable[[ReadRecorder], Any], inputs: object = None, code: Sequence[str] | None = None,
                cache_dir: str | os.PathLike | None = None) -> Any:
    """``fn(params)`` memoized on disk, keyed by everything that determines it.

    For evaluations of trained models (``fit``).  The key holds the trained ``model``'s cache key
    (data, method, training settings, initial weights, training code), ``name``, ``inputs``
    (whatever else ``fn`` closes over: datasets by fingerprint, tensors by content -- anything
    ``cache.config_hash`` takes), the source of the code (``cache.source_hash`` of ``code``,
    default: the module that defines ``fn``, with everything it imports) and the values of the
    parameters ``fn`` reads.  Those keys are not listed by hand: ``fn`` gets a ``ReadRecorder``
    of ``params``, and the keys it read are kept beside the results (one list per ``name`` and
    code, growing when another call reads more), so a change to any parameter the evaluation
    reads -- or to its code -- is a miss.  The key also holds the type of the model's device
    (``common.device_of``: cpu, cuda, ...): the evaluations move their inputs there and draw their
    noise and random starts from generators on it, so a GPU run does not reuse a CPU run's numbers.
    Written atomically under ``<cache_dir>/eval``; a model without a training key is evaluated
    without caching.  The value is stored and returned with its tensors on the CPU
    (``cache.to_cpu``), computed or loaded alike, whatever device computed it.

    Parameters
    ----------
    name : str
        Name of the evaluation (part of the key and of the file names).
    model : torch.nn.Module
        A model returned by ``fit`` (its ``train_info["key"]`` enters the key).
    params : Mapping
        The notebook parameters; ``fn`` receives them as a ``ReadRecorder``.
    fn : callable
        ``fn(params) -> value``, any ``torch.save``-able value.
    inputs : object, optional
        What else ``fn`` depends on, in a form ``cache.config_hash`` takes.
    code : sequence of str, optional
        Module names whose source (with their imports) enters the key; default ``fn``'s module.
    cache_dir : str or os.PathLike, optional
        Cache folder; default ``default_cache_dir()``.

    Returns
    -------
    object
        ``fn``'s value, computed or loaded, its tensors on the CPU.
    """
    info = getattr(model, "train_info", None) or {}
    if "key" not in info:
        return _cache.to_cpu(fn(ReadRecorder(params)))
    device = device_of(model, default="cpu").type
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "eval"
    code = tuple(code or (getattr(fn, "__module__", None),))
    try:
        code_hash = _cache.source_hash(*code)
    except ValueError:
        raise ValueError(f"cached_eval: code={code!r} is not valid; accepted: modules of the library "
                         f"(pass code= for a function defined outside it)") from None
    reads_path = folder / f"{name}-reads-{code_hash[:16]}.json"

    def known_reads():
        try:
            return json.loads(reads_path.read_text())
        except (OSError, ValueError):
            return None

    def key_of(reads):
        keys = sorted(map(str, params)) if reads["all"] else reads["keys"]
        return {"model": info["key"], "eval": name, "device": device, "code": code_hash, "inputs": inputs,
                "params": _param_values(params, keys)}

    reads = known_reads()
    if reads is not None:
        key_hash = _cache.config_hash(key_of(reads))
        entry = _cache.load_verified(folder / f"{name}-{key_hash[:32]}.pt", weights_only=False)
        if isinstance(entry, dict) and entry.get("key") == key_hash:
            return entry["value"]
    rec = ReadRecorder(params)
    value = _cache.to_cpu(fn(rec))
    now = {"all": rec.read_all, "keys": rec.keys_read()}
    if reads is not None:  # union with what other calls read
        now = {"all": now["all"] or reads["all"], "keys": sorted(set(now["keys"]) | set(reads["keys"]))}
    if now != reads:
        _cache.atomic_write_json(now, reads_path)
    key = key_of(now)
    key_hash = _cache.config_hash(key)
    _cache.atomic_save({"key": key_hash, "reads": now, "params": key["params"], "code": code_hash,
                        "inputs": _cache.canonical(inputs), "value": value},
                       folder / f"{name}-{key_hash[:32]}.pt")
    return value
