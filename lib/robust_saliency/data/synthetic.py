"""Embedded datasets of ``robust_saliency.data``, generated with a seed (no network, no files):
``toy2d``, ``digits``, ``block_digits`` (with :func:`null_block`), ``shapes`` and
``spurious_shapes``; the generation cache (in memory and, with ``cache_dir``, on disk) and the
per-(dataset, split, seed) random streams."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import cache as _cache
from ._checks import SPLITS
from .datasets import _subset_indices

# Bump when a generator changes, so that on-disk caches of generated tensors are not reused.
_GENERATOR_VERSION = "1"

SHAPES_CLASSES = ("disk", "ring", "half_disk", "square", "wide_bar", "tall_bar", "hollow_frame",
                  "disk_tail", "square_tail", "ring_tail")
SHAPES_FAMILIES = {"circular": (0, 1, 2), "rectangular": (3, 4, 5, 6), "tailed": (7, 8, 9)}


# ----------------------------------------------------------------------------------------------
# Generation cache and seed streams
# ----------------------------------------------------------------------------------------------

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


def null_block(size: int) -> torch.Tensor:
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
    """10-class procedural objects after P3's synthesized dataset: RGB images and object masks."""
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

