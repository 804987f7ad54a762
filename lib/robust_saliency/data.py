"""Datasets (SPEC section 3): embedded datasets generated with a seed, and real-dataset loaders.

``load(name, split, data_root=None, **kw)`` is the one entry point.

Embedded (no network, no files): ``toy2d`` (P1 Fig. 1), ``digits`` (scikit-learn's bundled
8x8 digits, upsampled), ``block_digits`` (BlockMNIST of Shah et al. 2021 on ``digits``, P4
Sec. 7.1), ``shapes`` (after P3's synthesized hierarchy of circular, rectangular and tailed
objects; stands in for CIFAR-10) and ``spurious_shapes`` (Waterbirds-like group shift, P4
Sec. 7.2).  They return an :class:`ArrayDataset` whose tensors are in memory:

    x (N, C, H, W) float32 in [0, 1]   (toy2d: (N, 2) raw coordinates)
    y (N,) long, num_classes, in_shape (C, H, W), classes, mean, std, fingerprint
    masks (N, 1, H, W) bool     shapes, spurious_shapes: pixels of the (visible) object
    null_mask (N, 1, 2H, H) bool block_digits, block_mnist: True on the null block
    groups (N,) long            spurious_shapes: 2 * y + background (0 land, 1 water);
                                majority groups are 0 and 3, as in Waterbirds
    background (N,) long        shapes: 0 dark, 1 blurred, 2 noisy; spurious_shapes: 0 land, 1 water

Every dataset is a :class:`BaseDataset`: labels ``y`` (alias ``targets``), per-sample extras as
attributes, ``take``/``subset``, and a ``fingerprint`` (``cache.config_hash`` of ``identity()``:
the samples or file paths, the labels, every extra, the image size) that keys the model and
evaluation caches.

Every embedded dataset is a pure function of its arguments (same arguments give bit-identical
tensors); train and test come from different seed streams.  Generated data is cached in memory
(``functools.lru_cache``) and, with ``cache_dir=...``, on disk (atomic write).

Real (``data_root`` required, never downloads): ``mnist``, ``block_mnist``, ``cifar10``,
``cifar100``, ``svhn``, ``imagenette``, ``imagenet100``, ``celeba``, ``waterbirds``.  They yield
``(x, y)`` with x a float32 tensor in [0, 1]; ``celeba`` and ``waterbirds`` also carry
``groups``.  Missing files raise ``FileNotFoundError`` saying which files to put where
(see ``data/README.md``).
"""
import csv
import functools
import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import cache as _cache

__all__ = ["load", "get", "NAMES", "EMBEDDED", "REAL", "SPLITS", "BaseDataset", "ArrayDataset",
           "UInt8ImageDataset", "ImageFileDataset", "null_block", "SHAPES_CLASSES"]

EMBEDDED = ("toy2d", "digits", "block_digits", "shapes", "spurious_shapes")
REAL = ("mnist", "block_mnist", "cifar10", "cifar100", "svhn", "imagenette", "imagenet100",
        "celeba", "waterbirds")
NAMES = EMBEDDED + REAL
SPLITS = ("train", "test")

# Bump when a generator changes, so that on-disk caches of generated tensors are not reused.
_GENERATOR_VERSION = "1"

SHAPES_CLASSES = ("disk", "ring", "half_disk", "square", "wide_bar", "tall_bar", "hollow_frame",
                  "disk_tail", "square_tail", "ring_tail")
SHAPES_FAMILIES = {"circular": (0, 1, 2), "rectangular": (3, 4, 5, 6), "tailed": (7, 8, 9)}


# ----------------------------------------------------------------------------------------------
# Dataset classes
# ----------------------------------------------------------------------------------------------

def _subset_indices(num, n, seed):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= num:
        raise ValueError(f"n={n!r} is not valid; accepted: an int in [1, {num}]")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num, generator=g)[: int(n)].sort().values


class BaseDataset(Dataset):
    """What every dataset here shares: labels ``y`` (alias ``targets``), ``classes``,
    ``num_classes``, ``name``, ``split``, ``in_shape``, ``mean``, ``std``, per-sample extras
    (``masks``, ``groups``, ... as attributes), ``take``/``subset``, and a ``fingerprint``.

    ``fingerprint`` is ``cache.config_hash(self.identity())``: it covers what the dataset holds
    (the samples, or the files they are read from, the labels, every extra, the image size), so
    two datasets share it only if they yield the same items.  It is recomputed whenever one of
    the held tensors is replaced or edited in place (tracked through ``Tensor._version``).
    """

    def __init__(self, y, *, classes, name="", split="", in_shape, mean=None, std=None,
                 extras=None):
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.name, self.split = name, split
        self.in_shape = tuple(in_shape)
        self.mean, self.std = mean, std
        self._fp_memo = None
        self._extra_names = tuple(extras or ())
        for key, value in (extras or {}).items():
            if len(value) != len(self.y):
                raise ValueError(f"extra {key!r} has {len(value)} rows, y has {len(self.y)}")
            setattr(self, key, value)

    @property
    def targets(self):
        """The labels (torchvision's name for ``y``)."""
        return self.y

    @targets.setter
    def targets(self, value):
        self.y = value

    @property
    def extras(self):
        """Names of the per-sample extras (e.g. ``masks``, ``null_mask``, ``groups``)."""
        return self._extra_names

    def _extra_tensors(self):
        return {k: getattr(self, k) for k in self._extra_names}

    def __len__(self):
        return len(self.y)

    def identity(self):
        """Everything that determines the items (and the extras): the input of ``fingerprint``."""
        return {"type": type(self).__name__, "name": self.name, "split": self.split,
                "classes": self.classes, "in_shape": self.in_shape, "mean": self.mean,
                "std": self.std, "y": self.y, "extras": self._extra_tensors(),
                **self._content()}

    def _content(self):
        raise NotImplementedError

    @property
    def fingerprint(self):
        """``cache.config_hash(self.identity())``, memoized until an attribute it reads is
        replaced or a tensor it reads is edited in place."""
        ident = self.identity()
        leaves = [w for v in ident.values() for w in (v.values() if isinstance(v, dict) else [v])]
        state = [(v, getattr(v, "_version", None)) for v in leaves]
        memo = self._fp_memo
        if memo is None or len(memo[0]) != len(state) or any(
                a is not b or va != vb for (a, va), (b, vb) in zip(memo[0], state)):
            self._fp_memo = memo = (state, _cache.config_hash(ident))
        return memo[1]

    def take(self, idx):
        """Dataset of the rows ``idx`` (a 1-D index tensor), extras included."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        extras = {k: v[idx] for k, v in self._extra_tensors().items()}
        return self._take(idx, extras)

    def _take(self, idx, extras):
        raise NotImplementedError

    def subset(self, n, seed=0):
        """Seeded random subset of ``n`` rows (kept in their original order)."""
        return self.take(_subset_indices(len(self), n, seed))

    def _describe(self):
        return ""

    def __repr__(self):
        extras = "".join(f", {k}={tuple(v.shape)}" for k, v in self._extra_tensors().items())
        return (f"{type(self).__name__}({self.name!r}, {self.split!r}, n={len(self)}"
                f"{self._describe()}, num_classes={self.num_classes}{extras}, "
                f"fingerprint={self.fingerprint[:16]!r})")


class ArrayDataset(BaseDataset):
    """In-memory dataset of tensors: ``x``, ``y`` and optional per-sample extras (masks, groups, ...)."""

    def __init__(self, x, y, *, num_classes, classes, name="", split="", extras=None):
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows, y has {len(y)}")
        super().__init__(y, classes=classes, name=name, split=split, in_shape=x.shape[1:],
                         mean=tuple(float(v) for v in x.mean(dims)),
                         std=tuple(float(v) for v in x.std(dims)), extras=extras)
        if self.num_classes != int(num_classes):
            raise ValueError(f"num_classes={num_classes!r} but {len(self.classes)} class names")
        self.x = x

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def _content(self):
        return {"x": self.x}

    def _take(self, idx, extras):
        return ArrayDataset(self.x[idx], self.y[idx], num_classes=self.num_classes,
                            classes=self.classes, name=self.name, split=self.split,
                            extras=extras)

    def _describe(self):
        return f", x={tuple(self.x.shape)}"


def _resize(x, size):
    """Resize a (N, C, H, W) float batch to ``size`` x ``size`` (bilinear, antialiased)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp_(0, 1)


class UInt8ImageDataset(BaseDataset):
    """Real images held as uint8 ``data`` (N, C, H, W); items are float32 in [0, 1], resized to ``size``."""

    def __init__(self, data, targets, *, classes, name, split, size=None, mean=None, std=None,
                 extras=None):
        if len(data) != len(targets):
            raise ValueError(f"data has {len(data)} rows, targets has {len(targets)}")
        side = tuple(data.shape[-2:]) if size is None else (size, size)
        super().__init__(targets, classes=classes, name=name, split=split,
                         in_shape=(int(data.shape[1]),) + side, mean=mean, std=std,
                         extras=extras)
        self.data, self.size = data, size

    def __getitem__(self, i):
        x = self.data[i].float().div_(255)
        if self.size is not None:
            x = _resize(x[None], self.size)[0]
        return x, self.y[i]

    def _content(self):
        return {"data": self.data, "size": self.size}

    def _take(self, idx, extras):
        return UInt8ImageDataset(self.data[idx], self.y[idx], classes=self.classes,
                                 name=self.name, split=self.split, size=self.size,
                                 mean=self.mean, std=self.std, extras=extras)

    def _describe(self):
        return f", data={tuple(self.data.shape)}, size={self.size}"


class ImageFileDataset(BaseDataset):
    """Real images read from files: RGB, shorter side resized to ``size`` and centre-cropped, in [0, 1].

    Its identity holds every path (not the file contents: hashing an image folder would take
    minutes), the labels and the extras.
    """

    def __init__(self, paths, targets, *, classes, name, split, size=224, mean=None, std=None,
                 extras=None):
        paths = tuple(str(p) for p in paths)
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        super().__init__(targets, classes=classes, name=name, split=split,
                         in_shape=(3, size, size), mean=mean, std=std, extras=extras)
        self.paths, self.size = paths, size

    def __getitem__(self, i):
        from PIL import Image
        from torchvision.transforms import functional as TF

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB")
            img = TF.resize(img, self.size, antialias=True)
            img = TF.center_crop(img, [self.size, self.size])
            x = TF.pil_to_tensor(img).float().div_(255)
        return x, self.y[i]

    def _content(self):
        return {"paths": self.paths, "size": self.size}

    def _take(self, idx, extras):
        return ImageFileDataset([self.paths[j] for j in idx.tolist()], self.y[idx],
                                classes=self.classes, name=self.name, split=self.split,
                                size=self.size, mean=self.mean, std=self.std, extras=extras)

    def _describe(self):
        return f", size={self.size}"


# ----------------------------------------------------------------------------------------------
# Public entry point and parameter validation
# ----------------------------------------------------------------------------------------------

_EMBEDDED_PARAMS = {
    "toy2d": {"n": None, "seed": 0, "noise": 0.2},
    "digits": {"size": 16, "n": None, "seed": 0},
    "block_digits": {"size": 16, "n": None, "seed": 0, "order_seed": None},
    "shapes": {"size": 32, "n": None, "seed": 0},
    "spurious_shapes": {"size": 32, "n": None, "seed": 0, "p_major": 0.95},
}
_DEFAULT_N = {  # (train, test) sizes of the generated datasets
    "toy2d": (1000, 1000), "shapes": (10000, 2000), "spurious_shapes": (10000, 2000),
}


def load(name, split, data_root=None, **kw):
    """Load dataset ``name`` (one of ``NAMES``) for ``split`` in {"train", "test"} (SPEC section 3).

    Embedded keywords: ``n`` (size; for digits/block_digits a seeded subset), ``seed``,
    ``size`` (image side), ``cache_dir`` (on-disk cache of generated tensors), ``noise``
    (toy2d), ``p_major`` (spurious_shapes), ``order_seed`` (block_digits null-block order).
    Real keywords: ``size``, ``n`` and ``seed`` (seeded subset), and for celeba
    ``target_attr``/``spurious_attr``.
    """
    if name not in NAMES:
        raise ValueError(f"name={name!r} is not a known dataset; accepted: {NAMES}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; accepted: {SPLITS}")
    if name in EMBEDDED:
        return _load_embedded(name, split, **kw)
    if data_root is None:
        raise ValueError(f"data_root=None: dataset {name!r} is a real dataset and needs "
                         f"data_root (the folder holding it; see data/README.md); embedded "
                         f"datasets that need no files: {EMBEDDED}")
    return _REAL_LOADERS[name](Path(data_root).expanduser(), split, **kw)


get = load  # registry-style alias: ``data.get(name, split, ...)``


def _check_kw(name, kw, accepted):
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for dataset {name!r}; "
                         f"accepted: {tuple(sorted(accepted))}")


def _check_int(param, value, low, high=None):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{param}={value!r} is not valid; accepted: an int {rng}")


def _load_embedded(name, split, cache_dir=None, **kw):
    defaults = _EMBEDDED_PARAMS[name]
    _check_kw(name, kw, set(defaults) | {"cache_dir"})
    args = {**defaults, **kw}
    if args.get("n") is not None:
        _check_int("n", args["n"], 1)
    _check_int("seed", args["seed"], 0)
    if "size" in args:
        _check_int("size", args["size"], 8, 512)
    if name == "toy2d" and not (isinstance(args["noise"], (int, float)) and args["noise"] >= 0):
        raise ValueError(f"noise={args['noise']!r} is not valid; accepted: a float >= 0")
    if name == "spurious_shapes":
        p = args["p_major"]
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"p_major={p!r} is not valid; accepted: a float in [0, 1]")
        args["p_major"] = float(p)
    if name == "block_digits" and args["order_seed"] is not None:
        _check_int("order_seed", args["order_seed"], 0)
    if name in _DEFAULT_N and args["n"] is None:
        args["n"] = _DEFAULT_N[name][SPLITS.index(split)]
    if name == "digits" and args["n"] is None:
        args["seed"] = 0  # the seed only picks the n-subset: same data, same fingerprint
    key = tuple(sorted(args.items()))
    tensors, meta = _cached_generate(name, split, key, None if cache_dir is None
                                     else str(Path(cache_dir).expanduser()))
    # fresh tensor objects per call so that in-place edits by a caller never reach the cache
    tensors = {k: v.clone() for k, v in tensors.items()}
    x, y = tensors.pop("x"), tensors.pop("y")
    return ArrayDataset(x, y, num_classes=meta["num_classes"], classes=meta["classes"],
                        name=name, split=split, extras=tensors)


@functools.lru_cache(maxsize=16)
def _cached_generate(name, split, key, cache_dir):
    args = dict(key)
    style = {"shapes": _SHAPES_STYLE, "spurious_shapes": _SPURIOUS_STYLE}.get(name)
    path = None
    if cache_dir is not None:
        key_hash = _cache.config_hash({"name": name, "split": split, "style": style,
                                       "version": _GENERATOR_VERSION, **args})
        path = Path(cache_dir) / f"{name}-{split}-{key_hash[:16]}.pt"
        blob = _cache.load_verified(path)
        if blob is not None:
            return blob["tensors"], blob["meta"]
    tensors, meta = _GENERATORS[name](split, **args)
    meta = {**meta, "classes": list(meta["classes"])}
    if path is not None:
        _cache.atomic_save({"tensors": tensors, "meta": meta}, path)
    return tensors, meta


def _rng(name, split, seed):
    """Independent numpy stream per (dataset, split, seed): train and test never share draws."""
    tag = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return np.random.default_rng([int(seed), SPLITS.index(split), tag])


# ----------------------------------------------------------------------------------------------
# toy2d, digits, block_digits
# ----------------------------------------------------------------------------------------------

def _gen_toy2d(split, n, seed, noise):
    """Two interleaving moons with Gaussian noise (sklearn ``make_moons``), for P1 Fig. 1."""
    from sklearn.datasets import make_moons

    rs = int(_rng("toy2d", split, seed).integers(2**31 - 1))
    x, y = make_moons(n_samples=n, noise=noise, random_state=rs)
    return ({"x": torch.from_numpy(x.astype(np.float32)), "y": torch.from_numpy(y).long()},
            {"num_classes": 2, "classes": ("upper_moon", "lower_moon")})


_DIGITS_SPLIT_SEED = 0  # fixed: the digits train/test partition never depends on ``seed``


@functools.lru_cache(maxsize=1)
def _digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=0.2, stratify=d.target,
                              random_state=_DIGITS_SPLIT_SEED)
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), np.sort(tr), np.sort(te)


def _digits_arrays(split, size, n, seed):
    images, targets, tr, te = _digits_split()
    idx = tr if split == "train" else te
    x = torch.from_numpy(images[idx])[:, None]
    y = torch.from_numpy(targets[idx])
    if n is not None:
        keep = _subset_indices(len(y), n, seed)
        x, y = x[keep], y[keep]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    return x.contiguous(), y


def _gen_digits(split, size, n, seed):
    """scikit-learn digits (8x8, 0-16) scaled to [0, 1] and bilinearly upsampled to ``size``."""
    x, y = _digits_arrays(split, size, n, seed)
    return {"x": x, "y": y}, {"num_classes": 10, "classes": tuple(str(i) for i in range(10))}


def null_block(size):
    """The fixed BlockMNIST null block (Shah et al. 2021): a square outline with both diagonals, (size, size) in {0, 1}."""
    c = torch.arange(size, dtype=torch.float32)
    i, j = torch.meshgrid(c, c, indexing="ij")
    m = max(1, round(size / 8))  # inset of the outline
    t = max(1, round(size / 16))  # line thickness in pixels
    lo, hi = m, size - 1 - m
    inside = (i >= lo) & (i <= hi) & (j >= lo) & (j <= hi)
    edge = (i - lo < t) | (hi - i < t) | (j - lo < t) | (hi - j < t)
    diag = ((i - j).abs() < t) | ((i + j - (size - 1)).abs() < t)
    return (inside & (edge | diag)).float()


def _blockify(x, signal_top):
    """Stack a signal block and the null block into (N, C, 2H, H) images; returns (x, null_mask)."""
    n, c, h, _ = x.shape
    nb = null_block(h).expand(n, c, h, h)
    top = signal_top.view(n, 1, 1, 1)
    upper = torch.where(top, x, nb)
    lower = torch.where(top, nb, x)
    out = torch.cat([upper, lower], dim=2).contiguous()
    null_upper = (~signal_top).view(n, 1, 1, 1).expand(n, 1, h, h)
    null_mask = torch.cat([null_upper, ~null_upper], dim=2).contiguous()
    return out, null_mask


def _block_order(name, split, n, seed, order_seed):
    """Per-sample order: True if the signal block is on top (seeded; random per sample)."""
    rng = _rng(name + ":order", split, seed if order_seed is None else order_seed)
    return torch.from_numpy(rng.random(n) < 0.5)


def _gen_block_digits(split, size, n, seed, order_seed):
    """BlockMNIST on ``digits`` (P4 Sec. 7.1): signal and null block stacked vertically, (1, 2H, H)."""
    x, y = _digits_arrays(split, size, n, seed)
    top = _block_order("block_digits", split, len(y), seed, order_seed)
    xb, null_mask = _blockify(x, top)
    return ({"x": xb, "y": y, "null_mask": null_mask},
            {"num_classes": 10, "classes": tuple(str(i) for i in range(10))})


# ----------------------------------------------------------------------------------------------
# shapes and spurious_shapes: vectorised rendering with signed distance functions
# ----------------------------------------------------------------------------------------------

def _sd_box(u, v, cu, cv, hu, hv):
    """Exact signed distance to an axis-aligned box centred (cu, cv) with half sizes (hu, hv)."""
    qu = np.abs(u - cu) - hu
    qv = np.abs(v - cv) - hv
    outside = np.sqrt(np.maximum(qu, 0) ** 2 + np.maximum(qv, 0) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0)


def _sd_disk(u, v, cu, cv, r):
    return np.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r


def _sd_ring(u, v, cu, cv, r, half_width):
    return np.abs(np.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r) - half_width


def _sd_tail(u, v):
    return _sd_box(u, v, 0.78, 0.0, 0.52, _SHAPES_STYLE["tail"])


def _shape_sdf(k, u, v):
    """Signed distance (object units; the object spans about [-1, 1.3] x [-1, 1]) of class ``k``."""
    if k == 0:   # disk
        return _sd_disk(u, v, 0, 0, 1.0)
    if k == 1:   # ring
        return _sd_ring(u, v, 0, 0, 0.72, 0.28)
    if k == 2:   # half-disk, flat side down
        return np.maximum(_sd_disk(u, v, 0, 0.45, 1.1), v - 0.45)
    if k == 3:   # square
        return _sd_box(u, v, 0, 0, 0.8, 0.8)
    if k == 4:   # wide bar
        return _sd_box(u, v, 0, 0, 1.05, 0.42)
    if k == 5:   # tall bar
        return _sd_box(u, v, 0, 0, 0.42, 1.05)
    if k == 6:   # hollow frame
        return np.maximum(_sd_box(u, v, 0, 0, 0.9, 0.9), -_sd_box(u, v, 0, 0, 0.5, 0.5))
    if k == 7:   # disk + tail
        return np.minimum(_sd_disk(u, v, -0.3, 0, 0.72), _sd_tail(u, v))
    if k == 8:   # square + tail
        return np.minimum(_sd_box(u, v, -0.3, 0, 0.62, 0.62), _sd_tail(u, v))
    if k == 9:   # ring + tail
        return np.minimum(_sd_ring(u, v, -0.3, 0, 0.55, 0.22), _sd_tail(u, v))
    raise ValueError(f"shape class k={k!r} is not valid; accepted: 0..9")


def _randn(rng, shape):
    """Standard normal float32 array drawn by torch (fast), seeded from the numpy stream ``rng``."""
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return torch.randn(shape, generator=g).numpy()


def _grid(size):
    c = np.arange(size, dtype=np.float32) + 0.5
    return c[None, None, :], c[None, :, None]  # X (1, 1, W), Y (1, H, 1)


def _render_shapes(rng, cls, size, scale_range, flip=True, rot_deg=25.0):
    """Coverage (N, H, W) in [0, 1] of one object per sample, class ``cls[i]``, anti-aliased."""
    n = len(cls)
    s = rng.uniform(*scale_range, n).astype(np.float32) * size          # pixels per object unit
    theta = np.deg2rad(rng.uniform(-rot_deg, rot_deg, n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32) if flip \
        else np.ones(n, np.float32)
    # keep the object's extent ([-1, 1.3] x [-1, 1.05] object units, rotated) inside the image
    reach = 1.35 * s + 1.0
    cx = rng.uniform(reach, size - reach).astype(np.float32)
    cy = rng.uniform(reach, size - reach).astype(np.float32)
    X, Y = _grid(size)
    dx = X - cx[:, None, None]
    dy = Y - cy[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u = (dx * cos + dy * sin) / s[:, None, None] * sign[:, None, None]
    v = (-dx * sin + dy * cos) / s[:, None, None]
    sdf = np.empty((n, size, size), np.float32)
    for k in np.unique(cls):
        sel = cls == k
        sdf[sel] = _shape_sdf(int(k), u[sel], v[sel])
    cover = np.clip(0.5 - sdf * s[:, None, None], 0.0, 1.0)
    return cover, cx, cy, s


def _smooth_field(rng, n, size, cells, channels=3):
    """Low-frequency random field: a (cells x cells) uniform grid upsampled bicubically."""
    g = torch.from_numpy(rng.random((n, channels, cells, cells), dtype=np.float32))
    f = F.interpolate(g, size=(size, size), mode="bicubic", align_corners=False)
    return f.numpy().clip(0, 1)


# Difficulty knobs of ``shapes`` (tuned so that P1's lenet reaches roughly 85-95% test accuracy
# after ~10 epochs on 10k samples; changing them requires bumping _GENERATOR_VERSION).
_SHAPES_STYLE = {
    "scale": (0.22, 0.32),      # object unit in image sides (objects span ~2.3 units)
    "rot_deg": 20.0,            # rotation range +-
    "tail": 0.2,                # half width of the tail (object units)
    "clutter": 2,               # at most this many distractors (blobs, strokes)
    "occlusion": 0.08,          # probability of a partial occluder over the object
    "contrast": 0.5,            # minimal RGB distance of object colour to the background mean
    "noise": 0.03,              # global pixel noise std
    "noisy_bg_std": (0.06, 0.14),
    "blur_amp": 0.6,            # amplitude of the blurred colour field
}


def _bg_shapes(rng, kind, size):
    """Backgrounds of ``shapes``: 0 dark, 1 blurred (smooth colour field), 2 noisy; (N, 3, H, W)."""
    n = len(kind)
    out = np.empty((n, 3, size, size), np.float32)
    for b in range(3):
        sel = np.flatnonzero(kind == b)
        m = len(sel)
        if m == 0:
            continue
        if b == 0:
            base = rng.uniform(0.0, 0.22, (m, 3, 1, 1)).astype(np.float32)
            bg = base + 0.03 * _randn(rng, (m, 3, size, size))
        elif b == 1:
            amp = _SHAPES_STYLE["blur_amp"]
            bg = 0.5 - amp / 2 + amp * _smooth_field(rng, m, size, cells=4)
        else:
            base = rng.uniform(0.2, 0.8, (m, 3, 1, 1)).astype(np.float32)
            std = rng.uniform(*_SHAPES_STYLE["noisy_bg_std"], (m, 1, 1, 1)).astype(np.float32)
            bg = base + std * _randn(rng, (m, 3, size, size))
        out[sel] = bg
    return out


def _contrast_colour(rng, bg_mean, min_dist):
    """Random RGB colours at RGB distance >= ``min_dist`` (where reachable) from ``bg_mean``."""
    col = rng.random(bg_mean.shape, dtype=np.float32)
    for _ in range(3):  # push colours that are too close away from the background, then clip
        d = col - bg_mean
        dist = np.sqrt((d ** 2).sum(axis=1, keepdims=True))
        step = np.where(dist < min_dist, min_dist / np.maximum(dist, 1e-3), 1.0)
        col = np.clip(bg_mean + d * step, 0, 1).astype(np.float32)
    return col


def _segments_cover(rng, n, size, length, width):
    """Coverage (N, H, W) of one random line segment per sample."""
    X, Y = _grid(size)
    x0 = rng.uniform(0, size, n).astype(np.float32)[:, None, None]
    y0 = rng.uniform(0, size, n).astype(np.float32)[:, None, None]
    ang = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    ln = rng.uniform(*length, n).astype(np.float32)[:, None, None]
    ex, ey = np.cos(ang), np.sin(ang)
    px, py = X - x0, Y - y0
    t = np.clip(px * ex + py * ey, 0, ln)
    d = np.sqrt((px - t * ex) ** 2 + (py - t * ey) ** 2) - width / 2
    return np.clip(0.5 - d, 0, 1)


def _blobs_cover(rng, n, size, radius):
    """Coverage (N, H, W) of one random small disk per sample."""
    X, Y = _grid(size)
    x0 = rng.uniform(0, size, n).astype(np.float32)[:, None, None]
    y0 = rng.uniform(0, size, n).astype(np.float32)[:, None, None]
    r = rng.uniform(*radius, n).astype(np.float32)[:, None, None]
    d = np.sqrt((X - x0) ** 2 + (Y - y0) ** 2) - r
    return np.clip(0.5 - d, 0, 1)


def _add_clutter(rng, img, max_items, size):
    """Paint 0..max_items distractors (small blobs and short strokes) of random colours, in place."""
    n = len(img)
    scale = size / 32.0
    count = rng.integers(0, max_items + 1, n)
    for slot in range(max_items):
        active = np.flatnonzero(count > slot)
        is_seg = rng.random(len(active)) < 0.5
        seg, blob = active[is_seg], active[~is_seg]
        cover = np.empty((len(active), size, size), np.float32)
        cover[is_seg] = _segments_cover(rng, len(seg), size, (3 * scale, 8 * scale), 1.3 * scale)
        cover[~is_seg] = _blobs_cover(rng, len(blob), size, (0.8 * scale, 2.2 * scale))
        col = rng.random((len(active), 3, 1, 1), dtype=np.float32)
        a = cover[:, None]
        img[active] = img[active] * (1 - a) + a * col


def _occluders(rng, n, size, cx, cy, s, prob):
    """Coverage (N, H, W) of a rectangular patch over one side of some objects (prob ``prob``).

    The patch starts 0.15-0.7 object units from the centre, so the object's core stays visible.
    """
    X, Y = _grid(size)
    active = (rng.random(n) < prob).astype(np.float32)[:, None, None]
    ang = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    off = (rng.uniform(0.15, 0.7, n) * s).astype(np.float32)[:, None, None]
    depth = (rng.uniform(0.5, 1.2, n) * s).astype(np.float32)[:, None, None]
    half_w = (rng.uniform(0.6, 1.2, n) * s).astype(np.float32)[:, None, None]
    ex, ey = np.cos(ang), np.sin(ang)
    px, py = X - cx[:, None, None], Y - cy[:, None, None]
    t = px * ex + py * ey - off
    w = np.abs(-px * ey + py * ex)
    inside = np.minimum(np.minimum(t, depth - t), half_w - w)
    return np.clip(inside + 0.5, 0, 1) * active


def _composite(img, cover, col):
    """Alpha-composite colour ``col`` with coverage ``cover`` onto ``img`` in place."""
    a = cover[:, None]
    img *= 1 - a
    img += a * col
    return img


def _gen_shapes(split, size, n, seed):
    """10-class procedural objects after P3's synthesized dataset (SPEC 3): RGB images and object masks."""
    rng = _rng("shapes", split, seed)
    y = rng.integers(0, 10, n)
    background = rng.integers(0, 3, n)
    img = _bg_shapes(rng, background, size)
    st = _SHAPES_STYLE
    _add_clutter(rng, img, max_items=st["clutter"], size=size)
    cover, cx, cy, s = _render_shapes(rng, y, size, scale_range=st["scale"],
                                      rot_deg=st["rot_deg"])
    bg_mean = img.mean(axis=(2, 3), keepdims=True)
    col = _contrast_colour(rng, bg_mean, min_dist=st["contrast"])
    _composite(img, cover, col)
    occ = _occluders(rng, n, size, cx, cy, s, prob=st["occlusion"])
    occ_col = rng.random((n, 3, 1, 1), dtype=np.float32)
    _composite(img, occ, occ_col)
    img += st["noise"] * _randn(rng, img.shape)
    np.clip(img, 0, 1, out=img)
    visible = cover * (1 - occ)
    masks = visible[:, None] >= 0.5
    return ({"x": torch.from_numpy(img), "y": torch.from_numpy(y).long(),
             "masks": torch.from_numpy(masks), "background": torch.from_numpy(background).long()},
            {"num_classes": 10, "classes": SHAPES_CLASSES})


# Knobs of ``spurious_shapes``: the object (circular vs rectangular) must be learnable but
# harder than the background (bump _GENERATOR_VERSION when changing them).
_SPURIOUS_STYLE = {"scale": (0.22, 0.32), "rot_deg": 30.0, "contrast": 0.6, "noise": 0.04}


def _bg_places(rng, place, size):
    """spurious_shapes backgrounds: 0 land (noisy green-brown), 1 water (smooth blue-ish waves)."""
    n = len(place)
    out = np.empty((n, 3, size, size), np.float32)
    X, Y = _grid(size)
    land = np.flatnonzero(place == 0)
    if len(land):
        m = len(land)
        mix = rng.random((m, 1, 1, 1), dtype=np.float32)
        green = np.array([0.30, 0.45, 0.18], np.float32)[None, :, None, None]
        brown = np.array([0.45, 0.33, 0.18], np.float32)[None, :, None, None]
        base = mix * green + (1 - mix) * brown
        blotch = _smooth_field(rng, m, size, cells=8, channels=1) - 0.5
        noise = 0.09 * _randn(rng, (m, 3, size, size))
        out[land] = base * (1 + 0.5 * blotch) + noise
    water = np.flatnonzero(place == 1)
    if len(water):
        m = len(water)
        base = (np.array([0.18, 0.38, 0.68], np.float32)[None, :, None, None]
                + rng.uniform(-0.08, 0.08, (m, 3, 1, 1)).astype(np.float32))
        freq = rng.uniform(0.15, 0.35, (m, 1, 1)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, (m, 1, 1)).astype(np.float32)
        tilt = rng.uniform(-0.3, 0.3, (m, 1, 1)).astype(np.float32)
        waves = np.sin(freq * (Y + tilt * X) + phase)[:, None]
        smooth = _smooth_field(rng, m, size, cells=3, channels=1) - 0.5
        out[water] = base + 0.06 * waves + 0.12 * smooth
    return out


def _gen_spurious_shapes(split, size, n, seed, p_major):
    """Waterbirds-like group shift (P4 Sec. 7.2): y = circular (0) vs rectangular (1), place 0 land / 1 water.

    Training: exactly round(p_major * n_y) samples of class y sit on their majority place
    (place == y); test: balanced over the 4 groups (group = 2 * y + place).
    """
    rng = _rng("spurious_shapes", split, seed)
    if split == "train":
        y = np.repeat([0, 1], [n - n // 2, n // 2])
        place = y.copy()
        for c in (0, 1):
            idx = np.flatnonzero(y == c)
            minority = idx[: len(idx) - int(round(p_major * len(idx)))]
            place[minority] = 1 - c
    else:
        groups = np.arange(n) % 4
        y, place = groups // 2, groups % 2
    perm = rng.permutation(n)
    y, place = y[perm], place[perm]
    fam = np.where(y == 0, rng.choice(SHAPES_FAMILIES["circular"], n),
                   rng.choice(SHAPES_FAMILIES["rectangular"], n))
    img = _bg_places(rng, place, size)
    st = _SPURIOUS_STYLE
    cover, cx, cy, s = _render_shapes(rng, fam, size, scale_range=st["scale"], flip=False,
                                      rot_deg=st["rot_deg"])
    bg_mean = img.mean(axis=(2, 3), keepdims=True)
    col = _contrast_colour(rng, bg_mean, min_dist=st["contrast"])
    _composite(img, cover, col)
    img += st["noise"] * _randn(rng, img.shape)
    np.clip(img, 0, 1, out=img)
    masks = cover[:, None] >= 0.5
    yt = torch.from_numpy(y).long()
    pt = torch.from_numpy(place).long()
    return ({"x": torch.from_numpy(img), "y": yt, "masks": torch.from_numpy(masks),
             "groups": 2 * yt + pt, "background": pt},
            {"num_classes": 2, "classes": ("circular", "rectangular")})


_GENERATORS = {"toy2d": _gen_toy2d, "digits": _gen_digits, "block_digits": _gen_block_digits,
               "shapes": _gen_shapes, "spurious_shapes": _gen_spurious_shapes}


# ----------------------------------------------------------------------------------------------
# Real datasets (never downloaded)
# ----------------------------------------------------------------------------------------------

_MEAN_STD = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _missing(name, data_root, missing, where, hint):
    """FileNotFoundError that says which files are absent and where to put them."""
    shown = ", ".join(str(m) for m in missing[:6]) + (" ..." if len(missing) > 6 else "")
    return FileNotFoundError(
        f"{name}: missing {shown} under {where}. {hint} (data_root={str(data_root)!r}; "
        f"nothing is downloaded; see data/README.md)")


def _real_kw(name, kw, extra=()):
    _check_kw(name, kw, {"size", "n", "seed", *extra})
    size, n, seed = kw.get("size"), kw.get("n"), kw.get("seed", 0)
    if size is not None:
        _check_int("size", size, 8, 4096)
    if n is not None:
        _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    return size, n, seed


def _maybe_subset(ds, n, seed):
    return ds if n is None else ds.subset(n, seed)


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _mnist_tensors(data_root, split, name="mnist"):
    raw = data_root / "MNIST" / "raw"
    # torchvision's MNIST checks all four files whichever split is asked for
    missing = [f for pair in _MNIST_FILES.values() for f in pair if not (raw / f).is_file()]
    if missing:
        raise _missing(name, data_root, missing, raw,
                       "Put all four uncompressed MNIST idx files (gunzip the .gz downloads) "
                       "in <data_root>/MNIST/raw/, the torchvision layout")
    from torchvision.datasets import MNIST

    ds = MNIST(str(data_root), train=(split == "train"), download=False)
    return ds.data, ds.targets


def _load_mnist(data_root, split, **kw):
    """MNIST via torchvision (``<data_root>/MNIST/raw/*-ubyte``), 1 x 28 x 28."""
    size, n, seed = _real_kw("mnist", kw)
    data, targets = _mnist_tensors(data_root, split)
    ds = UInt8ImageDataset(data[:, None], targets, classes=[str(i) for i in range(10)],
                           name="mnist", split=split, size=size, mean=_MEAN_STD["mnist"][0],
                           std=_MEAN_STD["mnist"][1])
    return _maybe_subset(ds, n, seed)


def _load_block_mnist(data_root, split, **kw):
    """BlockMNIST (Shah et al. 2021; P4 Sec. 7.1) on real MNIST: (1, 2H, H) with ``null_mask``."""
    size, n, seed = _real_kw("block_mnist", kw, extra=("order_seed",))
    order_seed = kw.get("order_seed")
    data, targets = _mnist_tensors(data_root, split, "block_mnist")
    idx = torch.arange(len(targets)) if n is None else _subset_indices(len(targets), n, seed)
    x = _resize(data[idx, None].float().div_(255), size)
    y = targets[idx].long()
    top = _block_order("block_mnist", split, len(y), seed, order_seed)
    xb, null_mask = _blockify(x, top)
    return ArrayDataset(xb, y, num_classes=10, classes=[str(i) for i in range(10)],
                        name="block_mnist", split=split,
                        extras={"null_mask": null_mask})


def _unpickle(path):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                        "test": ["test_batch"]},
                "labels", ("batches.meta", "label_names"),
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]},
                 "fine_labels", ("meta", "fine_label_names"),
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def _load_cifar(name, data_root, split, **kw):
    """CIFAR-10/100 from the python pickle batches (the layout of the official tarballs)."""
    size, n, seed = _real_kw(name, kw)
    folder, files, label_key, (meta_file, meta_key), url = _CIFAR[name]
    root = data_root / folder
    missing = [f for f in files[split] if not (root / f).is_file()]
    if missing:
        raise _missing(name, data_root, missing, root,
                       f"Put the extracted '{folder}/' folder (from {url}) under <data_root>")
    data, labels = [], []
    for f in files[split]:
        d = _unpickle(root / f)
        data.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(d[label_key])
    num = 10 if name == "cifar10" else 100
    classes = [str(i) for i in range(num)]
    if (root / meta_file).is_file():
        classes = list(_unpickle(root / meta_file)[meta_key])
    ds = UInt8ImageDataset(torch.from_numpy(np.concatenate(data)), labels, classes=classes,
                           name=name, split=split, size=size, mean=_MEAN_STD[name][0],
                           std=_MEAN_STD[name][1])
    return _maybe_subset(ds, n, seed)


def _load_svhn(data_root, split, **kw):
    """SVHN cropped digits from ``{train,test}_32x32.mat`` (label 10 means digit 0)."""
    size, n, seed = _real_kw("svhn", kw)
    fname = f"{split}_32x32.mat"
    candidates = [data_root / "svhn" / fname, data_root / fname]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise _missing("svhn", data_root, [fname], data_root / "svhn",
                       "Put train_32x32.mat and test_32x32.mat (from "
                       "http://ufldl.stanford.edu/housenumbers/) in <data_root>/svhn/")
    from scipy.io import loadmat

    mat = loadmat(str(path))
    data = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)
    labels = mat["y"].astype(np.int64).reshape(-1) % 10
    ds = UInt8ImageDataset(torch.from_numpy(data), labels, classes=[str(i) for i in range(10)],
                           name="svhn", split=split, size=size, mean=_MEAN_STD["svhn"][0],
                           std=_MEAN_STD["svhn"][1])
    return _maybe_subset(ds, n, seed)


def _load_imagefolder(name, data_root, split, **kw):
    """ImageNette / ImageNet-100 in torchvision ImageFolder layout: ``<data_root>/<name>/{train,val}/<class>/*``."""
    size, n, seed = _real_kw(name, kw)
    size = 224 if size is None else size
    folder = data_root / name / ("train" if split == "train" else "val")
    has_classes = folder.is_dir() and any(p.is_dir() for p in folder.iterdir())
    if not has_classes:
        src = ("imagenette2 from https://github.com/fastai/imagenette" if name == "imagenette"
               else "the 100 ImageNet classes of the ImageNet-100 subset")
        raise _missing(name, data_root, [f"{folder.name}/<class>/<images>"], folder.parent,
                       f"Put the ImageFolder tree ({src}) as <data_root>/{name}/train/<class>/*.JPEG "
                       f"and <data_root>/{name}/val/<class>/*.JPEG")
    from torchvision.datasets import ImageFolder

    base = ImageFolder(str(folder))
    paths = [p for p, _ in base.samples]
    targets = [t for _, t in base.samples]
    mean, std = _MEAN_STD["imagenet"]
    ds = ImageFileDataset(paths, targets, classes=base.classes, name=name, split=split,
                          size=size, mean=mean, std=std)
    return _maybe_subset(ds, n, seed)


def _load_celeba(data_root, split, **kw):
    """CelebA (aligned) with y = ``target_attr`` (Blond_Hair) and groups = 2 * y + ``spurious_attr`` (Male); P4 Sec. 7.2."""
    size, n, seed = _real_kw("celeba", kw, extra=("target_attr", "spurious_attr"))
    size = 224 if size is None else size
    target_attr = kw.get("target_attr", "Blond_Hair")
    spurious_attr = kw.get("spurious_attr", "Male")
    root = data_root / "celeba"
    need = ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/"]
    missing = [f for f in need if not (root / f.rstrip("/")).exists()]
    if missing:
        raise _missing("celeba", data_root, missing, root,
                       "Put list_attr_celeba.txt, list_eval_partition.txt and the extracted "
                       "img_align_celeba/ folder (aligned JPEGs) in <data_root>/celeba/")
    with open(root / "list_eval_partition.txt") as f:
        part = dict(line.split()[:2] for line in f if line.strip())
    with open(root / "list_attr_celeba.txt") as f:
        f.readline()                       # number of images
        attr_names = f.readline().split()
        rows = [line.split() for line in f if line.strip()]
    for param, attr in (("target_attr", target_attr), ("spurious_attr", spurious_attr)):
        if attr not in attr_names:
            raise ValueError(f"{param}={attr!r} is not a CelebA attribute; accepted: {attr_names}")
    ti, si = attr_names.index(target_attr) + 1, attr_names.index(spurious_attr) + 1
    code = "0" if split == "train" else "2"    # 0 train, 1 val, 2 test
    rows = [r for r in rows if part.get(r[0]) == code]
    paths = [str(root / "img_align_celeba" / r[0]) for r in rows]
    y = torch.tensor([int(r[ti]) > 0 for r in rows], dtype=torch.long)
    a = torch.tensor([int(r[si]) > 0 for r in rows], dtype=torch.long)
    mean, std = _MEAN_STD["imagenet"]
    ds = ImageFileDataset(paths, y, classes=[f"not_{target_attr}", target_attr], name="celeba",
                          split=split, size=size, mean=mean, std=std,
                          extras={"groups": 2 * y + a, "spurious": a})
    return _maybe_subset(ds, n, seed)


def _load_waterbirds(data_root, split, **kw):
    """Waterbirds (Sagawa et al. 2019) from ``metadata.csv`` (img_filename, y, split, place); groups = 2 * y + place."""
    size, n, seed = _real_kw("waterbirds", kw)
    size = 224 if size is None else size
    candidates = [data_root / "waterbirds", data_root / "waterbird_complete95_forest2water2",
                  data_root]
    root = next((c for c in candidates if (c / "metadata.csv").is_file()), None)
    if root is None:
        raise _missing("waterbirds", data_root, ["metadata.csv"], data_root / "waterbirds",
                       "Put the extracted Waterbirds release (waterbird_complete95_forest2water2: "
                       "metadata.csv and the image folders it names) in <data_root>/waterbirds/")
    with open(root / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        need = {"img_filename", "y", "split", "place"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"waterbirds: {root / 'metadata.csv'} has columns "
                             f"{reader.fieldnames}; accepted: must include {sorted(need)}")
        code = "0" if split == "train" else "2"   # 0 train, 1 val, 2 test
        rows = [r for r in reader if r["split"].strip() == code]
    paths = [str(root / r["img_filename"]) for r in rows]
    y = torch.tensor([int(r["y"]) for r in rows], dtype=torch.long)
    place = torch.tensor([int(r["place"]) for r in rows], dtype=torch.long)
    mean, std = _MEAN_STD["imagenet"]
    ds = ImageFileDataset(paths, y, classes=["landbird", "waterbird"], name="waterbirds",
                          split=split, size=size, mean=mean, std=std,
                          extras={"groups": 2 * y + place, "place": place})
    return _maybe_subset(ds, n, seed)


_REAL_LOADERS = {
    "mnist": _load_mnist,
    "block_mnist": _load_block_mnist,
    "cifar10": functools.partial(_load_cifar, "cifar10"),
    "cifar100": functools.partial(_load_cifar, "cifar100"),
    "svhn": _load_svhn,
    "imagenette": functools.partial(_load_imagefolder, "imagenette"),
    "imagenet100": functools.partial(_load_imagefolder, "imagenet100"),
    "celeba": _load_celeba,
    "waterbirds": _load_waterbirds,
}
