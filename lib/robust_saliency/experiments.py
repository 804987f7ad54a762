"""Profiles, parameter validation, provenance and results files for the notebooks (SPEC section 2).

A notebook's parameters cell holds plain values and a ``profile``; the rest follows::

    params = experiments.validate(**experiments.profile_params(profile, num_epochs=num_epochs))
    ...
    experiments.write_results("01_local_gradient_alignment", profile, results, params,
                              t_start=t_start)

Profiles (``PROFILES``): ``smoke`` (CI/nbval: tiny embedded subsets, 1 seed, <= 2 min per
notebook), ``cpu`` (the default and the committed outputs: embedded data, 3 seeds, <= 15 min
per notebook on 2 cores), ``paper`` (a GPU machine with the real datasets under
``data_root``).  They hold generic defaults; a notebook overrides what it needs.

The registries of the other modules are imported at the top: a broken module fails this
import with its own error rather than hiding as an "unknown name".
"""
import copy
import dataclasses
import math
import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from . import attacks, attributions, claims, data, evaluation, metrics, models, training, units
from . import cache as _cache
from . import methods as _methods

__all__ = ["PROFILES", "NOTEBOOK_PROFILES", "profile_params", "validate", "train_config",
           "resolve_device", "default_cache_dir", "repo_root", "provenance", "code_changes",
           "write_results",
           "accepted_names", "load_data", "build_model", "fit", "fit_method", "batch",
           "evaluate_saliency", "check_grid", "select_hparams", "cached_eval", "mean_std"]

_EPS_GRID = [2, 4, 8, 16]  # 0-255 units, P1 Table 1 / appendix

# ``normalize``: the model's first layer standardizes each channel with the training set's
# mean and std (SPEC section 4).  Measured on ``shapes`` 32x32 with P1's softplus(beta=3)
# lenet: without it (batch 128, lr 1e-3) training sat at chance for the first 3 of 10 epochs
# and one seed of the tour never left it (0.28 test accuracy); with it (batch 64, lr 1e-3) two
# seeds left chance in the first epoch (0.74 / 0.63 after 4 epochs of 4000 images).  Adam's
# lr 2e-3 stalls this width for good (0.20 / 0.11 / 0.09), so the cpu profile keeps P1's 1e-3.
PROFILES = {
    "smoke": {
        "dataset": "shapes", "model": "small_cnn", "activation": "softplus", "beta": 3.0,
        "n_train": 2000, "n_test": 200, "num_epochs": 6, "batch_size": 32,
        "optimizer": "adam", "lr": 3e-3, "grad_clip": 0.5, "normalize": True, "seeds": [0],
        "eval_subset": 32, "eps_grid": [4, 16], "attack_steps": 2,
        "data_root": None, "device": "cpu", "progress": False,
    },
    "cpu": {
        "dataset": "shapes", "model": "lenet", "activation": "softplus", "beta": 3.0,
        "n_train": 10000, "n_test": 2000, "num_epochs": 10, "batch_size": 64,
        "optimizer": "adam", "lr": 1e-3, "grad_clip": 0.5, "normalize": True, "seeds": [0, 1, 2],
        "eval_subset": 200, "eps_grid": list(_EPS_GRID), "attack_steps": 10,
        "data_root": None, "device": "cpu", "progress": True,
    },
    # Defaults follow P1 (CIFAR-10 LeNet, softplus beta 3, Adam lr 1e-3, grad-clip 0.5);
    # P1 does not state its epochs, so num_epochs is a placeholder that each notebook
    # replaces by its paper's value (P3: 10 synthetic / 200 ImageNette; P4: 80 BlockMNIST,
    # 200 CIFAR).  n_train/n_test None = the full split; device None = cuda if available.
    "paper": {
        "dataset": "cifar10", "model": "lenet", "activation": "softplus", "beta": 3.0,
        "n_train": None, "n_test": None, "num_epochs": 100, "batch_size": 128,
        "optimizer": "adam", "lr": 1e-3, "grad_clip": 0.5, "normalize": True, "seeds": [0, 1, 2],
        "eval_subset": 1000, "eps_grid": list(_EPS_GRID), "attack_steps": 100,
        "data_root": None, "device": None, "progress": True,
    },
}


# Per-notebook settings on top of PROFILES (what a notebook's parameters cell leaves at None).
NOTEBOOK_PROFILES = {
    # P1 at CPU scale: shapes rendered at 16x16 and a half-width lenet (16/32 channels, fc 128)
    # so that 6 methods x 3 seeds, a small hyperparameter grid and 100-step-scale attacks fit
    # in 15 minutes on 2 cores; short training (bs 64, lr 2e-3) with normalized inputs.
    # The grids start at P1's reference settings (SPEC section 6) and go up by 10x where the
    # reference is too weak at this scale; the paper profile uses P1's settings only.
    "01_local_gradient_alignment": {
        "smoke": {"size": 16, "n_train": 600, "n_test": 200, "num_epochs": 1, "batch_size": 64,
                  "lr": 2e-3, "normalize": True, "model": "lenet",
                  "model_kw": {"width": 4, "hidden": 32},
                  "eval_subset": 8, "rps_n": 1, "attack_steps": 2, "atex_epochs": 1,
                  "grid": {"l2": [{"eps": 4, "lam": 0.01}], "l2_cosd": [
                      {"eps": 4, "lam_l2": 0.01, "lam_cos": 1.0}], "hessian": [{"lam": 1e-3}],
                      "iga": [{"steps": 1}], "atex": [{"n_shifts": 2, "n_orth": 1, "smooth_n": 1}]},
                  "toy_epochs": 20, "bench_repeats": 1},
        "cpu": {"size": 16, "n_train": 4000, "n_test": 1000, "num_epochs": 4, "batch_size": 64,
                "lr": 2e-3, "normalize": True, "model": "lenet",
                "model_kw": {"width": 16, "hidden": 128},
                "eval_subset": 80, "rps_n": 5, "attack_steps": 20, "atex_epochs": 1,
                "grid": {"l2": [{"eps": 4, "lam": v} for v in (0.01, 0.1)],
                         "l2_cosd": [{"eps": 4, "lam_l2": a, "lam_cos": b}
                                     for a, b in ((0.01, 1.0), (0.01, 10.0), (0.1, 1.0))],
                         "hessian": [{"lam": v} for v in (1e-5, 1e-4, 1e-3)],
                         "iga": [{"steps": 1, "lam": v} for v in (0.5, 0.05)],
                         "atex": [{"n_shifts": 3, "n_orth": 2, "smooth_n": 2}]},
                "toy_epochs": 100, "bench_repeats": 10},
        "paper": {"normalize": True, "model_kw": {}, "rps_n": 10, "attack_steps": 100,
                  "atex_epochs": 10,
                  "grid": {"l2": [{"eps": 4, "lam": 0.01}],
                           "l2_cosd": [{"eps": 4, "lam_l2": 0.01, "lam_cos": 1.0}],
                           "hessian": [{"lam": 1e-3}], "iga": [{}], "atex": [{}]},
                  "toy_epochs": 200, "bench_repeats": 20},
    },
}


def profile_params(profile, notebook=None, **overrides):
    """The parameters of ``profile`` (a fresh dict, with ``"profile"``) updated by ``overrides``.

    ``notebook`` (a key of ``NOTEBOOK_PROFILES``) layers that notebook's settings for the
    profile over the generic ones.  Explicit overrides win; an override whose value is None is
    ignored (a notebook parameter left at None takes the profile's value).  Unknown profile or
    notebook -> ValueError.  ``$ROBUST_SALIENCY_PROGRESS`` (0 or 1), when set, turns the
    progress bars off or on unless ``progress`` is passed (``make reproduce`` sets 0, so that
    committed notebooks hold no progress output).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not known; accepted: {tuple(PROFILES)}")
    params = copy.deepcopy(PROFILES[profile])
    if notebook is not None:
        if notebook not in NOTEBOOK_PROFILES:
            raise ValueError(f"notebook={notebook!r} has no profile settings; accepted: None or "
                             f"{tuple(NOTEBOOK_PROFILES)}")
        params.update(copy.deepcopy(NOTEBOOK_PROFILES[notebook].get(profile, {})))
    params.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("progress") is None and os.environ.get("ROBUST_SALIENCY_PROGRESS"):
        params["progress"] = _env_flag("ROBUST_SALIENCY_PROGRESS")
    params["profile"] = profile
    return params


def _env_flag(name):
    value = os.environ[name].strip().lower()
    if value not in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        raise ValueError(f"{name}={os.environ[name]!r} is not valid; accepted: 0 or 1 (also "
                         f"false/true, no/yes, off/on)")
    return value in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

_KINDS = {  # kind -> the registry's names
    "dataset": data.NAMES,
    "model": models.NAMES,
    "method": _methods.NAMES,
    "attribution": attributions.NAMES,
    "metric": metrics.NAMES,
    "attack": attacks.NAMES,
}
_POSITIVE_INTS = ("batch_size", "eval_subset", "attack_steps", "size")


def accepted_names(kind):
    """The names accepted for ``kind`` (dataset, model, method, attribution, metric, attack)."""
    return tuple(_KINDS[kind])


def _kind_of(key):
    for kind in _KINDS:
        if key in (kind, kind + "s") or key.endswith(("_" + kind, "_" + kind + "s")):
            return kind
    return None


def _is_eps_key(key):
    return key == "eps" or key.startswith("eps") or key.endswith("_eps") or "_eps_" in key


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _names_in(key, value, kind):
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        items = list(value)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ValueError(f"{key}={value!r} is not valid; accepted: a {kind} name, a list of "
                         f"names, or a dict keyed by names")
    return items


def _check_names(key, value, kind):
    names = _names_in(key, value, kind)
    accepted = accepted_names(kind)
    for name in names:
        if name not in accepted:
            shown = repr(value) if isinstance(value, str) else f"{value!r} (item {name!r})"
            raise ValueError(f"{key}={shown}: {name!r} is not a known {kind}; "
                             f"accepted: {accepted}")
    return names


def _check_eps(key, value):
    """Each budget of ``key`` in its unit (``units``): L2 keys (``*l2*``) in input units, the
    others L-infinity budgets and noise levels in 0-255 pixel units."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    check = units.l2 if "l2" in key else units.linf
    for v in items:
        try:
            check(v, key)
        except ValueError as err:
            shown = "" if len(items) == 1 and not isinstance(value, (list, tuple)) else \
                f" (item {v!r} of {value!r}; a number or a list of them)"
            raise ValueError(f"{err}{shown}") from None


def validate(**params):
    """Check the notebook parameters ``params`` before anything runs; return them (a dict).

    Raises ValueError naming the parameter, its value and the accepted values for: an unknown
    profile; an unknown dataset, model, method, attribution, metric or attack name (keys
    ``dataset``/``datasets``/``*_dataset``/``*_datasets`` and likewise for the other kinds,
    each a name, a list of names or a dict keyed by names; None = unused); a negative,
    non-finite or non-numeric eps (keys ``eps``, ``eps*``, ``*_eps``, a number or a list);
    ``num_epochs`` not an int >= 1; ``seed`` / ``seeds`` not ints >= 0; ``n_*``,
    ``batch_size``, ``eval_subset``, ``attack_steps``, ``size`` not ints >= 1 (``n_*`` may be
    None = all); ``lr`` not > 0; an unknown or unavailable ``device``; a real dataset without
    ``data_root``, or a ``data_root`` that is not a folder.  Other keys are not checked.
    """
    if "profile" in params and params["profile"] not in PROFILES:
        raise ValueError(f"profile={params['profile']!r} is not known; accepted: {tuple(PROFILES)}")
    for key, value in params.items():  # papermill's -p passes lists and dicts as strings
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            raise ValueError(f"{key}={value!r} is a string, not a list or dict; accepted: a list or "
                             f"dict (from papermill pass it as YAML: -y \"{key}: {value.strip()}\")")
    datasets = []
    for key, value in params.items():
        kind = _kind_of(key)
        if kind is not None and value is not None:
            names = _check_names(key, value, kind)
            if kind == "dataset":
                datasets += [(key, n) for n in names]
    for key, value in params.items():
        if _is_eps_key(key) and value is not None:
            _check_eps(key, value)
    if "num_epochs" in params:
        v = params["num_epochs"]
        if not _is_int(v) or v < 1:
            raise ValueError(f"num_epochs={v!r} is not valid; accepted: an int >= 1")
    if "seed" in params:
        v = params["seed"]
        if not _is_int(v) or v < 0:
            raise ValueError(f"seed={v!r} is not valid; accepted: an int >= 0")
    if "seeds" in params:
        v = params["seeds"]
        if not (isinstance(v, (list, tuple)) and v and all(_is_int(s) and s >= 0 for s in v)):
            raise ValueError(f"seeds={v!r} is not valid; accepted: a non-empty list of ints >= 0")
    for key, v in params.items():
        if (key.startswith("n_") and v is not None) or key in _POSITIVE_INTS:
            if not _is_int(v) or v < 1:
                extra = " (or None = all)" if key.startswith("n_") else ""
                raise ValueError(f"{key}={v!r} is not valid; accepted: an int >= 1{extra}")
    if "lr" in params:
        v = params["lr"]
        if not _is_number(v) or not math.isfinite(float(v)) or v <= 0:
            raise ValueError(f"lr={v!r} is not valid; accepted: a finite number > 0")
    if params.get("device") is not None:
        _check_device(params["device"])
    _check_data_root(params, datasets)
    return params


def _check_device(device):
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device={device!r} is not valid; accepted: None (auto), 'cpu', "
                         f"'cuda', 'cuda:<index>', 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is not available (no CUDA); accepted here: "
                         f"'cpu' or None (auto)")


def _check_data_root(params, datasets):
    if not datasets:
        return
    real = [(k, n) for k, n in datasets if n in data.REAL]
    if not real:
        return
    root = params.get("data_root")
    key, name = real[0]
    if root is None:
        raise ValueError(f"data_root=None is not valid for {key}={name!r} (a real dataset); "
                         f"accepted: the folder holding the dataset (see data/README.md), or an "
                         f"embedded dataset {tuple(data.EMBEDDED)}")
    if not Path(root).expanduser().is_dir():
        raise ValueError(f"data_root={root!r} is not an existing folder; accepted: the folder "
                         f"holding {name!r} (see data/README.md)")


def resolve_device(device=None):
    """``device``, or for None: 'cuda' if available, else 'cpu'."""
    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_config(params, **overrides):
    """A ``training.TrainConfig`` from the notebook parameters that are its fields.

    ``cache_dir`` defaults to ``default_cache_dir()``, ``device`` to ``resolve_device``.
    """
    names = {f.name for f in dataclasses.fields(training.TrainConfig)}
    cfg = {k: v for k, v in params.items() if k in names}
    cfg.setdefault("cache_dir", str(default_cache_dir()))
    cfg.update(overrides)
    cfg["device"] = resolve_device(cfg.get("device"))
    return training.TrainConfig.make(cfg)


# ----------------------------------------------------------------------------------------------
# Paths, provenance, results
# ----------------------------------------------------------------------------------------------

def repo_root():
    """The repository folder: $ROBUST_SALIENCY_ROOT, else the checkout holding this package
    (editable install), else the nearest parent of the working directory with ``notebooks/``."""
    env = os.environ.get("ROBUST_SALIENCY_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() or (here / ".git").exists():
        return here
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "notebooks").is_dir() and (folder / "lib").is_dir():
            return folder
    return cwd


def default_cache_dir():
    """$ROBUST_SALIENCY_CACHE, else ``<repo>/cache`` (git-ignored)."""
    env = os.environ.get("ROBUST_SALIENCY_CACHE")
    return Path(env).expanduser() if env else repo_root() / "cache"


def _git(*args):
    """git's stdout (unstripped) for ``args`` run in ``repo_root()``; None if git fails."""
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                             timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
             "captum": "captum", "zennit": "zennit", "scipy": "scipy",
             "sklearn": "scikit-learn", "skimage": "scikit-image"}


def _versions():
    out = {}
    for short, dist in _PACKAGES.items():
        try:
            out[short] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[short] = "not installed"
    out["python"] = platform.python_version()
    return out


# What running the notebooks rewrites: a difference there does not unpin the code.
_RUN_OUTPUTS = ("figures/", "results/")


def _is_run_output(path):
    return path.startswith(_RUN_OUTPUTS) or (path.startswith("notebooks/")
                                             and path.endswith(".ipynb"))


def code_changes():
    """Paths (relative to the repository) that differ from the checked-out commit, leaving out
    what executing the notebooks rewrites (``notebooks/*.ipynb``, ``figures/``, ``results/``):
    modified, added, deleted or untracked (not ignored) files.  None outside a git checkout."""
    status = _git("status", "--porcelain", "-z", "--untracked-files=all")
    if status is None:
        return None
    entries, paths = status.split("\0"), []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:  # a rename or copy: the source path follows
            paths.append(entries[i])
            i += 1
        paths.append(path)
    return sorted({p for p in paths if not _is_run_output(p)})


def provenance(params, seeds, t_start):
    """What pins the code (git commit and the changes outside the run's outputs), package
    versions, platform, profile, seeds and wall time.

    ``t_start`` is ``time.time()`` taken at the notebook's start (None: wall time unknown).
    ``commit`` is 'unknown' outside a git checkout.  ``code_changes`` lists the files that
    differ from the commit other than the executed notebooks and their figures and results
    (``code_changes()``), and ``dirty`` says whether there are any: a run with
    ``dirty: false`` used exactly the committed code.  Both are None outside git.
    """
    commit = (_git("rev-parse", "HEAD") or "").strip() or "unknown"
    changes = code_changes() if commit != "unknown" else None
    info = {
        "commit": commit,
        "dirty": None if changes is None else bool(changes),
        "code_changes": changes,
        "versions": _versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(),
                     "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "profile": (params or {}).get("profile"),
        "seeds": list(seeds) if seeds is not None else None,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": None if t_start is None else round(time.time() - t_start, 3),
    }
    info["platform"]["torch_threads"] = torch.get_num_threads()
    info["platform"]["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def write_results(notebook, profile, results, params, *, t_start=None, results_dir=None):
    """Write ``results/<notebook>_<profile>.json`` atomically; return its path.

    The file holds notebook, profile, params, seeds, provenance and ``results`` (converted by
    ``cache.to_jsonable``: tensors and arrays to lists, NaN/inf to null).  ``results_dir``
    defaults to ``<repo>/results``.
    """
    notebook = Path(str(notebook)).name
    if notebook.endswith(".ipynb"):
        notebook = notebook[: -len(".ipynb")]
    for param, value in (("notebook", notebook), ("profile", profile)):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"{param}={value!r} is not valid; accepted: a non-empty name of "
                             f"letters, digits, '_', '.', '-'")
    params = dict(params or {})
    seeds = params.get("seeds")
    if seeds is None and params.get("seed") is not None:
        seeds = [params["seed"]]
    doc = {"notebook": notebook, "profile": profile, "params": params, "seeds": seeds,
           "provenance": provenance({**params, "profile": profile}, seeds, t_start),
           "results": results}
    folder = Path(results_dir) if results_dir is not None else repo_root() / "results"
    return _cache.atomic_write_json(doc, folder / f"{notebook}_{profile}.json")



# ----------------------------------------------------------------------------------------------
# Load-or-train: what a notebook calls instead of writing a training loop
# ----------------------------------------------------------------------------------------------

def load_data(params, dataset=None, split="train", **kw):
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


def build_model(params, train_set, model=None, seed=0, **kw):
    """``models.build`` for ``train_set`` with the profile's activation/beta, initialised from
    ``seed`` (the same seed gives the same initial weights).

    Keywords come from ``kw``, then ``params["model_kw"]`` when ``model`` is the profile's
    model.  ``params["normalize"]`` puts a ``Normalize`` first with ``train_set``'s per-channel
    mean and std (image datasets; SPEC section 4: normalization is the model's first layer).
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


def fit(params, train_set, method="ce", seed=0, model=None, model_kw=None, method_kw=None,
        init_from=None, **cfg_overrides):
    """Load-or-train one model: build ``model`` (default ``params["model"]``) from ``seed``,
    train it on ``train_set`` with ``method`` through the cached training loop
    (``training.train``), and return it in eval mode. A second call with the same
    configuration loads the cached weights instead of training.

    ``init_from``: a model whose weights replace the initial ones (ATEX's student starts as
    a copy of its teacher); they enter the cache key.  ``cfg_overrides`` (e.g. ``num_epochs``)
    override the training settings of ``params``.
    """
    net = build_model(params, train_set, model=model, seed=seed, **(model_kw or {}))
    if init_from is not None:
        try:
            net.load_state_dict(init_from.state_dict())
        except (RuntimeError, AttributeError) as err:
            raise ValueError(f"init_from={type(init_from).__name__} does not fit the model "
                             f"{params.get('model') if model is None else model!r}: {err}") from None
    meth = _methods.get(method, **(method_kw or {})) if isinstance(method, str) else method
    cfg = train_config(params, seed=seed, **cfg_overrides)
    loader = torch.utils.data.DataLoader(train_set, batch_size=params.get("batch_size", 128),
                                         shuffle=False)
    return training.train(net, meth, loader, cfg)


def batch(dataset, n=None):
    """The first ``n`` samples of ``dataset`` (all for None) as stacked tensors ``(x, y)``."""
    n = len(dataset) if n is None else min(int(n), len(dataset))
    if hasattr(dataset, "x") and torch.is_tensor(dataset.x):
        return dataset.x[:n], dataset.y[:n]
    items = [dataset[i] for i in range(n)]
    return torch.stack([t[0] for t in items]), torch.as_tensor([int(t[1]) for t in items])


def fit_method(params, train_set, method, seed, hparams=None):
    """Load-or-train ``method`` with ``hparams`` for ``seed`` (``fit``), the way P1 trains it.

    ``atex`` (Tang 2022) distils a trained teacher: the ``ce`` model of the same seed, which the
    student starts from, fine-tuned for ``params["atex_epochs"]`` epochs (default: the
    profile's ``num_epochs``).  Every other method trains from the seed's initial weights.
    """
    hparams = dict(hparams or {})
    if method != "atex":
        return fit(params, train_set, method, seed=seed, method_kw=hparams)
    teacher = fit(params, train_set, "ce", seed=seed)
    epochs = params.get("atex_epochs") or params["num_epochs"]
    return fit(params, train_set, "atex", seed=seed, method_kw={"teacher": teacher, **hparams},
               init_from=teacher, num_epochs=int(epochs))


def evaluate_saliency(params, model, test_set, x, y, attributions=None, rps_eps=None,
                      attack="targeted_attribution"):
    """Accuracy on ``test_set`` and ``evaluation.saliency_report`` on ``(x, y)`` (P1 Table 1),
    cached under the model's training key and the evaluation settings (``cached_eval``).

    Settings from ``params``: ``attributions``, ``rps_eps_grid`` (default ``[rps_eps]``),
    ``rps_n``, ``attack_eps`` (0-255 units) and ``attack_steps`` of P1's targeted AAM (frame
    target), ``seed`` 0 for the RPS draws; RPS with cosine, PCC and SSIM.  ``attributions``
    and ``rps_eps`` (a list) override the params; ``attack=None`` skips the attack (a cheap
    evaluation, e.g. for a hyperparameter grid).  Returns ``{"accuracy": float, "report"}``.
    """
    eps_grid = list(rps_eps or params.get("rps_eps_grid") or [params["rps_eps"]])
    config = {"attributions": list(attributions or params["attributions"]), "rps_eps": eps_grid,
              "similarities": ["cosine", "pcc", "ssim"], "rps_n": int(params["rps_n"]),
              "attack": attack,
              "attack_eps": None if attack is None else params["attack_eps"],
              "attack_steps": None if attack is None else int(params["attack_steps"]),
              "x": x, "y": y, "test_set": training.dataset_identity(test_set),
              "report_version": evaluation.REPORT_VERSION}

    def compute():
        loader = torch.utils.data.DataLoader(test_set, batch_size=512)
        attack_kw = None if attack is None else {"eps": params["attack_eps"],
                                                 "steps": config["attack_steps"]}
        report = evaluation.saliency_report(
            model, x, y, config["attributions"], rps_eps=eps_grid,
            similarities=config["similarities"], rps_n=config["rps_n"], attack=attack,
            attack_kw=attack_kw, seed=0)
        return {"accuracy": metrics.accuracy(model, loader), "report": report}

    return cached_eval("saliency", model, config, compute)


def check_grid(grid, methods=None):
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


def select_hparams(rows, reference_accuracy, tol=0.01, score="score", accuracy="accuracy"):
    """P1's model selection: the row with the highest ``score`` among those whose ``accuracy``
    is at least ``reference_accuracy - tol`` (P1: Grad RPS within 1% test accuracy of CE).

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


def cached_eval(name, model, config, fn, cache_dir=None):
    """``fn()`` memoized on disk under the trained ``model``'s cache key and ``config``.

    For evaluations of cached models (``fit``): the key is ``model.train_info["key"]`` (which
    identifies data, method, training settings and initial weights) plus ``config`` (the
    evaluation's settings); written atomically under ``<cache_dir>/eval``.  A model without a
    training key is evaluated without caching.
    """
    info = getattr(model, "train_info", None) or {}
    if "key" not in info:
        return fn()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _cache.cached({"model": info["key"], "eval": name, "config": config}, fn,
                         folder / "eval", name=name)


def mean_std(records, index, columns, values, fmt="{:.3f}"):
    """A table of ``mean ± std`` over seeds from a list of flat dicts (one per seed and cell).

    ``index`` / ``columns`` name the keys that label rows and columns, ``values`` the key to
    summarise; std is the sample std (ddof=1; '±0' for one seed is shown as '± n/a').
    """
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    stats = (df.groupby([index, columns], sort=False)[values]
             .agg(lambda v: claims.fmt_ms(v, fmt)).reset_index(name="cell"))
    table = stats.pivot(index=index, columns=columns, values="cell")
    table = table.loc[list(dict.fromkeys(df[index])), list(dict.fromkeys(df[columns]))]
    table.columns.name, table.index.name = None, index
    return table
