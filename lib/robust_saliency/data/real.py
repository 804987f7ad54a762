"""Real datasets of ``robust_saliency.data``, read from ``data_root`` and never downloaded:
``mnist``, ``block_mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``imagenette``, ``imagenet100``,
``imagenet_val``, ``celeba``, ``waterbirds``, ``cub_gha``.  Missing files raise
``FileNotFoundError`` (:func:`_missing`) before any reader opens them."""
import csv
import functools
import os
import pickle
from pathlib import PurePosixPath

import numpy as np
import torch

from ._checks import _check_int, _check_kw
from .datasets import ArrayDataset, ImageFileDataset, UInt8ImageDataset, _resize, _subset_indices
from .synthetic import _block_order, _blockify

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
    """CIFAR-10/100 from the python pickle batches (the layout of the official tarballs).

    torchvision's CIFAR10/CIFAR100 verify the md5 of the official files (every batch and the
    meta file, whichever split is asked for), so they cannot read other files in the same
    format; this reader parses the same pickles.
    """
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
    """SVHN cropped digits from ``{train,test}_32x32.mat`` (label 10 means digit 0).

    torchvision's SVHN verifies the md5 of the official ``.mat`` file, so it cannot read other
    files in the same format; this reader parses the same arrays the same way.
    """
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
        csv_hint = (f", or {_IMAGENETTE_CSV_HINT}" if name == "imagenette" else "")
        raise _missing(name, data_root, [f"{folder.name}/<class>/<images>"], folder.parent,
                       f"Put the ImageFolder tree ({src}) as <data_root>/{name}/train/<class>/*.JPEG "
                       f"and <data_root>/{name}/val/<class>/*.JPEG{csv_hint}")
    from torchvision.datasets import ImageFolder

    base = ImageFolder(str(folder))
    paths = [p for p, _ in base.samples]
    targets = [t for _, t in base.samples]
    mean, std = _MEAN_STD["imagenet"]
    ds = ImageFileDataset(paths, targets, classes=base.classes, name=name, split=split,
                          size=size, mean=mean, std=std)
    return _maybe_subset(ds, n, seed)


_IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                     "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")
_IMAGENETTE_NAMES = ("tench", "English springer", "cassette player", "chain saw", "church",
                     "French horn", "garbage truck", "gas pump", "golf ball", "parachute")
_IMAGENETTE_CSV = {"train": "train.csv", "test": "val.csv"}
_IMAGENETTE_CSV_HINT = (
    "the authors' split files (P3; AdvGrad's dataset/Imagette/train.csv and val.csv, fastai's "
    "noisy_imagenette.csv columns path,noisy_labels_0,...,is_valid) in <data_root>/imagenette2/ "
    "(or <data_root>/imagenette/) beside fastai's imagenette2 train/ and val/ folders that their "
    "paths name")


def _csv_rows(name, path, need):
    """The rows of the csv file ``path`` as dicts; ValueError if a column of ``need`` is absent."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not set(need) <= set(reader.fieldnames or ()):
            raise ValueError(f"{name}: {path} has columns {reader.fieldnames}; accepted: must "
                             f"include {sorted(need)}")
        return list(reader)


def _missing_rows(name, data_root, root, fname, rels):
    """FileNotFoundError naming the files of ``rels`` (relative to ``root``) that are absent."""
    missing = [r for r in rels if not (root / r).is_file()]
    if missing:
        raise _missing(name, data_root, missing, root,
                       f"Put every file that {fname} names under <data_root>/{root.name}/ "
                       f"(paths are relative to that folder), or remove its row")


def _load_imagenette(data_root, split, **kw):
    """ImageNette (P3 Sec. B.2): the authors' split files when present, else the ImageFolder layout.

    Split files: ``<data_root>/imagenette2/`` (or ``<data_root>/imagenette/``) holding
    ``train.csv`` (split "train") and ``val.csv`` (split "test"), AdvGrad's
    ``dataset/Imagette/*.csv`` with fastai's ``noisy_imagenette.csv`` columns; ``path`` is
    relative to that folder and the label is the wnid in ``noisy_labels_0`` (the clean label),
    0..9 in sorted wnid order as AdvGrad's ``mapping``; ``classes`` are the readable names
    ("tench", ..., "parachute"); rows in file order.  When either file is in one of the two
    folders (imagenette2 first), the split's file defines the split and every image it names
    must exist.  Otherwise ``<data_root>/imagenette/{train,val}/<wnid>/*`` (ImageFolder;
    ``classes`` are the folder names).  Both: shorter side resized to ``size`` (224) and
    centre-cropped, float32 in [0, 1], ImageNet mean/std.
    """
    size, n, seed = _real_kw("imagenette", kw)
    roots = [data_root / "imagenette2", data_root / "imagenette"]
    root = next((r for r in roots if any((r / f).is_file() for f in _IMAGENETTE_CSV.values())),
                None)
    if root is None:
        return _load_imagefolder("imagenette", data_root, split, **kw)
    size = 224 if size is None else size
    fname = _IMAGENETTE_CSV[split]
    if not (root / fname).is_file():
        raise _missing("imagenette", data_root, [fname], root,
                       f"The split files define the splits once one of them is there: put "
                       f"{_IMAGENETTE_CSV_HINT}")
    rows = _csv_rows("imagenette", root / fname, ("path", "noisy_labels_0"))
    index = {w: i for i, w in enumerate(_IMAGENETTE_WNIDS)}
    targets = []
    for lineno, r in enumerate(rows, 2):
        wnid = (r["noisy_labels_0"] or "").strip()
        if wnid not in index:
            raise ValueError(f"imagenette: line {lineno} of {root / fname} has "
                             f"noisy_labels_0={wnid!r}; accepted: one of the ImageNette wnids "
                             f"{_IMAGENETTE_WNIDS}")
        targets.append(index[wnid])
    rels = [(r["path"] or "").strip() for r in rows]
    if not rels:
        raise _missing("imagenette", data_root, [f"the rows of {fname}"], root,
                       f"{fname} lists no image; put {_IMAGENETTE_CSV_HINT}")
    _missing_rows("imagenette", data_root, root, fname, rels)
    mean, std = _MEAN_STD["imagenet"]
    ds = ImageFileDataset([root / p for p in rels], targets, classes=_IMAGENETTE_NAMES,
                          name="imagenette", split=split, size=size, mean=mean, std=std)
    return _maybe_subset(ds, n, seed)


class _ResizeCropDataset(ImageFileDataset):
    """:class:`ImageFileDataset` with torchvision's ImageNet evaluation transform: shorter side
    resized to ``resize`` (256), then centre crop ``size`` x ``size`` (224); RGB in [0, 1].
    ``resize`` is part of the identity (and so of the fingerprint)."""

    def __init__(self, paths, targets, *, resize, **kw):
        super().__init__(paths, targets, **kw)
        self.resize = int(resize)

    def __getitem__(self, i):
        from PIL import Image
        from torchvision.transforms import functional as TF

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB")
            img = TF.resize(img, self.resize, antialias=True)
            img = TF.center_crop(img, [self.size, self.size])
            x = TF.pil_to_tensor(img).float().div_(255)
        return x, self.y[i]

    def _content(self):
        return {**super()._content(), "resize": self.resize}

    def _take(self, idx, extras):
        return _ResizeCropDataset([self.paths[j] for j in idx.tolist()], self.y[idx],
                                  classes=self.classes, name=self.name, split=self.split,
                                  size=self.size, resize=self.resize, mean=self.mean,
                                  std=self.std, extras=extras)

    def _describe(self):
        return f", size={self.size}, resize={self.resize}"


def _square_resize_crop(path, mode, resize, size):
    """The image at ``path`` in PIL ``mode``, both sides resized to ``resize`` (bilinear,
    antialiased; the aspect ratio is not kept), centre crop ``size`` x ``size``: uint8 (C, H, W)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        img = TF.resize(img.convert(mode), [resize, resize], antialias=True)
        return TF.pil_to_tensor(TF.center_crop(img, [size, size]))


class _SquareResizeCropDataset(_ResizeCropDataset):
    """:class:`_ResizeCropDataset` with both sides resized to ``resize`` (the aspect ratio is
    not kept), then centre crop ``size`` x ``size``: P3's CUB-GHA test transform (AdvGrad's
    ``Resize((600, 600))``, ``CenterCrop(448)``); RGB in [0, 1]."""

    def __getitem__(self, i):
        x = _square_resize_crop(self.paths[i], "RGB", self.resize, self.size).float().div_(255)
        return x, self.y[i]

    def _take(self, idx, extras):
        return _SquareResizeCropDataset([self.paths[j] for j in idx.tolist()], self.y[idx],
                                        classes=self.classes, name=self.name, split=self.split,
                                        size=self.size, resize=self.resize, mean=self.mean,
                                        std=self.std, extras=extras)


_IMAGENET_VAL_LABELS = "val_labels.txt"
_IMAGENET_VAL_HINT = (
    "Put the 50,000 ILSVRC2012 validation images (ILSVRC2012_img_val.tar) in "
    "<data_root>/imagenet_val/ in one of two layouts: (a) ImageFolder, "
    "<data_root>/imagenet_val/<wnid>/*.JPEG with all 1000 wnid folders (class index = position "
    "in sorted wnid order, torchvision's convention); or (b) flat, "
    "<data_root>/imagenet_val/ILSVRC2012_val_XXXXXXXX.JPEG plus "
    "<data_root>/imagenet_val/val_labels.txt with one line '<filename> <class index 0..999>' "
    "per image (class index in sorted wnid order, e.g. caffe's ilsvrc12 val.txt)")


def _imagenet_val_flat(data_root, root):
    """Layout (b): ``ILSVRC2012_val_*.JPEG`` in ``root`` labelled by ``root/val_labels.txt``."""
    labels = {}
    with open(root / _IMAGENET_VAL_LABELS) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            ok = len(parts) == 2 and parts[1].lstrip("-").isdigit() and 0 <= int(parts[1]) < 1000
            if not ok:
                raise ValueError(f"imagenet_val: line {lineno} of {root / _IMAGENET_VAL_LABELS} "
                                 f"is {line.strip()!r}; accepted: "
                                 f"'<filename> <class index 0..999>'")
            if parts[0] in labels:
                raise ValueError(f"imagenet_val: {parts[0]!r} appears twice in "
                                 f"{root / _IMAGENET_VAL_LABELS}; accepted: one line per image")
            labels[parts[0]] = int(parts[1])
    present = {e.name for e in os.scandir(root) if e.is_file()}
    missing = sorted(fn for fn in labels if fn not in present and not (root / fn).is_file())
    if missing:
        raise _missing("imagenet_val", data_root, missing, root,
                       f"Put every image that {_IMAGENET_VAL_LABELS} names in "
                       f"<data_root>/imagenet_val/ (or remove its line)")
    unlabelled = sorted(fn for fn in present if fn.startswith("ILSVRC2012_val_")
                        and fn not in labels)
    if unlabelled:
        shown = ", ".join(unlabelled[:6]) + (" ..." if len(unlabelled) > 6 else "")
        raise ValueError(f"imagenet_val: {len(unlabelled)} image(s) in {root} have no line in "
                         f"{_IMAGENET_VAL_LABELS}: {shown}; accepted: one line "
                         f"'<filename> <class index 0..999>' per image")
    if not labels:
        raise _missing("imagenet_val", data_root, ["ILSVRC2012_val_XXXXXXXX.JPEG"], root,
                       f"{_IMAGENET_VAL_LABELS} lists no image. " + _IMAGENET_VAL_HINT)
    names = sorted(labels)
    return [str(root / fn) for fn in names], [labels[fn] for fn in names]


def _imagenet_val_folders(data_root, root):
    """Layout (a): ``root/<wnid>/*`` with the 1000 wnid folders; labels in sorted wnid order."""
    wnids = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if len(wnids) != 1000:
        shown = ", ".join(wnids[:6]) + (" ..." if len(wnids) > 6 else "")
        raise ValueError(f"imagenet_val: {root} has {len(wnids)} class folder(s) ({shown}); "
                         f"accepted: all 1000 ILSVRC2012 wnid folders, since the class index is "
                         f"the position in sorted wnid order (keep empty folders for classes "
                         f"you leave out), or layout (b) with {_IMAGENET_VAL_LABELS}")
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    samples = make_dataset(str(root), {w: i for i, w in enumerate(wnids)},
                           extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise _missing("imagenet_val", data_root, ["<wnid>/*.JPEG"], root,
                       "The 1000 wnid folders hold no image. " + _IMAGENET_VAL_HINT)
    return [p for p, _ in samples], [t for _, t in samples], wnids


def _load_imagenet_val(data_root, split, **kw):
    """ILSVRC2012 validation images from ``<data_root>/imagenet_val/``; split "test" only.

    Layouts: (a) ImageFolder, ``imagenet_val/<wnid>/*.JPEG`` with all 1000 wnid folders (class
    index = position in sorted wnid order, torchvision's convention; empty folders allowed;
    ``classes`` are the wnids), or (b) flat, ``imagenet_val/ILSVRC2012_val_XXXXXXXX.JPEG`` plus
    ``imagenet_val/val_labels.txt`` with one ``<filename> <class index 0..999>`` line per image
    (``classes`` are "0".."999"; used whenever ``val_labels.txt`` exists).  Images are in
    filename order (b) or in torchvision's ImageFolder order (a).

    Preprocessing is torchvision's ImageNet evaluation transform: shorter side resized to
    ``resize`` (default ``round(size * 256 / 224)``, 256 for the default ``size`` 224), then
    centre crop ``size`` x ``size``; pass ``resize=size`` for the resize-and-crop of the other
    file-based datasets.  ``num_classes`` is always 1000; mean/std are ImageNet's.
    """
    size, n, seed = _real_kw("imagenet_val", kw, extra=("resize",))
    if split != "test":
        raise ValueError(f"split={split!r} is not valid for dataset 'imagenet_val' (the ILSVRC2012 "
                         f"validation images); accepted: ('test',)")
    size = 224 if size is None else size
    resize = kw.get("resize")
    resize = round(size * 256 / 224) if resize is None else resize
    _check_int("resize", resize, size, 8192)
    root = data_root / "imagenet_val"
    if (root / _IMAGENET_VAL_LABELS).is_file():
        paths, targets = _imagenet_val_flat(data_root, root)
        classes = [str(i) for i in range(1000)]
    elif root.is_dir() and any(e.is_dir() for e in os.scandir(root)):
        paths, targets, classes = _imagenet_val_folders(data_root, root)
    else:
        flat = root.is_dir() and any(e.name.startswith("ILSVRC2012_val_")
                                     for e in os.scandir(root))
        missing = ([_IMAGENET_VAL_LABELS] if flat
                   else ["<wnid>/*.JPEG (1000 folders)",
                         f"or ILSVRC2012_val_*.JPEG with {_IMAGENET_VAL_LABELS}"])
        raise _missing("imagenet_val", data_root, missing, root, _IMAGENET_VAL_HINT)
    mean, std = _MEAN_STD["imagenet"]
    ds = _ResizeCropDataset(paths, targets, classes=classes, name="imagenet_val", split=split,
                            size=size, resize=resize, mean=mean, std=std)
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


_CUB_CSV = {"train": "train.csv", "test": "test.csv"}
_CUB_HINT = (
    "Put the extracted CUB_200_2011 release (its images/<NNN.Class_name>/*.jpg), the CUB-GHA "
    "gaze maps as CUB_200_2011/CUB_GHA/<n>.jpg and the authors' split files train.csv and "
    "test.csv (P3; AdvGrad's dataset/CUB-GHA/, columns split,img,label,gaze, paths relative to "
    "the folder) in <data_root>/CUB_200_2011/")


def _cub_label(root, fname, lineno, row):
    label = (row["label"] or "").strip()
    if not (label.isdigit() and int(label) < 200):
        raise ValueError(f"cub_gha: line {lineno} of {root / fname} has label={label!r}; "
                         f"accepted: a class index 0..199")
    return int(label)


def _cub_classes(root, tables):
    """Class names by label from the image folders (``images/001.Black_footed_Albatross/...`` ->
    "Black_footed_Albatross") of every split file read (``tables``: file name -> rows)."""
    names = {}
    for fname, rows in tables.items():
        for lineno, r in enumerate(rows, 2):
            label = _cub_label(root, fname, lineno, r)
            folder = PurePosixPath((r["img"] or "").strip()).parent.name
            head, dot, tail = folder.partition(".")
            name = tail if dot and head.isdigit() else folder
            if names.setdefault(label, name) != name:
                raise ValueError(f"cub_gha: line {lineno} of {root / fname} gives label {label} "
                                 f"to class folder {folder!r}, other rows to "
                                 f"{names[label]!r}; accepted: one class folder per label")
    absent = [k for k in range(max(names) + 1) if k not in names]
    if absent:
        shown = ", ".join(map(str, absent[:6])) + (" ..." if len(absent) > 6 else "")
        raise ValueError(f"cub_gha: label(s) {shown} have no row in {sorted(tables)} under "
                         f"{root}, so their class names are unknown; accepted: split files "
                         f"whose labels 0..K-1 all appear")
    return [names[k] for k in range(len(names))]


def _load_cub_gha(data_root, split, **kw):
    """CUB-200-2011 with the CUB-GHA human gaze maps (P3 Sec. B.8, Table 6), from the authors'
    split files ``<data_root>/CUB_200_2011/{train,test}.csv`` (``split,img,label,gaze``).

    Items: the RGB image with both sides resized to ``round(size * 600 / 448)`` (600 for the
    default ``size`` 448) and centre-cropped to ``size`` x ``size`` (AdvGrad's test transform;
    its training transform crops at random), float32 in [0, 1], label 0..199; ImageNet mean/std.
    Extra ``gaze``: the gaze maps at the same geometry, read eagerly, as a uint8 tensor
    (N, 1, size, size) (consumers divide by 255).  ``classes`` come from the image folder names
    (``001.Black_footed_Albatross`` -> "Black_footed_Albatross") of both split files present,
    so train and test share them.  Rows in file order; ``n``/``seed`` read only the subset.
    """
    size, n, seed = _real_kw("cub_gha", kw)
    size = 448 if size is None else size
    resize = round(size * 600 / 448)
    root = data_root / "CUB_200_2011"
    fname = _CUB_CSV[split]
    if not (root / fname).is_file():
        raise _missing("cub_gha", data_root, [fname], root, _CUB_HINT)
    need = ("img", "label", "gaze")
    tables = {f: _csv_rows("cub_gha", root / f, need) for f in _CUB_CSV.values()
              if (root / f).is_file()}
    rows = tables[fname]
    if not rows:
        raise _missing("cub_gha", data_root, [f"the rows of {fname}"], root,
                       f"{fname} lists no image. " + _CUB_HINT)
    classes = _cub_classes(root, tables)
    imgs = [(r["img"] or "").strip() for r in rows]
    gazes = [(r["gaze"] or "").strip() for r in rows]
    _missing_rows("cub_gha", data_root, root, fname, imgs + gazes)
    targets = torch.tensor([_cub_label(root, fname, i, r) for i, r in enumerate(rows, 2)])
    idx = (torch.arange(len(rows)) if n is None
           else _subset_indices(len(rows), n, seed)).tolist()
    gaze = torch.stack([_square_resize_crop(root / gazes[i], "L", resize, size) for i in idx])
    mean, std = _MEAN_STD["imagenet"]
    return _SquareResizeCropDataset([root / imgs[i] for i in idx], targets[idx], classes=classes,
                                    name="cub_gha", split=split, size=size, resize=resize,
                                    mean=mean, std=std, extras={"gaze": gaze})


_REAL_LOADERS = {
    "mnist": _load_mnist,
    "block_mnist": _load_block_mnist,
    "cifar10": functools.partial(_load_cifar, "cifar10"),
    "cifar100": functools.partial(_load_cifar, "cifar100"),
    "svhn": _load_svhn,
    "imagenette": _load_imagenette,
    "imagenet100": functools.partial(_load_imagefolder, "imagenet100"),
    "imagenet_val": _load_imagenet_val,
    "celeba": _load_celeba,
    "waterbirds": _load_waterbirds,
    "cub_gha": _load_cub_gha,
}
