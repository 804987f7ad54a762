"""Dataset classes of ``robust_saliency.data``: :class:`BaseDataset` (labels, extras,
``take``/``subset`` and the ``fingerprint``, ``cache.config_hash`` of what the dataset holds),
:class:`ArrayDataset` (tensors in memory), :class:`UInt8ImageDataset` (real images held as uint8)
and :class:`ImageFileDataset` (real images read from files)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .. import cache as _cache

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence


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

    def __init__(self, y: torch.Tensor | Sequence[int], *, classes: Sequence[str], name: str = "",
                 split: str = "", in_shape: Sequence[int], mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None,
                 extras: Mapping[str, torch.Tensor] | None = None) -> None:
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
    def targets(self) -> torch.Tensor:
        """The labels (torchvision's name for ``y``)."""
        return self.y

    @targets.setter
    def targets(self, value: torch.Tensor) -> None:
        self.y = value

    @property
    def extras(self) -> tuple[str, ...]:
        """Names of the per-sample extras (e.g. ``masks``, ``null_mask``, ``groups``)."""
        return self._extra_names

    def _extra_tensors(self):
        return {k: getattr(self, k) for k in self._extra_names}

    def __len__(self) -> int:
        return len(self.y)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the items (and the extras): the input of ``fingerprint``."""
        return {"type": type(self).__name__, "name": self.name, "split": self.split,
                "classes": self.classes, "in_shape": self.in_shape, "mean": self.mean,
                "std": self.std, "y": self.y, "extras": self._extra_tensors(),
                **self._content()}

    def _content(self):
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
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

    def take(self, idx: torch.Tensor | Sequence[int]) -> BaseDataset:
        """Dataset of the rows ``idx`` (a 1-D index tensor), extras included."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        extras = {k: v[idx] for k, v in self._extra_tensors().items()}
        return self._take(idx, extras)

    def _take(self, idx, extras):
        raise NotImplementedError

    def subset(self, n: int, seed: int = 0) -> BaseDataset:
        """Seeded random subset of ``n`` rows (kept in their original order)."""
        return self.take(_subset_indices(len(self), n, seed))

    def _describe(self):
        return ""

    def __repr__(self) -> str:
        extras = "".join(f", {k}={tuple(v.shape)}" for k, v in self._extra_tensors().items())
        return (f"{type(self).__name__}({self.name!r}, {self.split!r}, n={len(self)}"
                f"{self._describe()}, num_classes={self.num_classes}{extras}, "
                f"fingerprint={self.fingerprint[:16]!r})")


class ArrayDataset(BaseDataset):
    """In-memory dataset of tensors: ``x``, ``y`` and optional per-sample extras (masks, groups, ...)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, classes: Sequence[str],
                 name: str = "", split: str = "", extras: Mapping[str, torch.Tensor] | None = None) -> None:
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows, y has {len(y)}")
        super().__init__(y, classes=classes, name=name, split=split, in_shape=x.shape[1:],
                         mean=tuple(float(v) for v in x.mean(dims)),
                         std=tuple(float(v) for v in x.std(dims)), extras=extras)
        if self.num_classes != int(num_classes):
            raise ValueError(f"num_classes={num_classes!r} but {len(self.classes)} class names")
        self.x = x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
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

    def __init__(self, data: torch.Tensor, targets: torch.Tensor | Sequence[int], *,
                 classes: Sequence[str], name: str, split: str, size: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 extras: Mapping[str, torch.Tensor] | None = None) -> None:
        if len(data) != len(targets):
            raise ValueError(f"data has {len(data)} rows, targets has {len(targets)}")
        side = tuple(data.shape[-2:]) if size is None else (size, size)
        super().__init__(targets, classes=classes, name=name, split=split,
                         in_shape=(int(data.shape[1]),) + side, mean=mean, std=std,
                         extras=extras)
        self.data, self.size = data, size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
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

    def __init__(self, paths: Sequence[str | os.PathLike], targets: torch.Tensor | Sequence[int], *,
                 classes: Sequence[str], name: str, split: str, size: int = 224,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 extras: Mapping[str, torch.Tensor] | None = None) -> None:
        paths = tuple(str(p) for p in paths)
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        super().__init__(targets, classes=classes, name=name, split=split,
                         in_shape=(3, size, size), mean=mean, std=std, extras=extras)
        self.paths, self.size = paths, size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
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


class JoinedDataset(BaseDataset):
    """The rows of ``first`` followed by those of ``second`` (datasets of the same classes and
    item shape, of any kind: e.g. P3's stability set, training rows with test rows swapped in).
    Its identity holds both parts' fingerprints; extras present in both are concatenated;
    ``mean`` / ``std`` are ``first``'s.  ``take`` keeps the order of its (sorted) indices."""

    def __init__(self, first: BaseDataset, second: BaseDataset, *, split: str = "") -> None:
        if first.classes != second.classes or tuple(first.in_shape) != tuple(second.in_shape):
            raise ValueError("JoinedDataset needs parts with the same classes and item shape; got "
                             f"{first.classes}/{tuple(first.in_shape)} and {second.classes}/{tuple(second.in_shape)}")
        extras = {k: torch.cat([getattr(first, k), getattr(second, k)]) for k in first.extras
                  if k in second.extras}
        super().__init__(torch.cat([first.y, second.y]), classes=first.classes, name=first.name, split=split,
                         in_shape=first.in_shape, mean=first.mean, std=first.std, extras=extras)
        self.parts = (first, second)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.parts[0])
        x = self.parts[0][i][0] if i < n else self.parts[1][i - n][0]
        return x, self.y[i]

    def _content(self):
        return {"parts": [p.fingerprint for p in self.parts]}

    def _take(self, idx, extras):
        n = len(self.parts[0])
        if len(idx) > 1 and not bool((idx[1:] >= idx[:-1]).all()):
            raise ValueError("JoinedDataset.take needs sorted indices (its rows are its parts' rows in order)")
        out = JoinedDataset(self.parts[0].take(idx[idx < n]), self.parts[1].take(idx[idx >= n] - n), split=self.split)
        out.y = self.y[idx].clone()  # the labels as this dataset holds them (permuted_labels edits y)
        return out

    def _describe(self):
        return f", parts={len(self.parts[0])}+{len(self.parts[1])}"
