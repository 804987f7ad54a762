"""One training loop for every method, with a checksummed, resumable cache.

A training method is a ``Method``: ``method(model, x, y) -> (loss, logs)``, ``logs`` a dict of
floats.  ``train(model, method, loader, cfg)`` runs the shared loop (optimizer, learning-rate
schedule, gradient clipping, progress bar) and caches the trained weights under a hash of
everything that determines them (``train_key``).

What ``train`` guarantees:

* Determinism: the loop seeds ``torch``, ``numpy`` and ``random`` from ``cfg.seed`` and draws
  each epoch's shuffling order from its own generator seeded with ``(seed, epoch)``, so the
  result does not depend on the global RNG state or on the loader's own sampler (only its
  dataset, batch size, collate_fn, drop_last and num_workers are used).  The caller's global
  RNG state is restored on return, so a cache hit and a fresh run leave the same state.
* Cache: ``<cache_dir>/models/<method>-<key>.pt`` holds the final weights and history; a
  corrupt or truncated file gives a warning and a retrain.  After every epoch a checkpoint
  (model, optimizer, scheduler, RNG states, epoch, history) is written atomically to
  ``<...>.ckpt``; a run killed mid-way resumes from it and ends with bitwise the same weights
  as an uninterrupted run.  The checkpoint is removed after the final save.
* On return the model is in eval mode, on ``cfg.device``, and carries
  ``model.train_history`` (a list with one dict per epoch, see below) and
  ``model.train_info`` (``key``, ``path``, ``from_cache``, ``resumed_from_epoch``).

Per-epoch history entries: ``epoch`` (1-based), ``loss`` (sample-weighted mean of the method's
loss), ``accuracy`` (training accuracy on the clean batch as the model saw it in that step:
taken from the first forward call of the method on an input equal to ``x``; if the method
never evaluates the clean batch, e.g. adversarial training, from an extra no-grad forward in
eval mode), ``lr`` (the learning rate used in that epoch), ``epoch_time`` (s), ``step_time``
(mean wall-clock seconds per optimization step: method call, backward, clipping and optimizer
step, excluding data loading; the step ends with ``loss.item()``, which synchronises CUDA),
``grad_norm`` (mean total gradient norm before clipping, only when ``grad_clip`` is set),
``peak_mem_mb`` and ``mem_measure`` (see below), and the method's own logs averaged over the
epoch (sample-weighted; the loop's keys take precedence on a name clash).

Memory: on CUDA ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over the epoch (peak
memory held by tensors; reset at each epoch start), ``mem_measure="cuda_max_allocated"``.
On CPU it is the process's peak resident set size (``resource.getrusage(...).ru_maxrss``)
at the end of the epoch, a process-lifetime high-water mark, ``mem_measure="cpu_maxrss"``;
``peak_mem_delta_mb`` is how much that mark rose during the epoch (0 once an earlier
computation needed more).  These are coarse; the benchmarks measure cost per step precisely.

Method contract extensions (optional): ``method.replays`` (int, default 1) makes the loop take
that many consecutive optimizer steps on each batch (free adversarial training, Shafahi 2019);
a method with internal state across steps defines ``state_dict()`` / ``load_state_dict()``,
which the checkpoints then include; ``method.extras`` (a tuple of names, default empty) names
per-sample extras of the training set (e.g. ``"gaze"``, an attention map) that the loop loads
with each batch and passes as keyword arguments, ``method(model, x, y, gaze=...)`` (P3's
harmonization reads its attention map so).
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import (ConcatDataset, DataLoader, RandomSampler, SequentialSampler, Subset,
                              TensorDataset)

from . import cache as _cache
from .common import device_of

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Method", "CE", "TrainConfig", "train", "train_key", "cached_path", "is_cached",
           "dataset_identity", "crop_flip", "p3_imagenette", "p3_imagenette_params", "p3_cub",
           "p3_cub_params", "block_order", "OPTIMIZERS", "SCHEDULES", "AUGMENTS"]

# The code a trained model depends on: the loop, every method (its regularizers, attacks and
# attributions) and the model zoo, each with what it imports (``cache.source_hash``).
_TRAINING_CODE = ("robust_saliency.training", "robust_saliency.methods", "robust_saliency.models")


class Method:
    """A training method: a loss ``L(model, x, y) -> (loss, logs)``.

    ``name`` and ``hparams`` identify it in cache keys; ``logs`` is a dict of floats.
    """

    name = "method"
    extras = ()  # names of per-sample training-set extras passed to the call (module docstring)

    def __init__(self, **hparams: Any) -> None:
        self.hparams = dict(hparams)

    def __call__(self, model: torch.nn.Module, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{self.name}({args})"


class CE(Method):
    """Plain cross-entropy."""

    name = "ce"

    def __call__(self, model: torch.nn.Module, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.cross_entropy(model(x), y)
        return loss, {"ce": float(loss.detach())}


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step", "multistep")
AUGMENTS = ("none", "crop_flip", "p3_imagenette", "p3_cub", "block_order")
_AUGMENTS_WITH_EXTRAS = ("none", "p3_cub")  # the modes that move a method's extras with the image
# Fields that do not change the trained weights: left out of the cache key.
_NOT_IN_KEY = ("progress", "cache_dir", "device", "checkpoint", "threads")


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclasses.dataclass
class TrainConfig:
    """Settings of ``train`` (a plain dict with these keys is accepted too).

    ``schedule`` steps once per epoch: ``cosine`` anneals to 0 over ``num_epochs``; ``step``
    multiplies the lr by ``gamma`` every ``step_size`` epochs; ``multistep`` by ``gamma`` at
    each epoch in ``milestones``.  ``momentum`` is SGD's; ``grad_clip`` is a max total L2 norm
    (None = off).  ``device`` None = the model's current device.  ``checkpoint`` writes the
    per-epoch resume checkpoints when ``cache_dir`` is set.  ``deterministic`` turns on
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (and cuDNN determinism) for
    the call only; on CUDA also set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` before starting Python.
    ``threads`` sets torch's intra-op thread count for the call (None: the process's own); the
    count in effect enters the cache key, as 1 and 2 threads give different weights.
    ``augment="crop_flip"`` applies, per training sample and step, a random crop of the image
    zero-padded by ``crop_padding`` pixels on each side and a horizontal flip with probability
    1/2 (torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip``, P1's CIFAR
    recipe), drawn from a generator of (seed, epoch) so that runs repeat and resume exactly.
    ``augment="p3_imagenette"`` is P3's ImageNette training transform (peterant330/AdvGrad at
    3ead080, ``datasets.py`` lines 40-49, ``ImageNette_train``): per sample a rotation by an
    angle uniform in [-30, 30] degrees (nearest, fill 0, about the centre), a horizontal flip
    with probability 1/2 and a 5 x 5 Gaussian blur with sigma uniform in [0.1, 2]; its
    ``ColorJitter()`` without arguments is the identity, and its resize/crop to 224 and
    normalization are left out (images arrive at their final size; the model normalizes).
    ``augment="p3_cub"`` is P3's CUB transform (same file, lines 127-132 and 148-150,
    ``CUB_train``): the image resized bilinearly to 600/448 of its size, a random crop back to
    its size and a horizontal flip with probability 1/2; the method's extras of the image's
    spatial size (the gaze map, which the code concatenates to the image) get the same
    transform.  ``augment="block_order"`` is for BlockMNIST images (Shah et al. 2021; P4), a
    signal block and a null block stacked along H, (N, C, 2h, w): per sample it swaps the top
    and bottom halves with probability 1/2.  P4 (and Shah's code) draw the block order afresh
    each time a training sample is drawn, whereas our dataset fixes each image's order once;
    with that fixed random order the swap makes the order uniform and independent at every
    draw.  H must be even.  ``crop_flip``, ``p3_imagenette`` and ``block_order`` refuse
    methods with extras (a ``null_mask`` would not follow the swap).  The draws of every mode
    come from the (seed, epoch) generator, per sample; see ``p3_imagenette``, ``p3_cub`` and
    ``block_order``.
    """

    num_epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    step_size: int = 30
    augment: str = "none"
    crop_padding: int = 4
    grad_clip: float | None = None
    seed: int = 0
    deterministic: bool = True
    shuffle: bool = True
    cache_dir: str | None = None
    progress: bool = True
    device: str | None = None
    checkpoint: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        def bad(param, accepted):
            raise ValueError(f"{param}={getattr(self, param)!r} is not valid; accepted: {accepted}")

        if not _is_int(self.num_epochs) or self.num_epochs < 1:
            bad("num_epochs", "an int >= 1")
        if not _is_real(self.lr) or not self.lr > 0 or not math.isfinite(self.lr):
            bad("lr", "a finite float > 0")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", OPTIMIZERS)
        if not _is_real(self.weight_decay) or not self.weight_decay >= 0:
            bad("weight_decay", "a float >= 0")
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", "a float in [0, 1)")
        if self.schedule not in SCHEDULES:
            bad("schedule", SCHEDULES)
        ms = self.milestones
        if isinstance(ms, (list, tuple)) and all(_is_int(m) and m >= 1 for m in ms) \
                and list(ms) == sorted(set(ms)):
            self.milestones = tuple(int(m) for m in ms)
        else:
            bad("milestones", "a strictly increasing list of ints >= 1")
        if self.schedule == "multistep" and not self.milestones:
            bad("milestones", "a non-empty list of epochs when schedule='multistep'")
        if not _is_real(self.gamma) or not self.gamma > 0:
            bad("gamma", "a float > 0")
        if not _is_int(self.step_size) or self.step_size < 1:
            bad("step_size", "an int >= 1")
        if self.augment not in AUGMENTS:
            bad("augment", AUGMENTS)
        if not _is_int(self.crop_padding) or self.crop_padding < 0:
            bad("crop_padding", "an int >= 0")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or not self.grad_clip > 0):
            bad("grad_clip", "None or a float > 0")
        if not _is_int(self.seed) or self.seed < 0:
            bad("seed", "an int >= 0")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            bad("threads", "None or an int >= 1")
        for flag in ("deterministic", "shuffle", "progress", "checkpoint"):
            if not isinstance(getattr(self, flag), bool):
                bad(flag, "True or False")
        for num in ("lr", "weight_decay", "momentum", "gamma"):
            setattr(self, num, float(getattr(self, num)))
        if self.grad_clip is not None:
            self.grad_clip = float(self.grad_clip)
        self.num_epochs, self.step_size, self.seed = int(self.num_epochs), int(self.step_size), int(self.seed)
        self.crop_padding = int(self.crop_padding)

    @classmethod
    def make(cls, cfg: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
        """A ``TrainConfig`` from None, a dict or a TrainConfig, with ``overrides`` applied."""
        if cfg is None:
            base = {}
        elif isinstance(cfg, TrainConfig):
            base = dataclasses.asdict(cfg)
        elif isinstance(cfg, dict):
            base = dict(cfg)
        else:
            raise ValueError(f"cfg={cfg!r} is not valid; accepted: None, a dict or a TrainConfig")
        base.update(overrides)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(base) - set(names))
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; accepted: {names}")
        return cls(**base)


# ----------------------------------------------------------------------------------------------
# Cache key
# ----------------------------------------------------------------------------------------------

def _check_loader(loader):
    if not isinstance(loader, DataLoader):
        raise ValueError(f"loader={type(loader).__name__} is not valid; accepted: a "
                         f"torch.utils.data.DataLoader")
    if loader.batch_size is None:
        raise ValueError("loader.batch_size=None (a custom batch_sampler) is not supported; "
                         "accepted: a DataLoader built with batch_size=...")


def _data_identity(loader):
    """``dataset_identity`` of the loader's dataset."""
    return dataset_identity(loader.dataset)


def dataset_identity(dataset: torch.utils.data.Dataset, chunk: int = 256) -> dict[str, Any]:
    """What identifies ``dataset`` in cache keys: everything it yields, hashed with
    ``cache.config_hash``.

    A dataset with a ``fingerprint`` (every ``robust_saliency.data`` set) gives it; a ``Subset``
    its parent's identity and the indices; a ``TensorDataset`` a hash of its tensors; a
    ``ConcatDataset`` the identities of its parts; any other dataset a hash of every sample
    (read ``chunk`` samples at a time), so two datasets share an identity only if they yield
    the same items.
    """
    fp = getattr(dataset, "fingerprint", None)
    if fp is not None:
        return {"fingerprint": _cache.canonical(fp), "len": len(dataset)}
    if isinstance(dataset, Subset):
        return {"subset_of": dataset_identity(dataset.dataset, chunk),
                "indices": _cache.config_hash(torch.as_tensor(list(dataset.indices),
                                                              dtype=torch.long))}
    if isinstance(dataset, TensorDataset):
        return {"tensors": _cache.config_hash(list(dataset.tensors))}
    if isinstance(dataset, ConcatDataset):
        return {"concat": [dataset_identity(d, chunk) for d in dataset.datasets]}
    n = len(dataset)
    hashes = [_cache.config_hash([dataset[i] for i in range(j, min(j + chunk, n))])
              for j in range(0, n, chunk)]
    return {"content": _cache.config_hash(hashes), "len": n}


def _method_of(method):
    if isinstance(method, str):
        raise ValueError(f"method={method!r} is a name; accepted: a Method instance (build it by "
                         f"name with robust_saliency.methods.get({method!r}, **hparams))")
    if not (callable(method) and hasattr(method, "name") and hasattr(method, "hparams")):
        raise ValueError(f"method={method!r} is not valid; accepted: a Method instance "
                         f"(robust_saliency.methods.get(name, **hparams))")
    return method


def _key_material(model, method, loader, cfg):
    cfg_fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_KEY}
    return {
        "code": _cache.source_hash(*_TRAINING_CODE),
        "cfg": cfg_fields,
        "model": {"repr": repr(model), "init": _cache.config_hash(model.state_dict())},
        "method": {"name": method.name, "hparams": method.hparams,
                   "replays": int(getattr(method, "replays", 1))},
        "data": _data_identity(loader),
        "batch_size": loader.batch_size,
        "drop_last": bool(loader.drop_last),
        "threads": _threads(cfg),
    }


def _threads(cfg):
    """The torch threads a run of ``cfg`` computes with."""
    return torch.get_num_threads() if cfg.threads is None else cfg.threads


def train_key(model: torch.nn.Module, method: Method, loader: DataLoader,
              cfg: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> str:
    """The cache key of ``train(model, method, loader, cfg)``: a sha256 hex string.

    It covers the cfg fields (but ``progress``, ``cache_dir``, ``device``, ``checkpoint``;
    ``threads`` enters as the count in effect, ``cfg.threads`` or torch's own),
    ``repr(model)`` and a hash of its current (initial) state_dict, the method's name and
    hparams, the data identity, the batch size and drop_last, and the source of the code that
    trains (``cache.source_hash`` of the loop, the methods and the models, with their imports).
    """
    cfg = TrainConfig.make(cfg, **overrides)
    _check_loader(loader)
    method = _method_of(method)
    return _cache.config_hash(_key_material(model, method, loader, cfg))


# ----------------------------------------------------------------------------------------------
# RNG and determinism state
# ----------------------------------------------------------------------------------------------

def _get_rng_state():
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       int(np_state[2]), int(np_state[3]), float(np_state[4])),
             "random": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gauss))
    rs = state["random"]
    random.setstate((rs[0], tuple(rs[1]), rs[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA generators too


class _Determinism:
    """Context: ``torch.use_deterministic_algorithms(flag, warn_only=True)``, restored on exit."""

    def __init__(self, flag):
        self.flag = flag

    def __enter__(self):
        self.prev = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled(),
                     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if self.flag:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        return self

    def __exit__(self, *exc):
        enabled, warn_only, cudnn_det, cudnn_bench = self.prev
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_det
        torch.backends.cudnn.benchmark = cudnn_bench
        return False


def _epoch_generator(seed, epoch):
    """Generator of epoch ``epoch``'s shuffling order: a pure function of (seed, epoch)."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1))
    return g


def _augment_generator(seed, epoch):
    """Generator of epoch ``epoch``'s augmentation draws (a stream apart from the shuffling's)."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, 1]).generate_state(1, np.uint64)[0] >> 1))
    return g


def _check_images(x, mode):
    if x.dim() != 4:
        raise ValueError(f"augment={mode!r} needs image batches (N, C, H, W); got shape {tuple(x.shape)}")


def _crop_flip_at(x, i, j, flip, h, w):
    """Per sample n: the ``h x w`` window of ``x`` at row ``i[n]``, column ``j[n]``, flipped
    horizontally where ``flip[n]`` (``i``, ``j``, ``flip``: CPU tensors)."""
    rows = (i[:, None] + torch.arange(h)).to(x.device)
    cols = (j[:, None] + torch.arange(w)).to(x.device)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx = torch.arange(len(x), device=x.device)[:, None, None]
    return x[idx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per sample: a random ``H x W`` crop of ``x`` zero-padded by ``padding`` on each side, and
    a horizontal flip with probability 1/2 (``x``: (N, C, H, W)).  Offsets and flips are drawn
    on the CPU from ``generator``."""
    _check_images(x, "crop_flip")
    n, _, h, w = x.shape
    i = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    j = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return _crop_flip_at(F.pad(x, (padding, padding, padding, padding)), i, j, flip, h, w)


def p3_imagenette_params(n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The draws of ``p3_imagenette`` for ``n`` samples, on the CPU from ``generator``:
    ``angle`` (degrees, uniform in [-30, 30]), ``flip`` (bool, probability 1/2) and ``sigma``
    (uniform in [0.1, 2]), each of shape (n,)."""
    angle = torch.empty(n).uniform_(-30.0, 30.0, generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    sigma = torch.empty(n).uniform_(0.1, 2.0, generator=generator)
    return {"angle": angle, "flip": flip, "sigma": sigma}


def p3_imagenette(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """P3's ImageNette augmentation of ``x`` (N, C, H, W) in [0, 1] (``TrainConfig``): per sample
    torchvision's ``rotate(angle, NEAREST, fill=0)``, ``hflip`` if drawn and
    ``gaussian_blur([5, 5], [sigma, sigma])`` (``RandomRotation(30)``, ``RandomHorizontalFlip()``,
    ``GaussianBlur(5)``), with ``p3_imagenette_params``' draws; ``ColorJitter()`` is the identity.
    Clamped to [0, 1], which only undoes the blur's rounding (a few ulps)."""
    from torchvision.transforms import functional as TF

    _check_images(x, "p3_imagenette")
    p = p3_imagenette_params(len(x), generator)
    out = []
    for xi, angle, flip, sigma in zip(x, p["angle"].tolist(), p["flip"].tolist(), p["sigma"].tolist()):
        xi = TF.rotate(xi, angle, TF.InterpolationMode.NEAREST, fill=[0.0] * x.shape[1])
        xi = TF.hflip(xi) if flip else xi
        out.append(TF.gaussian_blur(xi, [5, 5], [sigma, sigma]))
    return torch.stack(out).clamp_(0.0, 1.0) if out else x.clone()


def p3_cub_params(n: int, size: tuple[int, int], generator: torch.Generator | None = None) -> dict[str, Any]:
    """The draws of ``p3_cub`` for ``n`` images of ``size`` (H, W), on the CPU from ``generator``:
    ``resize`` (round(H 600/448), round(W 600/448)), crop offsets ``i``, ``j`` (uniform over
    the H x W windows of the resized image, as ``RandomCrop``) and ``flip`` (probability 1/2)."""
    h, w = size
    big = (round(h * 600 / 448), round(w * 600 / 448))
    i = torch.randint(0, big[0] - h + 1, (n,), generator=generator)
    j = torch.randint(0, big[1] - w + 1, (n,), generator=generator)
    return {"resize": big, "i": i, "j": j, "flip": torch.rand(n, generator=generator) < 0.5}


def p3_cub(x: torch.Tensor, generator: torch.Generator | None = None,
           extras: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """P3's CUB augmentation (``TrainConfig``) of ``x`` (N, C, H, W) in [0, 1] and of ``extras``:
    torchvision's bilinear ``resize`` (without antialiasing, as ``Resize`` did on tensors in the
    code's torchvision 0.13) to ``p3_cub_params``' size, the drawn H x W crop and flip.  Each
    extra (N, ..., H, W) goes through with the image as extra channels, like the code's gaze
    channel (computed in ``x``'s dtype, rounded back for an integer dtype); other extras pass
    unchanged.  Returns ``(x, extras)``; ``x`` clamped to [0, 1] (bilinear rounding only)."""
    from torchvision.transforms import functional as TF

    _check_images(x, "p3_cub")
    extras = dict(extras or {})
    n, c, h, w = x.shape
    moved = [k for k, v in extras.items() if v.dim() >= 3 and len(v) == n and v.shape[-2:] == x.shape[-2:]]
    parts = [x] + [extras[k].reshape(n, -1, h, w).to(x.dtype) for k in moved]
    p = p3_cub_params(n, (h, w), generator)
    big = TF.resize(torch.cat(parts, 1), list(p["resize"]), TF.InterpolationMode.BILINEAR, antialias=False)
    big = _crop_flip_at(big, p["i"], p["j"], p["flip"], h, w)
    for k, part in zip(moved, big[:, c:].split([q.shape[1] for q in parts[1:]], 1)):
        v = extras[k]
        extras[k] = (part if v.dtype.is_floating_point else part.round()).to(v.dtype).reshape(v.shape)
    return big[:, :c].clamp_(0.0, 1.0), extras


def block_order(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """BlockMNIST's random block order (``TrainConfig``): per sample of ``x`` (N, C, 2h, w),
    the top and bottom halves along H swapped with probability 1/2, i.e. swapped samples become
    ``torch.cat([x[:, :, h:], x[:, :, :h]], 2)``.  The swaps are one draw
    ``torch.rand(N, generator=generator) < 0.5`` on the CPU.  H must be even."""
    _check_images(x, "block_order")
    if x.shape[2] % 2:
        raise ValueError(f"augment='block_order' needs an even height H (two stacked blocks of "
                         f"h rows, (N, C, 2h, W)); got shape {tuple(x.shape)}")
    h = x.shape[2] // 2
    swap = torch.rand(len(x), generator=generator) < 0.5
    swapped = torch.cat([x[:, :, h:], x[:, :, :h]], 2)
    return torch.where(swap.to(x.device)[:, None, None, None], swapped, x)


def _augment(cfg, x, extra, generator):
    """``(x, extra)`` of a batch augmented as ``cfg.augment`` says (not "none")."""
    if cfg.augment == "crop_flip":
        return crop_flip(x, cfg.crop_padding, generator), extra
    if cfg.augment == "p3_imagenette":
        return p3_imagenette(x, generator), extra
    if cfg.augment == "block_order":
        return block_order(x, generator), extra
    return p3_cub(x, generator, extra)


def _epoch_loader(loader, cfg, epoch, extras=()):
    g = _epoch_generator(cfg.seed, epoch)
    ds = _WithExtras(loader.dataset, extras) if extras else loader.dataset
    sampler = RandomSampler(ds, generator=g) if cfg.shuffle else SequentialSampler(ds)
    return DataLoader(ds, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn, generator=g,
                      persistent_workers=False)


# ----------------------------------------------------------------------------------------------
# Optimizer, schedule, measurements
# ----------------------------------------------------------------------------------------------

def _make_optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _make_scheduler(optimizer, cfg):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.num_epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones),
                                                    gamma=cfg.gamma)
    return None


def _maxrss_mb():
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10  # bytes vs KiB


def _resolve_device(model, cfg):
    """Where ``train`` runs: ``cfg.device``, or for None the model's current device (``TrainConfig``
    documents it; a model without parameters or buffers: the CPU).  Not a device policy: the one
    decision "cuda if available" is ``profiles.resolve_device``, which ``profiles.train_config``
    (and so ``runs.fit``) has already applied, so a notebook's runs never get None here."""
    if cfg.device is not None:
        return torch.device(cfg.device)
    return device_of(model, default="cpu")


class _CleanAccuracy:
    """Forward hook: the number of correct predictions of the first model call on ``x``."""

    def __init__(self, model):
        self.handle = model.register_forward_hook(self)
        self.x = self.y = self.correct = None

    def start(self, x, y):
        self.x, self.y, self.correct = x, y, None

    def __call__(self, module, args, out):
        if self.correct is not None or self.x is None or not args or not torch.is_tensor(out):
            return
        inp = args[0]
        if torch.is_tensor(inp) and inp.shape == self.x.shape and torch.equal(inp.detach(), self.x):
            self.correct = _n_correct(out.detach(), self.y)

    def close(self):
        self.handle.remove()


def _n_correct(logits, y):
    if logits.dim() == 1 or logits.shape[1] == 1:
        pred = (logits.reshape(-1) > 0).long()
    else:
        pred = logits.argmax(1)
    return int((pred == y.reshape(-1)).sum())


def _split_batch(batch, extras=()):
    """(x, y, {name: tensor}) of a batch ``(x, y, *extras)``."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2 + len(extras):
        return batch[0], batch[1], dict(zip(extras, batch[2:2 + len(extras)]))
    raise ValueError(f"a batch must be a tuple (x, y, ...); got {type(batch).__name__}")


class _WithExtras(torch.utils.data.Dataset):
    """The items ``(x, y)`` of ``dataset`` followed by its per-sample extras ``names``."""

    def __init__(self, dataset, names):
        self.dataset, self.names = dataset, tuple(names)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i][:2]
        return (x, y, *(getattr(self.dataset, n)[i] for n in self.names))


def _check_extras(method, loader, cfg):
    names = tuple(getattr(method, "extras", ()))
    if not names:
        return names
    have = tuple(getattr(loader.dataset, "extras", ()))
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"method {method!r} needs the training set's extras {list(names)}; the dataset "
                         f"{type(loader.dataset).__name__} has {list(have)} (missing {missing})")
    if cfg.augment not in _AUGMENTS_WITH_EXTRAS:
        raise ValueError(f"augment={cfg.augment!r} is not valid with method {method.name!r}, whose extras "
                         f"{list(names)} would not follow the augmentation; accepted: "
                         f"{_AUGMENTS_WITH_EXTRAS}")
    return names


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

def _paths(cfg, method, key):
    if cfg.cache_dir is None:
        return None, None
    folder = Path(cfg.cache_dir).expanduser() / "models"
    stem = f"{method.name}-{key[:32]}"
    return folder / f"{stem}.pt", folder / f"{stem}.ckpt"


def cached_path(method: Method, cfg: TrainConfig | dict[str, Any], key: str) -> Path | None:
    """Where ``train`` keeps the weights of the run with cache key ``key`` (None without a
    ``cache_dir``)."""
    return _paths(TrainConfig.make(cfg), method, key)[0]


def is_cached(path: str | Path | None, key: str) -> bool:
    """Whether ``path`` holds intact weights saved under ``key``."""
    if path is None:
        return False
    saved = _cache.load_verified(path)
    return saved is not None and saved.get("key") == key


def _finish(model, history, info):
    model.eval()
    model.train_history = history
    model.train_info = info
    return model


def train(model: torch.nn.Module, method: Method, loader: DataLoader,
          cfg: TrainConfig | dict[str, Any] | None = None, *,
          callback: Callable[[int, dict[str, Any]], object] | None = None,
          **overrides: Any) -> torch.nn.Module:
    """Train ``model`` in place with ``method`` on ``loader``; return it (cached, resumable).

    ``method``: a ``Method`` (``methods.get(name, **hparams)``); ``cfg``: a ``TrainConfig``, a dict or
    None, updated with ``overrides`` (e.g. ``num_epochs=3``).  ``callback(epoch, record)`` is
    called after each epoch (after its checkpoint is written); an exception there stops
    training and a rerun resumes.  See the module docstring for the history and the cache.
    """
    cfg = TrainConfig.make(cfg, **overrides)
    _check_loader(loader)
    method = _method_of(method)
    _check_extras(method, loader, cfg)
    device = _resolve_device(model, cfg)
    material = _key_material(model, method, loader, cfg)
    key = _cache.config_hash(material)
    final_path, ckpt_path = _paths(cfg, method, key)
    model.to(device)

    if final_path is not None:
        saved = _cache.load_verified(final_path)
        if saved is not None and saved.get("key") == key:
            model.load_state_dict(saved["model"])
            return _finish(model, saved["history"], {"key": key, "path": str(final_path),
                                                     "from_cache": True, "resumed_from_epoch": 0})

    caller_rng, caller_threads = _get_rng_state(), torch.get_num_threads()
    try:
        torch.set_num_threads(_threads(cfg))
        with _Determinism(cfg.deterministic):
            history, resumed = _run(model, method, loader, cfg, device, key, ckpt_path, callback)
    finally:
        _set_rng_state(caller_rng)
        torch.set_num_threads(caller_threads)

    if final_path is not None:
        _cache.atomic_save({"key": key, "material": json.dumps(_cache.canonical(material)),
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "history": history, "method": repr(method),
                            "torch": str(torch.__version__)}, final_path)
        if ckpt_path is not None:
            ckpt_path.unlink(missing_ok=True)
    return _finish(model, history, {"key": key, "path": None if final_path is None else str(final_path),
                                    "from_cache": False, "resumed_from_epoch": resumed})


def _run(model, method, loader, cfg, device, key, ckpt_path, callback):
    optimizer = _make_optimizer(model, cfg)
    scheduler = _make_scheduler(optimizer, cfg)
    start, history = 0, []
    ckpt = _cache.load_verified(ckpt_path) if ckpt_path is not None else None
    if ckpt is not None and ckpt.get("key") == key:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if hasattr(method, "load_state_dict") and ckpt.get("method") is not None:
            method.load_state_dict(ckpt["method"])
        _set_rng_state(ckpt["rng"])
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
    else:
        _seed_all(cfg.seed)

    replays = int(getattr(method, "replays", 1))
    extras = tuple(getattr(method, "extras", ()))  # checked by train (_check_extras)
    steps_per_epoch = len(_epoch_loader(loader, cfg, 0)) * replays
    params = [p for p in model.parameters() if p.requires_grad]
    on_cuda = device.type == "cuda"
    from tqdm import tqdm

    bar = tqdm(total=cfg.num_epochs * steps_per_epoch, initial=start * steps_per_epoch,
               desc=f"train {method.name}", file=sys.stderr, disable=not cfg.progress,
               dynamic_ncols=True)
    acc_hook = _CleanAccuracy(model)
    try:
        for epoch in range(start, cfg.num_epochs):
            record = _train_epoch(model, method, _epoch_loader(loader, cfg, epoch, extras), optimizer,
                                  cfg, device, params, replays, on_cuda, acc_hook, bar, epoch)
            if scheduler is not None:
                scheduler.step()
            history.append(record)
            if ckpt_path is not None and cfg.checkpoint:
                state = {"key": key, "epoch": epoch + 1, "history": history,
                         "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                         "optimizer": optimizer.state_dict(),
                         "scheduler": None if scheduler is None else scheduler.state_dict(),
                         "method": method.state_dict() if hasattr(method, "state_dict") else None,
                         "rng": _get_rng_state()}
                _cache.atomic_save(state, ckpt_path)
            if callback is not None:
                callback(epoch + 1, record)
    finally:
        acc_hook.close()
        bar.close()
    return history, start


def _train_epoch(model, method, epoch_loader, optimizer, cfg, device, params, replays, on_cuda,
                 acc_hook, bar, epoch):
    lr = optimizer.param_groups[0]["lr"]
    sums, n_seen, n_correct, n_acc = {}, 0, 0, 0
    loss_sum, step_times, grad_norms = 0.0, [], []
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _maxrss_mb()
    t_epoch = time.perf_counter()
    aug = _augment_generator(cfg.seed, epoch) if cfg.augment != "none" else None
    for step, batch in enumerate(epoch_loader):
        x, y, extra = _split_batch(batch, getattr(method, "extras", ()))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        extra = {k: v.to(device, non_blocking=True) for k, v in extra.items()}
        if aug is not None:
            x, extra = _augment(cfg, x, extra, aug)
        n = len(y)
        for _ in range(replays):
            model.train()
            t0 = time.perf_counter()
            acc_hook.start(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss, logs = method(model, x, y, **extra)
            loss.backward()
            if cfg.grad_clip is not None:
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)))
            optimizer.step()
            loss_value = float(loss.item())
            step_times.append(time.perf_counter() - t0)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"non-finite loss {loss_value} in epoch {epoch + 1}, "
                                         f"step {step + 1} of method {method!r}")
            correct = acc_hook.correct
            acc_hook.start(None, None)
            if correct is None:
                model.eval()
                with torch.no_grad():
                    correct = _n_correct(model(x), y)
                model.train()
            loss_sum += loss_value * n
            n_seen += n
            n_correct += correct
            n_acc += n
            for k, v in (logs or {}).items():
                try:
                    sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) * n
                except (TypeError, ValueError):
                    pass
            bar.update(1)
            if cfg.progress:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / n_seen:.4f}",
                                acc=f"{n_correct / n_acc:.3f}", refresh=False)
    if n_seen == 0:
        raise ValueError("the loader yielded no batch (empty dataset, or drop_last with "
                         "fewer samples than batch_size)")
    record = {k: v / n_seen for k, v in sums.items()}
    record.update({"epoch": epoch + 1, "loss": loss_sum / n_seen, "accuracy": n_correct / n_acc,
                   "lr": lr, "epoch_time": time.perf_counter() - t_epoch,
                   "step_time": float(np.mean(step_times))})
    if grad_norms:
        record["grad_norm"] = float(np.mean(grad_norms))
    if on_cuda:
        record["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        record["mem_measure"] = "cuda_max_allocated"
    else:
        rss1 = _maxrss_mb()
        record["peak_mem_mb"] = rss1
        record["peak_mem_delta_mb"] = rss1 - rss0
        record["mem_measure"] = "cpu_maxrss"
    return record

