"""Profiles and parameter validation for the notebooks.

A notebook's parameters cell holds plain values and a ``profile``; the rest follows::

    params = profiles.validate(**profiles.profile_params(profile, num_epochs=num_epochs))

Profiles (``PROFILES``): ``smoke`` (CI/nbval: tiny embedded subsets, 1 seed, <= 2 min per
notebook), ``cpu`` (the default and the committed outputs: embedded data, 3 seeds, <= 15 min
per notebook on 2 cores), ``paper`` (a GPU machine with the real datasets under
``data_root``).  They hold generic defaults; a notebook overrides what it needs
(``notebook_settings``: a YAML file beside the notebook).

The device is decided here and only here: a profile's ``device`` None means "cuda if available,
else cpu" (``resolve_device``), and ``profile_params`` and ``validate`` store the device it picks
in the parameters, so the settings object and the results' provenance show the device a run used.
Everything after follows the model (``training.train`` puts it on ``params["device"]`` through
``train_config``; the library moves each input to its model's device, ``common.to_device_of``).

The registries of the other modules are imported at the top: a broken module fails this
import with its own error rather than hiding as an "unknown name".
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import data, settings, training
from .results import default_cache_dir, repo_root

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PROFILES", "notebook_settings", "notebooks_dir", "profile_params", "validate", "accepted_names",
           "train_config", "resolve_device"]

_EPS_GRID = [2, 4, 8, 16]  # 0-255 units, P1 Table 1 / appendix

# ``normalize``: the model's first layer standardizes each channel with the training set's
# mean and std.  Measured on ``shapes`` 32x32 with P1's softplus(beta=3)
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
        "data_root": None, "device": "cpu", "num_workers": 0, "pin_memory": False, "progress": False,
    },
    "cpu": {
        "dataset": "shapes", "model": "lenet", "activation": "softplus", "beta": 3.0,
        "n_train": 10000, "n_test": 2000, "num_epochs": 10, "batch_size": 64,
        "optimizer": "adam", "lr": 1e-3, "grad_clip": 0.5, "normalize": True, "seeds": [0, 1, 2],
        "eval_subset": 200, "eps_grid": list(_EPS_GRID), "attack_steps": 10,
        "data_root": None, "device": "cpu", "num_workers": 0, "pin_memory": False, "progress": True,
    },
    # Defaults follow P1 (CIFAR-10 LeNet, softplus beta 3, Adam lr 1e-3, grad-clip 0.5);
    # num_epochs is a placeholder that each notebook replaces by its paper's value: P1's text
    # gives none, its released scripts train 300 (LeNet) / 200 (ResNet18) / 90 (ImageNet-100)
    # epochs (papers.p1.TRAINING_RECIPES, applied by notebook 01); P3: 10 synthetic / 200
    # ImageNette; P4: 80 BlockMNIST, 200 CIFAR.  n_train/n_test None = the full split; device None = cuda if
    # available (resolve_device; profile_params stores its choice); 4 loader workers with pinned memory
    # feed a GPU (the embedded profiles load in the main process).
    "paper": {
        "dataset": "cifar10", "model": "lenet", "activation": "softplus", "beta": 3.0,
        "n_train": None, "n_test": None, "num_epochs": 100, "batch_size": 128,
        "optimizer": "adam", "lr": 1e-3, "grad_clip": 0.5, "normalize": True, "seeds": [0, 1, 2],
        "eval_subset": 1000, "eps_grid": list(_EPS_GRID), "attack_steps": 100,
        "data_root": None, "device": None, "num_workers": 4, "pin_memory": True, "progress": True,
    },
}


def notebooks_dir() -> Path:
    """The folder of the notebooks and their settings files: ``<repo_root()>/notebooks``."""
    return repo_root() / "notebooks"


def notebook_settings(notebook: str) -> dict[str, dict[str, Any]]:
    """The per-profile settings of ``notebook``: ``notebooks/<notebook>.yaml`` beside it, a
    mapping ``{profile: {parameter: value}}`` layered between ``PROFILES`` and the notebook's
    parameters cell.  A missing file, a YAML error, an unknown profile, a section that is not
    a mapping or a value that ``validate`` rejects raises ValueError naming the file and key.
    """
    import yaml

    folder = notebooks_dir()
    path = folder / f"{notebook}.yaml"
    if not isinstance(notebook, str) or not path.is_file():
        known = tuple(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ValueError(f"notebook={notebook!r} has no settings file {path}; accepted: None or "
                         f"{known}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the top level must map profile names to settings; accepted "
                         f"profiles: {tuple(PROFILES)}")
    for profile, values in doc.items():
        if profile not in PROFILES:
            raise ValueError(f"{path}: key {profile!r} is not a profile; accepted: "
                             f"{tuple(PROFILES)}")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: {profile!r} must map parameter names to values; got "
                             f"{values!r}")
        try:
            # a notebook without declared parameters (one being written) is checked leniently
            validate(notebook=notebook if notebook in settings.NOTEBOOKS else None, **values)
        except ValueError as err:
            raise ValueError(f"{path}: profile {profile!r}: {err}") from None
    return doc


def profile_params(profile: str, notebook: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The parameters of ``profile`` (a fresh dict, with ``"profile"``) updated by ``overrides``.

    ``notebook`` (a name such as ``"01_local_gradient_alignment"``) layers that notebook's
    settings for the profile (``notebook_settings``: ``notebooks/<notebook>.yaml``) over the
    generic ones.  Explicit overrides win; an override whose value is None is
    ignored (a notebook parameter left at None takes the profile's value).  ``device`` None (the
    paper profile's) is resolved (``resolve_device``) and stored.  Unknown profile or
    notebook -> ValueError.  ``$ROBUST_SALIENCY_PROGRESS`` (0 or 1), when set, turns the
    progress bars off or on unless ``progress`` is passed (``make reproduce`` sets 0, so that
    committed notebooks hold no progress output).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not known; accepted: {tuple(PROFILES)}")
    params = copy.deepcopy(PROFILES[profile])
    if notebook is not None:
        params.update(notebook_settings(notebook).get(profile) or {})
    params.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("progress") is None and os.environ.get("ROBUST_SALIENCY_PROGRESS"):
        params["progress"] = _env_flag("ROBUST_SALIENCY_PROGRESS")
    if "device" in params:
        params["device"] = resolve_device(params["device"])
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

def accepted_names(kind: str) -> tuple[str, ...]:
    """The names accepted for ``kind`` (dataset, model, method, attribution, metric, attack)."""
    return settings.accepted_names(kind)


def validate(notebook: str | None = None, **params: Any) -> dict[str, Any]:
    """Check the notebook parameters ``params`` before anything runs; return them (a dict).

    Each value is checked against its declaration in ``settings`` (type, unit, range, the
    registry its names come from): ``notebook`` (e.g. ``"04_marginal_density"``) checks against
    that notebook's declared parameters and rejects a name it does not declare; None checks the
    names any notebook declares and leaves other names unchecked.  Also: a list or dict passed
    as a string (papermill's ``-p``), an unavailable ``device``, a real dataset without
    ``data_root``.  Raises ValueError naming the parameter, its value and what is accepted.
    A ``device`` given as None is replaced by ``resolve_device``'s choice in the returned dict.
    """
    if "profile" in params and params["profile"] not in PROFILES:
        raise ValueError(f"profile={params['profile']!r} is not known; accepted: {tuple(PROFILES)}")
    for key, value in params.items():  # papermill's -p passes lists and dicts as strings
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            raise ValueError(f"{key}={value!r} is a string, not a list or dict; accepted: a list or "
                             f"dict (from papermill pass it as YAML: -y \"{key}: {value.strip()}\")")
    if params.get("device") is not None:
        _check_device(params["device"])
    elif "device" in params:
        params["device"] = resolve_device(None)
    declared = settings.schema(notebook)
    settings.check({k: v for k, v in params.items() if k not in ("device", "data_root")}, notebook,
                   strict=notebook is not None)
    datasets = []
    for key, value in params.items():
        p = declared.get(key)
        if p is not None and p.names_of == "dataset" and value is not None:
            datasets += [(key, n) for n in ([value] if isinstance(value, str) else list(value))]
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


def resolve_device(device: str | torch.device | None = None) -> str:
    """``device`` (as a string), or for None: 'cuda' if available, else 'cpu'.  The library's one
    device policy (module docstring); nothing else picks a device."""
    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_config(params: Mapping[str, Any], **overrides: Any) -> training.TrainConfig:
    """A ``training.TrainConfig`` from the notebook parameters that are its fields.

    ``cache_dir`` defaults to ``default_cache_dir()``; ``device`` is ``resolve_device``'s (the
    params' own, already resolved for a notebook's; None for a hand-made dict: the same policy).
    The DataLoader settings ``num_workers`` / ``pin_memory`` are not training settings (``runs.fit``
    passes them to its loader) and do not enter the training cache key.
    """
    names = {f.name for f in dataclasses.fields(training.TrainConfig)}
    cfg = {k: v for k, v in params.items() if k in names}
    cfg.setdefault("cache_dir", str(default_cache_dir()))
    cfg.update(overrides)
    cfg["device"] = resolve_device(cfg.get("device"))
    return training.TrainConfig.make(cfg)
