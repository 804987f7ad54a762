"""One figure style and one ``savefig`` for every notebook.

Figures go to ``figures/<notebook>/`` (PNG and PDF) for the ``cpu`` profile, whose outputs are
the committed reproduction; other profiles write to ``figures/<notebook>/<profile>/`` so that a
smoke run (CI, nbval) never overwrites the reported figures.
"""
import os
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

_STATE = {"notebook": None, "profile": "cpu", "root": None}

# diverging for signed maps, sequential for magnitudes (STYLE.md)
SIGNED_CMAP = "RdBu_r"
MAGNITUDE_CMAP = "inferno"


def set_style():
    """The companion's matplotlib style: small, readable, no chart junk."""
    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "image.interpolation": "nearest",
    })


def setup(notebook, profile="cpu", root=None):
    """Set the notebook (folder name under figures/) and profile that ``savefig`` writes for."""
    _STATE.update(notebook=notebook, profile=profile, root=root)
    set_style()
    return figure_dir()


def figure_dir():
    if _STATE["notebook"] is None:
        raise RuntimeError("call plotting.setup(notebook, profile) before savefig")
    if _STATE["root"] is not None:
        root = Path(_STATE["root"])
    else:
        from .experiments import repo_root
        root = repo_root()
    d = root / "figures" / _STATE["notebook"]
    if _STATE["profile"] != "cpu":
        d = d / _STATE["profile"]
    return d


def savefig(name, fig=None, formats=("png", "pdf")):
    """Write ``fig`` (default: current figure) as ``figures/<notebook>/<name>.{png,pdf}``.

    ``name`` carries the paper's figure number, e.g. ``"fig1_toy2d"``. Written atomically.
    Returns the list of written paths.
    """
    fig = plt.gcf() if fig is None else fig
    d = figure_dir()
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = d / f"{name}.{ext}"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # fixed metadata so that the same figure gives the same bytes
        meta = {"Software": None} if ext == "png" else {"CreationDate": None, "Creator": None, "Producer": None}
        fig.savefig(tmp, format=ext, metadata=meta)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def to_image(x):
    """(C,H,W) or (H,W) tensor/array in [0,1] -> array for imshow (H,W,C) or (H,W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))
    return np.clip(x, 0, 1)


def show_map(ax, m, signed=False, title=None):
    """Show a saliency map: (C,H,W) maps are reduced with sum over channels.

    signed=True uses a diverging map centred at 0; otherwise |map| with a sequential map.
    """
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().float().numpy()
    m = np.asarray(m)
    if m.ndim == 3:
        m = m.sum(0) if signed else np.abs(m).sum(0)
    if signed:
        v = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap=SIGNED_CMAP, vmin=-v, vmax=v)
    else:
        m = np.abs(m)
        ax.imshow(m, cmap=MAGNITUDE_CMAP, vmin=0, vmax=float(m.max()) or 1.0)
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def map_grid(images, maps, row_labels, col_labels=None, signed=False, scale=1.2):
    """Grid: first column the images, then one column per method (maps: dict name -> (N,C,H,W))."""
    names = list(maps)
    n = len(images)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(scale * (len(names) + 1), scale * n), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        img = to_image(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        ax.set_ylabel(row_labels[i])
        for j, k in enumerate(names):
            show_map(axes[i, j + 1], maps[k][i], signed=signed)
    for j, k in enumerate(["input"] + names):
        axes[0, j].set_title(k if col_labels is None else (["input"] + list(col_labels))[j])
    fig.tight_layout()
    return fig
