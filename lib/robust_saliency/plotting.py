"""One figure style and one ``savefig`` for every notebook.

Figures go to ``figures/<notebook>/`` (PNG and PDF) for the ``cpu`` profile, whose outputs are
the committed reproduction; other profiles write to ``figures/<notebook>/<profile>/`` so that a
smoke run (CI, nbval) never overwrites the reported figures.

Tensors may come on any device (a model on a GPU gives maps there): every figure takes them to
the host with ``.detach().cpu()`` before ``.numpy()`` (``_np``, ``to_image``, ``show_map``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import torch

from .common import to_device_of
from .results import repo_root

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .data import ArrayDataset

_STATE = {"notebook": None, "profile": "cpu", "root": None}

# diverging for signed maps, sequential for magnitudes
SIGNED_CMAP = "RdBu_r"
MAGNITUDE_CMAP = "inferno"


def set_style() -> None:
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


def setup(notebook: str, profile: str = "cpu", root: str | os.PathLike | None = None) -> Path:
    """Set the notebook (folder name under figures/) and profile that ``savefig`` writes for."""
    _STATE.update(notebook=notebook, profile=profile, root=root)
    set_style()
    return figure_dir()


def _figure_root():
    return Path(_STATE["root"]) if _STATE["root"] is not None else repo_root()


def figure_dir() -> Path:
    if _STATE["notebook"] is None:
        raise RuntimeError("call plotting.setup(notebook, profile) before savefig")
    d = _figure_root() / "figures" / _STATE["notebook"]
    if _STATE["profile"] != "cpu":
        d = d / _STATE["profile"]
    return d


def savefig(name: str, fig: Figure | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` (default: current figure) as ``figures/<notebook>/<name>.{png,pdf}``.

    ``name`` carries the paper's figure number, e.g. ``"fig1_toy2d"``. Written atomically.
    Returns the list of written paths, relative to the repository (``figures/...``: a notebook
    that shows them shows no path of the machine it ran on).
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
        paths.append(path.relative_to(_figure_root()))
    return paths


def _np(t: Any) -> np.ndarray:
    """A tensor (any device, with or without grad) or anything array-like as a numpy array."""
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C,H,W) or (H,W) tensor/array in [0,1] -> array for imshow (H,W,C) or (H,W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))
    return np.clip(x, 0, 1)


def _clip_text(clip: float) -> str:
    return f"each map clipped at its {clip:g}th percentile of |value|"


def _scale_text(clip: float | None, shared: bool) -> str | None:
    """What ``map_grid``'s title says about its colour scale (None: each map its own maximum)."""
    if not shared:
        return _clip_text(clip) if clip is not None else None
    text = "one colour scale for all maps"
    return text if clip is None else f"{text}, clipped at the {clip:g}th percentile of |value| over all maps"


def _map_values(m: torch.Tensor | np.ndarray, signed: bool) -> np.ndarray:
    """The 2-D array ``show_map`` draws: (C,H,W) maps summed over channels (|map| summed unless signed)."""
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().float().numpy()
    m = np.asarray(m)
    if m.ndim == 3:
        m = m.sum(0) if signed else np.abs(m).sum(0)
    return m


def _full_scale(a: np.ndarray, clip: float | None) -> float:
    """The value at the end of the colour range for |values| ``a``: their ``clip``-th percentile
    (None: their maximum), falling back to the maximum when that is 0, and to 1 for all zeros."""
    return (float(np.percentile(a, clip)) if clip is not None else 0.0) or float(a.max()) or 1.0


def _renderer(fig: Figure):
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get is not None else fig._get_renderer()


def show_map(ax: Axes, m: torch.Tensor | np.ndarray, signed: bool = False, title: str | None = None,
             clip: float | None = None, vmax: float | None = None) -> Axes:
    """Show a saliency map: (C,H,W) maps are reduced with sum over channels.

    signed=True uses a diverging map centred at 0; otherwise |map| with a sequential map.

    The colour scale is per map unless ``vmax`` is given:

    * ``clip=None`` (default): the full colour range is the map's own maximum of |value|
      (magnitudes: black = 0, brightest = max |map|; signed: ±max |map| at the two ends).  One
      very bright pixel then makes every other pixel look near 0.
    * ``clip=q`` (0 < q <= 100, e.g. 99 as P3 shows its maps): the full colour range is the
      ``q``-th percentile ``v`` of |value| over the map's pixels (after the channel sum), and the
      values beyond it are clipped to ``v`` (magnitudes: ``min(|map|, v)`` on [0, v]; signed:
      ``clip(map, -v, v)`` on [-v, v]), so the brightest 1 % of the pixels saturate and the rest
      of the map is visible.  A map whose percentile is 0 (fewer than 1 - q/100 non-zero pixels)
      falls back to its maximum.
    * ``vmax=v`` (> 0): the full colour range is ``v`` whatever the map, the values beyond it
      clipped to ``v`` as with ``clip`` (``map_grid(shared=True)`` passes one ``v`` to all its
      maps, so that their magnitudes compare); ``clip`` is then not used.
    """
    if clip is not None and not 0 < clip <= 100:
        raise ValueError(f"clip is a percentile in (0, 100]; got {clip}")
    if vmax is not None and not (np.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax is the end of the colour range, a finite number > 0; got {vmax}")
    m = _map_values(m, signed)
    a = np.abs(m)
    v = float(vmax) if vmax is not None else _full_scale(a, clip)
    cut = clip is not None or vmax is not None
    if signed:
        if cut:
            m = np.clip(m, -v, v)
        ax.imshow(m, cmap=SIGNED_CMAP, vmin=-v, vmax=v)
    else:
        if cut:
            a = np.minimum(a, v)
        ax.imshow(a, cmap=MAGNITUDE_CMAP, vmin=0, vmax=v)
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def _place_suptitle(fig: Figure, title: str, top_axes: Sequence[Axes], right: float = 1.0,
                    gap: float = 0.08) -> None:
    """``fig.suptitle(title)`` just above ``top_axes`` (with their titles): lay the figure out
    (``tight_layout``) leaving the suptitle's height free at the top, then put the suptitle's
    bottom ``gap`` inches above the highest of the drawn axes (square images may have moved
    down inside their boxes), so that no empty band separates the two.  ``right``: the
    ``tight_layout`` rect's right edge (room for a colorbar)."""
    st = fig.suptitle(title)
    st.set_in_layout(False)
    renderer = _renderer(fig)
    height = fig.get_size_inches()[1]
    st_h = st.get_window_extent(renderer).height / fig.dpi
    fig.tight_layout(rect=(0, 0, right, 1 - (st_h + gap) / height))
    top = max(ax.get_tightbbox(renderer).y1 for ax in top_axes) / fig.dpi
    st.set(y=(top + gap) / height, va="bottom")
    st.set_in_layout(True)       # in the figure's tight bbox (savefig's bbox="tight" keeps it)


def map_grid(images: torch.Tensor | Sequence[torch.Tensor], maps: Mapping[str, torch.Tensor],
             row_labels: Sequence[str], col_labels: Sequence[str] | None = None, signed: bool = False,
             scale: float = 1.2, title: str | None = None,
             notes: Mapping[str, Sequence[str]] | None = None, clip: float | None = None,
             shared: bool = False) -> Figure:
    """Grid: first column the images, then one column per method (maps: dict name -> (N,C,H,W));
    ``title`` above the column titles.  ``notes``: {column ("input" or a method name): one short
    text per row}, written under each cell (P2 writes softmax scores under its images and maps).

    ``shared=False`` (default): every map has its own colour scale (``show_map``): ``clip=None``
    spans each map's own maximum of |value|; ``clip=99`` each map's 99th percentile of |value|,
    the brighter pixels clipped to it (as P3 shows its maps), and the title says so ("each map
    clipped at its 99th percentile of |value|"; without a title this note is the title).

    ``shared=True``: one colour scale for all the maps of the figure, so that their magnitudes
    compare across methods and images (P4's Eq. 9 compares magnitudes): the maximum of |value|
    over all maps (after the channel sum), or with ``clip=q`` the ``q``-th percentile of |value|
    over all their pixels pooled, the brighter pixels clipped to it; one colorbar on the right,
    and the title says "one colour scale for all maps"."""
    names = list(maps)
    notes = notes or {}
    n = len(images)
    extra = 0.25 if notes else 0.0
    bar = 0.8 if shared and names else 0.0       # inches on the right for the colorbar
    width = scale * (len(names) + 1) + bar
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(width, (scale + extra) * n), squeeze=False)
    vmax = None
    if shared and names:
        if clip is not None and not 0 < clip <= 100:
            raise ValueError(f"clip is a percentile in (0, 100]; got {clip}")
        pooled = np.concatenate([np.abs(_map_values(maps[k][i], signed)).ravel() for k in names for i in range(n)])
        vmax = _full_scale(pooled, clip)
    for i in range(n):
        ax = axes[i, 0]
        img = to_image(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        ax.set_ylabel(row_labels[i])
        for j, k in enumerate(names):
            show_map(axes[i, j + 1], maps[k][i], signed=signed, clip=clip, vmax=vmax)
        for j, k in enumerate(["input"] + names):
            if k in notes:
                axes[i, j].set_xlabel(notes[k][i], fontsize=7, labelpad=2)
    for j, k in enumerate(["input"] + names):
        axes[0, j].set_title(k if col_labels is None else (["input"] + list(col_labels))[j])
    note = _scale_text(clip, shared and bool(names))
    if note is not None:
        title = f"{title} ({note})" if title else note
    right = 1 - bar / width
    if title:
        _place_suptitle(fig, title, axes[0], right=right)
    else:
        fig.tight_layout(rect=(0, 0, right, 1))
    if vmax is not None:
        for ax in axes[:, 1:].flat:
            ax.apply_aspect()                     # the drawn (square) image boxes
        boxes = [ax.get_position() for ax in axes[:, 1:].flat]
        x0 = max(b.x1 for b in boxes) + 0.1 / width
        y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
        cax = fig.add_axes((x0, y0, 0.12 / width, y1 - y0))
        cb = fig.colorbar(axes[0, 1].images[0], cax=cax)
        cb.ax.tick_params(labelsize=7)
        cb.set_label("value" if signed else "|value|", fontsize=7)
    return fig


def toy_gradient_panels(models: Mapping[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                        pair: torch.Tensor, resolution: int = 150, margin: float = 0.5) -> Figure:
    """P1 Fig. 1: one panel per 2-D model (name -> single-output model, e.g. ``LogitMargin``).

    Filled level curves of the output, the decision boundary (output 0), the data ``x``
    coloured by ``y``, and the gradients at the two points of ``pair`` (2, 2) as arrows on one
    common scale for all panels (so small gradients look small); each title gives their l2
    distance and cosine similarity.

    Parameters
    ----------
    x, y : torch.Tensor
        The (N, 2) data points and their (N,) labels (colours only).
    pair : torch.Tensor
        The (2, 2) points whose gradients are drawn.
    resolution, margin : int, float
        Grid points per axis of the level curves; space around the data, in input units.
    """
    if pair.shape != (2, 2):
        raise ValueError(f"pair must be two 2-D points, shape (2, 2); got {tuple(pair.shape)}")
    lo = x.min(0).values - margin
    hi = x.max(0).values + margin
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], resolution),
                            torch.linspace(lo[1], hi[1], resolution), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    from .attributions import grad

    first = torch.zeros(len(pair), dtype=torch.long)  # the single output of each model
    grads = {name: grad(m, pair, first).detach().cpu() for name, m in models.items()}
    longest = max(float(g.norm(dim=1).max()) for g in grads.values()) or 1.0
    scale = 0.35 * float((hi - lo).max()) / longest
    fig, axes = plt.subplots(1, len(models), figsize=(3.1 * len(models), 3.1), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        with torch.no_grad():
            z = _np(m(*to_device_of(m, grid))[:, 0].view(resolution, resolution))
        v = float(np.abs(z).max()) or 1.0
        ax.contourf(_np(gx), _np(gy), z, levels=np.linspace(-v, v, 21), cmap=SIGNED_CMAP, alpha=0.6)
        ax.contour(_np(gx), _np(gy), z, levels=[0.0], colors="k", linewidths=1.2)
        ax.scatter(_np(x[:, 0]), _np(x[:, 1]), c=_np(y), cmap="coolwarm", s=3, alpha=0.4, linewidths=0)
        g = grads[name]
        for point, vec in zip(pair, g):
            ax.annotate("", xy=(point + scale * vec).tolist(), xytext=point.tolist(),
                        arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.5})
        ax.plot(pair[:, 0], pair[:, 1], "o", color="gold", markeredgecolor="k", markersize=5)
        l2 = float((g[0] - g[1]).norm())
        cos = float(torch.nn.functional.cosine_similarity(g[0], g[1], dim=0))
        ax.set_title(f"{name}\nℓ2 = {l2:.3f}, cos = {cos:.3f}")
        ax.set_xlim(float(lo[0]), float(hi[0])), ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    fig.tight_layout()
    return fig


def insertion_strip(reports: Mapping[str, Mapping[str, Any]], x: torch.Tensor, index: int = 0,
                    gammas: Sequence[float] = (0.05, 0.2, 0.4, 0.6), baseline: str | torch.Tensor = "zero",
                    scale: float = 1.4) -> Figure:
    """P1 Fig. 2b: per model (row), the attacked map and the Adv-Insertion inputs at ``gammas``.

    ``reports``: name -> one attribution's entry of ``evaluation.saliency_report`` (with an
    attack); ``x`` the clean images it scored.  Column 0 the clean image, 1 the map of x_adv,
    then x with only its top-gamma pixels by that map kept, the other pixels set to ``baseline``
    (``metrics.insertion_images``).  ``index``: the image of ``x`` shown; ``scale``: inches per panel.
    """
    from .metrics import insertion_images

    names = list(reports)
    cols = 2 + len(gammas)
    fig, axes = plt.subplots(len(names), cols, figsize=(scale * cols, scale * len(names)), squeeze=False)
    for i, name in enumerate(names):
        h_adv = reports[name]["map_adv"][index:index + 1].detach().cpu()
        base = baseline.detach().cpu() if isinstance(baseline, torch.Tensor) else baseline
        imgs = insertion_images(x[index:index + 1].detach().cpu(), h_adv, fractions=list(gammas), baseline=base)[0]
        axes[i, 0].imshow(to_image(x[index]))
        show_map(axes[i, 1], h_adv[0])
        for j, img in enumerate(imgs):
            axes[i, 2 + j].imshow(to_image(img))
            axes[0, 2 + j].set_title(f"γ = {gammas[j]}")
        axes[i, 0].set_ylabel(name)
    axes[0, 0].set_title("x")
    axes[0, 1].set_title("map of x_adv")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    fig.tight_layout()
    return fig


def attack_grid(x: torch.Tensor, reports: Mapping[str, Mapping[str, Any]], scale: float = 1.3) -> Figure:
    """P1 Fig. 3a: per image two rows (clean map, attacked map), one column per model.

    ``reports``: name -> one attribution's entry of ``evaluation.saliency_report`` with an attack,
    for the images ``x`` (the first ``len(x)`` rows are shown).  Column 0 shows x and x_adv of
    the first model.
    """
    names = list(reports)
    n = len(x)
    fig, axes = plt.subplots(2 * n, len(names) + 1, figsize=(scale * (len(names) + 1), scale * 2 * n),
                             squeeze=False)
    first = reports[names[0]]
    for i in range(n):
        axes[2 * i, 0].imshow(to_image(x[i]))
        axes[2 * i + 1, 0].imshow(to_image(first["x_adv"][i]))
        axes[2 * i, 0].set_ylabel("clean")
        axes[2 * i + 1, 0].set_ylabel("attacked")
        for j, name in enumerate(names):
            show_map(axes[2 * i, j + 1], reports[name]["map"][i])
            show_map(axes[2 * i + 1, j + 1], reports[name]["map_adv"][i])
    for j, name in enumerate(["input"] + names):
        axes[0, j].set_title(name)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    fig.tight_layout()
    return fig


def insertion_curves(evals: Mapping[tuple[str, int], Mapping[str, Any]], methods: Sequence[str],
                     seeds: Sequence[int], attribution: str = "grad",
                     fractions: torch.Tensor | Sequence[float] | None = None,
                     title: str | None = None) -> Figure:
    """P1 Fig. 2a: mean Insertion (solid) and Adv-Insertion (dotted) curve per method, averaged
    over images and ``seeds``.  ``evals``: ``{(method, seed): {"report": saliency_report}}``;
    ``fractions``: the gammas the curves were scored at (default 0, 0.05, ..., 1,
    ``metrics.insertion_curve``'s; P1's released protocol: ``papers.p1.insertion_kw``)."""
    fractions = torch.linspace(0, 1, 21) if fractions is None else fractions
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, m in enumerate(methods):
        for key, style in (("insertion_curve", "-"), ("adv_insertion_curve", ":")):
            curve = torch.stack([evals[(m, s)]["report"][attribution][key].detach().cpu().mean(0)
                                 for s in seeds]).mean(0)
            ax.plot(_np(fractions), _np(curve), style, color=f"C{i}", label=m if style == "-" else None)
    ax.set(xlabel="fraction γ of pixels inserted", ylabel="p(true class)", title=title)
    ax.legend(fontsize=7)
    return fig


def bound_curves(bounds: pd.DataFrame, seed: int, title: str | None = None) -> Figure:
    """P1 Fig. 3b: mean bound (solid) and Gamma_cos (dotted) against the noise level, per
    method, for one ``seed`` (log-log).  ``bounds``: the DataFrame of
    ``papers.p1.bound_experiment``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (m, d) in enumerate(bounds[bounds.seed == seed].groupby("method", sort=False)):
        g = d.groupby("eps")[["bound", "cosd"]].mean()
        ax.plot(g.index, g["bound"], "-o", color=f"C{i}", label=f"{m}: bound")
        ax.plot(g.index, g["cosd"], ":s", color=f"C{i}", label=f"{m}: Γ_cos")
    levels = sorted(bounds["eps"].unique())
    ax.set(xscale="log", yscale="log", xlabel="noise ε (0-255 units)", ylabel="mean over images",
           title=title)
    ax.set_xticks(levels, [str(e) for e in levels])
    ax.legend(fontsize=7)
    return fig


def class_examples(ds: ArrayDataset, title: str | None = None, n_classes: int = 10) -> Figure:
    """One test image per class (first of each) and, if the dataset has them, its object mask."""
    fig, axes = plt.subplots(2, n_classes, figsize=(1.2 * n_classes, 2.7), squeeze=False)
    for c in range(n_classes):
        i = int((ds.y == c).nonzero()[0])
        axes[0, c].imshow(to_image(ds.x[i]))
        axes[0, c].set_title(ds.classes[c], fontsize=7)
        if getattr(ds, "masks", None) is not None:
            axes[1, c].imshow(ds.masks[i, 0], cmap="gray")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    axes[0, 0].set_ylabel("image"), axes[1, 0].set_ylabel("object mask")
    fig.suptitle(title)
    return fig


def _measure_names(table: pd.DataFrame, score: str, measure: str | None) -> pd.Series | None:
    """The column of ``table`` naming each row's measure, if there is one (text, not the
    plotted ``score`` column), as strings; else None."""
    import pandas as pd

    if measure is None or measure == score or measure not in table.columns:
        return None
    col = table[measure]
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return None
    return col.fillna("").astype(str)


def selection_grid(table: pd.DataFrame, score: str, accuracy: str = "accuracy",
                   reference_accuracy: float | None = None, tol: float | None = None,
                   chosen: str = "chosen", title: str | None = None, measure: str | None = "score") -> Figure:
    """P1's selection rule as a figure: one point per grid setting (score against accuracy),
    one colour per method, the admissible region's edge (``reference_accuracy - tol``) as a
    dashed line, the chosen setting of each method ringed.  ``table``: a DataFrame with
    ``method``, ``score``, ``accuracy`` and ``chosen`` (non-empty for the chosen row).

    The x axis is labelled ``accuracy``, the y axis with the measure plotted.  When the table
    has a text column ``measure`` (default ``"score"``, as P3's selection table: "gini" for most
    methods, "group gini" for group) naming each row's measure, the ``score`` column holds
    different measures for different methods: there is one panel per measure (same x axis, same
    cut-off; a method keeps its colour), each y axis labelled ``"<score>: <measure>"``.
    Otherwise one panel, its y axis labelled ``score``.
    """
    names = _measure_names(table, score, measure)
    groups = list(names.unique()) if names is not None else [None]
    colours = {m: f"C{i}" for i, m in enumerate(table["method"].drop_duplicates())}
    n = len(groups)
    figsize = (5.5, 3.8) if n == 1 else (4.2 * n, 3.8)
    fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False, sharex=n > 1)
    for ax, g in zip(axes[0], groups):
        sub = table if g is None else table[names == g]
        for m, d in sub.groupby("method", sort=False):
            ax.plot(d[accuracy], d[score], "o", color=colours[m], label=m)
            pick = d[d[chosen].astype(bool)]
            ax.plot(pick[accuracy], pick[score], "o", ms=13, mfc="none", mec=colours[m], mew=1.5)
        if reference_accuracy is not None and tol is not None:
            ax.axvline(reference_accuracy - tol, ls="--", color="0.4",
                       label=f"admissible: accuracy ≥ {reference_accuracy - tol:.3f}")
        ax.set(xlabel=accuracy, ylabel=f"{score}: {g}" if g else score)
        ax.legend(fontsize=7)
    if n == 1:
        axes[0, 0].set_title(title)
    else:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def game_curves(curves: Mapping[str, tuple[Any, Any]], fractions: Sequence[float] | torch.Tensor | np.ndarray,
                labels: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """P2 Figs. S3-S4: mean deletion and preservation curves per method.

    ``curves``: {method: (deletion curve, preservation curve)} (each a (F,) mean over images,
    or a list of them over seeds, averaged), ``fractions``: the (F,) removed fractions.
    """
    labels = labels or {}
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=True)
    for m, (dele, pres) in curves.items():
        for ax, c in zip(axes, (dele, pres)):
            c = torch.stack([torch.as_tensor(v).detach().cpu() for v in c]).mean(0) if isinstance(c, (list, tuple)) else c
            ax.plot(_np(fractions), _np(c), label=labels.get(m, m),
                    lw=2.2 if m == "relex" else 1.2)
    axes[0].set(title="deletion (most relevant first; lower is better)", xlabel="fraction of pixels removed",
                ylabel="softmax of the clean prediction")
    axes[1].set(title="preservation (least relevant first; higher is better)", xlabel="fraction of pixels removed")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def similarity_vs_eps(table: pd.DataFrame, measures: Sequence[str] = ("spearman", "top-k intersection"),
                      ceilings: Mapping[str, float] | None = None, title: str | None = None) -> Figure:
    """P2 Fig. 3 / S1: mean ± std over seeds of the clean-vs-attacked map similarity per PGD
    budget, one line per method.  ``table``: rows with measure, label, eps, seed, value.
    ``ceilings``: {label: value} drawn dotted on the Spearman panels (a method's similarity to
    itself under fresh random draws: what no attacked map can exceed on average)."""
    panels = {meas: table[table.measure == meas] for meas in measures}
    return lines_vs_eps(panels, ylabel={m: f"{m}, clean vs attacked" for m in measures},
                        xlabel="PGD budget ε (0-255 units)", title=title,
                        ceilings={m: ceilings for m in measures if m.startswith("spearman")} if ceilings else None)


def lines_vs_eps(panels: Mapping[str, pd.DataFrame], ylabel: str | Mapping[str, str],
                 xlabel: str = "budget ε (0-255 units)", title: str | None = None,
                 ceilings: Mapping[str, Mapping[str, float]] | None = None, ylim: tuple[float, float] | None = None,
                 logx: bool = True) -> Figure:
    """One panel per entry of ``panels`` ({panel title: rows with label, eps, value, one per
    seed}): mean ± std over seeds against the budget, one line per label (RelEx bold), the
    legend beside the last panel so that it covers no line.  ``ceilings``: {panel: {label:
    value}} drawn dotted (e.g. a method against itself with fresh random draws).  ``logx``: a
    logarithmic x axis whose major ticks are the panel's budgets, labelled plainly ("1", "4",
    "16"), and no minor tick labels (they would overlap)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.6, 3.2), squeeze=False)
    for ax, (name, sub) in zip(axes[0], panels.items()):
        for lab, g in sub.groupby("label", sort=False):
            s = g.groupby("eps")["value"].agg(["mean", "std"]).fillna(0.0)
            line = ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", ms=3.5, capsize=3, label=lab,
                               lw=2.2 if lab == "RelEx" else 1.2)
            ceil = (ceilings or {}).get(name, {})
            if lab in ceil and ceil[lab] < 0.999:
                ax.axhline(ceil[lab], ls=":", color=line[0].get_color(), lw=1.2, label=f"{lab} vs itself, new draws")
        ax.set(xlabel=xlabel, ylabel=ylabel if isinstance(ylabel, str) else ylabel.get(name, name), title=name)
        if logx:
            ax.set_xscale("log")
            budgets = sorted({float(e) for e in sub["eps"].dropna()})
            if budgets:
                ax.set_xticks(budgets, [f"{e:g}" for e in budgets])
            ax.xaxis.set_minor_formatter(NullFormatter())
        if ylim:
            ax.set_ylim(*ylim)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_evidence(probs: Mapping[str, torch.Tensor], classes: Sequence[int],
                   class_names: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                   title: str | None = None) -> Figure:
    """P2 Fig. S5: for each explained class (rows) the softmax over all classes (bars) of the
    explanation, one panel per method.  ``probs``: {method: (len(classes), K)}."""
    labels = labels or {}
    methods = list(probs)
    fig, axes = plt.subplots(len(classes), len(methods), figsize=(3.6 * len(methods), 1.7 * len(classes)),
                             squeeze=False, sharey=True)
    for j, m in enumerate(methods):
        p = probs[m].detach().cpu().numpy()
        k = p.shape[1]
        for i, c in enumerate(classes):
            ax = axes[i, j]
            ax.bar(range(k), p[i], color=["C3" if q == c else "C0" for q in range(k)])
            ax.set_xticks(range(k))
            ax.set_xticklabels(class_names if class_names else range(k), fontsize=6, rotation=90)
            ax.set_ylim(0, 1)
            if j == 0:
                ax.set_ylabel(f"explains {class_names[c] if class_names else c}", fontsize=8)
            if i == 0:
                ax.set_title(labels.get(m, m))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# dash patterns of reference lines, one per method: distinct even where two lines coincide
REFERENCE_DASHES = [(0, (1, 1.5)), (0, (5, 2)), (0, (7, 2, 1.5, 2)), (0, (2.5, 2.5)),
                    (0, (8, 2, 1.5, 2, 1.5, 2)), (0, (12, 3)), (0, (1, 3)), (0, (4, 1.5, 1, 1.5, 1, 1.5))]


def randomization_curves(table: pd.DataFrame, references: Mapping[str, float] | None = None,
                         labels: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """P3 Fig. 11: SSIM between the trained maps and the maps after cascading randomization
    (output layer first), mean ± std over seeds, one line per method; ``references``
    ({method: value}) e.g. the SSIM with a retrained twin's maps, drawn as a horizontal line in
    the method's colour with a dash pattern of its own (``REFERENCE_DASHES``, in method order)
    and its own legend entry "<method> twin (<value>)" right after the method's, so that
    coinciding references stay attributable.  ``table``: rows with method, seed, layers,
    randomized, ssim (``papers.p3.randomization``)."""
    labels = labels or {}
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = table.drop_duplicates("layers").sort_values("layers")["randomized"].tolist()
    handles = []
    n_ref = 0
    for i, (m, g) in enumerate(table.groupby("method", sort=False)):
        s = g.groupby("layers")["ssim"].agg(["mean", "std"]).fillna(0.0)
        handles.append(ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, color=f"C{i}",
                                   label=labels.get(m, m)))
        if references and m in references:
            v = float(references[m])
            handles.append(ax.axhline(v, ls=REFERENCE_DASHES[n_ref % len(REFERENCE_DASHES)], color=f"C{i}",
                                      lw=1.2, label=f"{labels.get(m, m)} twin ({v:.2f})"))
            n_ref += 1
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax.set(xlabel="randomized down to (cumulative, from the output)", ylabel="SSIM with the trained maps",
           ylim=(-0.05, 1.05), title=title)
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
              title="broken lines: SSIM with\nthe retrained twin" if n_ref else None, title_fontsize=7)
    return fig


def _legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str], fontsize: float = 7) -> None:
    """A figure legend under the panels, so that it covers no curve: in as many columns as the
    figure's width holds, the figure made taller by the legend's height and the panels (and a
    suptitle) laid out above it with ``tight_layout``."""
    renderer = _renderer(fig)
    width, height = fig.get_size_inches()
    ncol = max(len(labels), 1)
    while True:
        leg = fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                         fontsize=fontsize, frameon=False)
        box = leg.get_window_extent(renderer)
        if ncol == 1 or box.width <= 0.98 * width * fig.dpi:
            break
        leg.remove()
        ncol -= 1
    room = box.y1 / fig.dpi                      # the legend's top, inches above the figure's bottom
    fig.set_size_inches(width, height + room)
    fig.tight_layout(rect=(0, room / (height + room), 1, 1))


def sweep_curves(df: pd.DataFrame, x: str, measures: Sequence[str], hue: str = "method",
                 labels: Mapping[Any, str] | None = None, logx: bool | Collection[str] = False,
                 ylabels: Mapping[str, str] | None = None, title: str | None = None, scale: float = 3.2,
                 xlabels: Mapping[str, str] | None = None) -> Figure:
    """One panel per measure: mean ± std over seeds of ``value`` against ``x``, one line per value
    of ``hue`` (P4 Figs. 4, 6-8).  ``df``: long rows with ``hue``, ``x``, ``seed``, ``measure``,
    ``value``; ``labels`` maps hue values to legend names, ``ylabels`` / ``xlabels`` measures to
    axis names; ``logx``: True, or the measures whose x axis is logarithmic.  The legend (one
    entry per hue value) is a figure legend under the panels, never over a curve."""
    labels, ylabels, xlabels = labels or {}, ylabels or {}, xlabels or {}
    fig, axes = plt.subplots(1, len(measures), figsize=(scale * len(measures), 2.9), squeeze=False)
    entries: dict[str, Any] = {}
    for ax, m in zip(axes[0], measures):
        sub = df[df.measure == m]
        for i, (h, g) in enumerate(sub.groupby(hue, sort=False)):
            s = g.groupby(x)["value"].agg(["mean", "std"]).fillna(0.0)
            line = ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", ms=4, capsize=3, color=f"C{i}",
                               label=labels.get(h, h))
            entries.setdefault(str(labels.get(h, h)), line)
        if logx is True or (logx and m in logx):
            ax.set_xscale("log")
        ax.set(xlabel=xlabels.get(m, x), ylabel=ylabels.get(m, m))
    if title:
        fig.suptitle(title)
    if entries:
        _legend_below(fig, list(entries.values()), list(entries))
    else:
        fig.tight_layout()
    return fig


def _param_text(p: Any) -> str:
    try:
        return f"{p:g}"
    except (TypeError, ValueError):
        return str(p)


def frontier_curves(df: pd.DataFrame, measures: Sequence[str], x: str = "accuracy", hue: str = "method",
                    param: str = "lam", labels: Mapping[Any, str] | None = None,
                    ylabels: Mapping[str, str] | None = None, xline: float | Sequence[float] | None = None,
                    title: str | None = None, scale: float = 3.2) -> Figure:
    """P4 Fig. 4 redrawn as trade-off curves: leakage / robustness against accuracy over a
    hyperparameter (``param``, e.g. λ), one panel per measure of ``measures``.

    ``df``: long rows with ``hue``, ``param``, ``seed``, ``measure``, ``value`` (as for
    ``sweep_curves``); the x of a (hue, param, seed) is its row whose measure is ``x`` (e.g.
    "accuracy"), its y in a panel its row of that panel's measure.  For each hue value (colour
    C0, C1, ... in order of appearance, the same in every panel): one thin translucent line per
    seed through its points in the order of ``param``, and a bold line with markers through the
    means over seeds (of x and of y, over the seeds that have both) per ``param`` value, each
    mean marker annotated with its ``param`` value ("0.1", "1").  ``labels``: hue value -> legend
    name; ``ylabels``: measure -> y-axis label.  ``xline``: a number or numbers (e.g. the
    matched-accuracy targets) drawn as dotted vertical lines, "matched accuracy" in the legend.
    The legend (one entry per hue, "one seed", "matched accuracy") is under the panels.
    """
    import pandas as pd
    from matplotlib.lines import Line2D

    labels, ylabels = labels or {}, ylabels or {}
    keys = [hue, param, "seed"]
    xs = df[df.measure == x]
    if xs.empty:
        raise ValueError(f"frontier_curves: no rows with measure == x ({x!r}) for the x axis; "
                         f"the measures are {sorted(map(str, df.measure.unique()))}")
    acc = xs.groupby(keys, sort=False)["value"].mean()
    hues = list(df[hue].drop_duplicates())
    colour = {h: f"C{i}" for i, h in enumerate(hues)}
    lines = [] if xline is None else [float(v) for v in np.atleast_1d(np.asarray(xline, dtype=float))]
    fig, axes = plt.subplots(1, len(measures), figsize=(scale * len(measures), scale), squeeze=False)
    entries: dict[str, Any] = {}
    for ax, m in zip(axes[0], measures):
        ys = df[df.measure == m].groupby(keys, sort=False)["value"].mean()
        pts = pd.concat({"x": acc, "y": ys}, axis=1, join="inner").dropna().reset_index()
        for h in hues:
            d = pts[pts[hue] == h]
            if d.empty:
                continue
            c = colour[h]
            for _, g in d.groupby("seed", sort=True):
                g = g.sort_values(param)
                ax.plot(g["x"], g["y"], "-o", color=c, lw=0.8, ms=2, alpha=0.35, label="_nolegend_")
            mean = d.groupby(param, sort=True)[["x", "y"]].mean()
            name = str(labels.get(h, h))
            line, = ax.plot(mean["x"], mean["y"], "-o", color=c, lw=2.2, ms=5, label=name, zorder=3)
            entries.setdefault(name, line)
            for p, (mx, my) in zip(mean.index, mean[["x", "y"]].to_numpy()):
                ax.annotate(_param_text(p), (mx, my), xytext=(3, 3), textcoords="offset points", fontsize=6,
                            color=c, zorder=4)
        for k, v in enumerate(lines):
            ax.axvline(v, ls=":", color="0.3", lw=1.2, label="matched accuracy" if k == 0 else "_nolegend_")
        ax.set(xlabel=x, ylabel=ylabels.get(m, m))
    if entries:
        entries["one seed"] = Line2D([], [], color="0.4", lw=0.8, alpha=0.6, marker="o", ms=2)
    if lines:
        entries["matched accuracy"] = Line2D([], [], ls=":", color="0.3", lw=1.2)
    if title:
        fig.suptitle(title)
    if entries:
        _legend_below(fig, list(entries.values()), list(entries))
    else:
        fig.tight_layout()
    return fig


def _wrap_label(name: str, width: int = 16) -> str:
    """``name`` on more lines if longer than ``width``: broken after " + " and before " (" only
    ("ST + ours (marginal density)" -> "ST + ours" / "(marginal density)")."""
    if len(name) <= width:
        return name
    pieces = re.split(r"(?<= \+) | (?=\()", name)
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(out[-1]) + 1 + len(piece) <= width:
            out[-1] += " " + piece
        else:
            out.append(piece)
    return "\n".join(out)


def image_grid(images: Mapping[str, torch.Tensor], col_labels: Sequence[str] | None = None,
               title: str | None = None, scale: float = 1.1) -> Figure:
    """Rows of images: ``images`` maps a row name to a (K, C, H, W) batch in [0, 1] (P4 Figs. 9-10:
    one activation-maximization image per class).  The row names are written horizontally left
    of the first column, long ones on two lines (broken at " + " / " ("), so that they overlap
    neither each other nor the images."""
    names = list(images)
    k = max(len(v) for v in images.values())
    fig, axes = plt.subplots(len(names), k, figsize=(scale * k, scale * len(names) + 0.4), squeeze=False)
    for i, name in enumerate(names):
        for j in range(k):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            if j < len(images[name]):
                img = to_image(images[name][j])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(_wrap_label(str(name)), fontsize=7, rotation=0, ha="right", va="center",
                              labelpad=4)
            if i == 0 and col_labels is not None:
                ax.set_title(col_labels[j], fontsize=7)
    # the figure wider by the row names' width, so that the images keep their size
    renderer = _renderer(fig)
    room = max(ax.yaxis.label.get_window_extent(renderer).width for ax in axes[:, 0]) / fig.dpi
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + room, height)
    if title:
        _place_suptitle(fig, title, axes[0])
    else:
        fig.tight_layout()
    return fig


def mean_curves(curves: Mapping[str, Sequence[torch.Tensor]],
                fractions: torch.Tensor | Sequence[float] | None = None,
                xlabel: str = "fraction of pixels inserted (by attribution rank)",
                ylabel: str = "p(true class)", title: str | None = None,
                figsize: tuple[float, float] = (5, 3.5)) -> Figure:
    """One line per key of ``curves`` (``{label: [per-seed (N, F) curves]}``): the mean over the
    images of each seed, then over the seeds (the tour's insertion curves).  ``fractions``: the
    F abscissae (default 0, 0.05, ..., 1, ``metrics.insertion_curve``'s)."""
    first = next(iter(curves.values()))[0]
    fractions = torch.linspace(0, 1, first.shape[-1]) if fractions is None else fractions
    fig, ax = plt.subplots(figsize=figsize)
    for label, per_seed in curves.items():
        ax.plot(_np(fractions), _np(torch.stack([c.detach().cpu().mean(0) for c in per_seed]).mean(0)), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def images_with_masks(x: torch.Tensor, masks: torch.Tensor, titles: Sequence[str] | None = None,
                      title: str | None = None, height: float = 2.4) -> Figure:
    """A row of grey images ``x`` (N, 1, H, W) in [0, 1] with the outline of a boolean mask each
    (``masks`` (N, 1, H, W); P4 Fig. 3a: the BlockMNIST null block)."""
    fig, axes = plt.subplots(1, len(x), figsize=(len(x), height), squeeze=False)
    for i, (ax, img, m) in enumerate(zip(axes[0], x, masks)):
        ax.imshow(_np(img[0]), cmap="gray", vmin=0, vmax=1)
        ax.contour(_np(m[0].float()), levels=[0.5], colors="C1", linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def cost_scatter(points: pd.DataFrame, x: str, ys: Sequence[str], labels: Mapping[str, str] | None = None,
                 reference: str | None = "ce", logx: bool = True, title: str | None = None,
                 scale: float = 3.4) -> Figure:
    """Cost against robustness, one panel per measure of ``ys``: each method (the rows of
    ``points``, indexed by name, with columns ``<measure> mean`` and ``<measure> std`` for ``x``
    and every ``ys``; a missing std draws no bar) as a point with its spread over seeds as error
    bars, labelled with ``labels[name]``.  ``reference`` (a method name, e.g. ``ce``): its value
    drawn as dotted lines, so that a point above and to the right of both costs more and buys
    more.  ``logx``: the cost axis in log scale (costs are ratios)."""
    labels = labels or {}
    missing = [f"{m} mean" for m in (x, *ys) if f"{m} mean" not in points.columns]
    if missing:
        raise ValueError(f"cost_scatter: columns {missing} are not in points; accepted: {list(points.columns)}")
    fig, axes = plt.subplots(1, len(ys), figsize=(scale * len(ys), scale), squeeze=False)
    for ax, m in zip(axes[0], ys):
        for i, (name, row) in enumerate(points.iterrows()):
            xe, ye = row.get(f"{x} std"), row.get(f"{m} std")
            ax.errorbar(row[f"{x} mean"], row[f"{m} mean"], xerr=None if xe is None or np.isnan(xe) else xe,
                        yerr=None if ye is None or np.isnan(ye) else ye, fmt="o", ms=4, color=f"C{i % 10}",
                        elinewidth=0.8, capsize=2)
            ax.annotate(labels.get(name, str(name)), (row[f"{x} mean"], row[f"{m} mean"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        if reference is not None and reference in points.index:
            ax.axvline(points.loc[reference, f"{x} mean"], ls=":", lw=0.8, color="0.4")
            ax.axhline(points.loc[reference, f"{m} mean"], ls=":", lw=0.8, color="0.4")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(m)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def rank_heatmap(mean: pd.DataFrame, std: pd.DataFrame | None = None, title: str | None = None,
                 cmap: str = "viridis_r") -> Figure:
    """Ranks of methods (rows) on measures (columns) as a heat map, 1 = best in the darkest colour
    (``cmap`` reversed), each cell printed as ``mean`` and, below it, ``± std`` (the spread of the
    rank over seeds, from ``std`` of the same shape; NaN or absent: none).  A NaN mean (a method
    not scored on a measure) is left blank and printed "–"."""
    values = mean.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n_cols, 0.8 + 0.34 * n_rows))
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    spread = None if std is None else std.reindex(index=mean.index, columns=mean.columns).to_numpy(dtype=float)
    lo, hi = np.nanmin(values) if np.isfinite(values).any() else 0, np.nanmax(values) if np.isfinite(values).any() else 1
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if np.isnan(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=6)
                continue
            text = f"{v:.1f}" if spread is None or np.isnan(spread[i, j]) else f"{v:.1f}\n±{spread[i, j]:.1f}"
            dark = (v - lo) / (hi - lo or 1) < 0.5  # the darker half of viridis_r: white text
            ax.text(j, i, text, ha="center", va="center", fontsize=5.5, color="white" if dark else "black")
    ax.set_xticks(range(n_cols), [_wrap_label(str(c), 14) for c in mean.columns], rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(n_rows), [str(r) for r in mean.index], fontsize=6.5)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="rank (1 = best)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def selection_strips(table: pd.DataFrame, reference_accuracy: float, tol: float, accuracy: str = "validation accuracy",
                     setting: str = "setting", chosen: str = "chosen", title: str | None = None) -> Figure:
    """A selection over many methods, one row each (``table``'s ``method`` column, in order of
    appearance): every grid setting as a point at its ``accuracy``, labelled with its ``setting``
    text, the chosen one (non-empty ``chosen``) ringed; the reference accuracy (e.g. ce's) as a
    dotted line and the admissible band's edge (``reference_accuracy - tol``) as a dashed one."""
    methods = list(table["method"].drop_duplicates())
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(methods)))
    for i, m in enumerate(methods):
        sub = table[table["method"] == m]
        ax.plot(sub[accuracy], [i] * len(sub), "-", color="0.8", lw=0.8, zorder=1)
        ax.scatter(sub[accuracy], [i] * len(sub), s=14, color=f"C{i % 10}", zorder=2)
        for _, row in sub.iterrows():
            ax.annotate(str(row[setting]), (row[accuracy], i), xytext=(0, 4), textcoords="offset points",
                        fontsize=4.5, ha="center")
            if str(row.get(chosen, "") or "").strip():
                ax.scatter([row[accuracy]], [i], s=70, facecolors="none", edgecolors="k", linewidths=1.0, zorder=3)
    ax.axvline(reference_accuracy, ls=":", color="0.3", lw=0.9, label="reference accuracy")
    ax.axvline(reference_accuracy - tol, ls="--", color="C3", lw=0.9, label=f"band edge (−{tol:g})")
    ax.set_yticks(range(len(methods)), methods, fontsize=6.5)
    ax.set_ylim(len(methods) - 0.5, -0.7)
    ax.set_xlabel(accuracy)
    ax.legend(fontsize=6, loc="lower left", frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
