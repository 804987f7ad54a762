"""Datasets: embedded datasets generated with a seed, and real-dataset loaders.

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
``cifar100``, ``svhn``, ``imagenette``, ``imagenet100``, ``imagenet_val`` (the 50,000 ILSVRC2012
validation images, split "test" only: ``<data_root>/imagenet_val/<wnid>/*.JPEG`` with the 1000
wnid folders, or flat ``ILSVRC2012_val_*.JPEG`` with ``val_labels.txt``; resize 256, centre
crop 224), ``celeba``, ``waterbirds``, ``cub_gha`` (CUB-200-2011 with the CUB-GHA gaze maps, P3
Sec. B.8: the authors' ``CUB_200_2011/{train,test}.csv``; square resize, centre crop 448).
``imagenette`` also reads the authors' split files ``imagenette2/{train,val}.csv`` (P3).  They
yield ``(x, y)`` with x a float32 tensor in [0, 1]; ``celeba`` and ``waterbirds`` also carry
``groups``, ``cub_gha`` carries ``gaze`` (N, 1, size, size) uint8 (divide by 255).  Missing
files raise ``FileNotFoundError`` saying which files to put where (see ``data/README.md``).

Layout: ``data.datasets`` (the dataset classes), ``data.synthetic`` (the embedded generators),
``data.real`` (the real-dataset readers), ``data._checks`` (parameter checks); this module holds
``load`` and re-exports the public names.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import synthetic
from ._checks import SPLITS, _check_int, _check_kw
from .datasets import ArrayDataset, BaseDataset, ImageFileDataset, JoinedDataset, UInt8ImageDataset
from .real import _REAL_LOADERS
from .synthetic import SHAPES_CLASSES, _cached_generate, null_block

if TYPE_CHECKING:
    import os

__all__ = ["load", "get", "NAMES", "EMBEDDED", "REAL", "SPLITS", "BaseDataset", "ArrayDataset",
           "UInt8ImageDataset", "ImageFileDataset", "JoinedDataset", "null_block", "SHAPES_CLASSES"]

EMBEDDED = ("toy2d", "digits", "block_digits", "shapes", "spurious_shapes")
REAL = ("mnist", "block_mnist", "cifar10", "cifar100", "svhn", "imagenette", "imagenet100",
        "imagenet_val", "celeba", "waterbirds", "cub_gha")
NAMES = EMBEDDED + REAL
SHAPES_FAMILIES = synthetic.SHAPES_FAMILIES  # public as before the split, not in __all__


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


def load(name: str, split: str, data_root: str | os.PathLike | None = None, **kw: object) -> BaseDataset:
    """Load dataset ``name`` (one of ``NAMES``) for ``split`` in {"train", "test"}.

    Embedded keywords: ``n`` (size; for digits/block_digits a seeded subset), ``seed``,
    ``size`` (image side), ``cache_dir`` (on-disk cache of generated tensors), ``noise``
    (toy2d), ``p_major`` (spurious_shapes), ``order_seed`` (block_digits null-block order).
    Real keywords: ``size``, ``n`` and ``seed`` (seeded subset), for celeba
    ``target_attr``/``spurious_attr``, and for imagenet_val (split "test" only) ``resize``
    (shorter side before the centre crop; default 256 for ``size`` 224).
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
