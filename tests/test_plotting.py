import matplotlib.pyplot as plt
import pytest
import torch

from robust_saliency import plotting


def test_savefig_writes_png_and_pdf_per_profile(tmp_path):
    plotting.setup("99_demo", profile="cpu", root=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = plotting.savefig("fig1_line", fig)
    assert {p.name for p in paths} == {"fig1_line.png", "fig1_line.pdf"}
    assert all(not p.is_absolute() and p.parent.as_posix() == "figures/99_demo" for p in paths)  # no machine path
    paths = [tmp_path / p for p in paths]
    assert all(p.stat().st_size > 0 for p in paths)
    first = paths[0].read_bytes()
    plotting.savefig("fig1_line", fig)  # same figure, same bytes
    assert paths[0].read_bytes() == first
    # other profiles never overwrite the cpu figures
    plotting.setup("99_demo", profile="smoke", root=tmp_path)
    (p,) = plotting.savefig("fig1_line", fig, formats=("png",))
    assert p.parent.as_posix() == "figures/99_demo/smoke" and (tmp_path / p).is_file()
    assert not list(tmp_path.glob("**/*.tmp"))
    plt.close(fig)


def test_map_grid_and_show_map():
    imgs = torch.rand(2, 3, 8, 8)
    maps = {"a": torch.randn(2, 3, 8, 8), "b": torch.randn(2, 1, 8, 8)}
    fig = plotting.map_grid(imgs, maps, row_labels=["x0", "x1"])
    assert len(fig.axes) == 2 * 3
    ax = fig.axes[1]
    arr = ax.images[0].get_array()
    assert arr.shape == (8, 8) and float(arr.min()) >= 0  # magnitudes
    plt.close(fig)
    fig, ax = plt.subplots()
    plotting.show_map(ax, torch.tensor([[-2.0, 1.0]]), signed=True)
    lo, hi = ax.images[0].get_clim()
    assert lo == -2 and hi == 2
    plt.close(fig)


def test_toy_gradient_panels_titles_match_the_gradients():
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 1)
    quad = lambda p: (p ** 2).sum(1, keepdim=True)  # noqa: E731  grad = 2p
    x, y = torch.randn(30, 2), torch.randint(0, 2, (30,))
    pair = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fig = plotting.toy_gradient_panels({"lin": lin, "quad": quad}, x, y, pair, resolution=20)
    t_lin, t_quad = (ax.get_title() for ax in fig.axes[:2])
    assert "ℓ2 = 0.000, cos = 1.000" in t_lin  # a linear model has one gradient everywhere
    assert "ℓ2 = 2.828, cos = 0.000" in t_quad  # (2, 0) vs (0, 2)
    plt.close(fig)


def test_insertion_strip_and_attack_grid_shapes():
    x = torch.rand(2, 3, 8, 8)
    rep = {"map": torch.rand(2, 3, 8, 8), "map_adv": torch.rand(2, 3, 8, 8), "x_adv": x.clone()}
    fig = plotting.insertion_strip({"a": rep, "b": rep}, x, index=1, gammas=(0.25, 0.5))
    assert len(fig.axes) == 2 * 4
    shown = fig.axes[3].images[0].get_array()  # gamma 0.5: half the pixels kept
    assert (abs(shown).sum(-1) > 0).sum() == 32
    plt.close(fig)
    mean = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)   # P1's baseline: the dataset mean
    fig = plotting.insertion_strip({"a": rep}, x, index=1, gammas=(0.25, 0.5), baseline=mean)
    from robust_saliency.metrics import insertion_images
    imgs = insertion_images(x[1:2], rep["map_adv"][1:2], fractions=[0.5], baseline=mean)[0, 0]
    dropped = imgs != x[1]
    assert dropped.any() and torch.equal(imgs[dropped], mean[0].expand_as(imgs)[dropped])
    plt.close(fig)
    fig = plotting.attack_grid(x, {"a": rep, "b": rep, "c": rep})
    assert len(fig.axes) == 4 * 4
    plt.close(fig)


def test_selection_grid_marks_the_cut_off_and_the_chosen_points():
    import pandas as pd

    table = pd.DataFrame([{"method": "l2", "score": 0.90, "accuracy": 0.80, "chosen": ""},
                          {"method": "l2", "score": 0.95, "accuracy": 0.70, "chosen": "✓"},
                          {"method": "hessian", "score": 0.92, "accuracy": 0.79, "chosen": "✓"}])
    fig = plotting.selection_grid(table, "score", reference_accuracy=0.81, tol=0.02)
    ax = fig.axes[0]
    lines = ax.get_lines()
    cut = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(cut) == 1 and cut[0].get_xdata()[0] == pytest.approx(0.79)
    rings = [ln for ln in lines if ln.get_markerfacecolor() == "none"]
    assert sorted(float(x) for ln in rings for x in ln.get_xdata()) == [0.70, 0.79]
    assert ax.get_xlabel() == "accuracy"
    plt.close(fig)
    fig = plotting.selection_grid(table.rename(columns={"accuracy": "validation accuracy"}), "score",
                                  accuracy="validation accuracy")
    assert fig.axes[0].get_xlabel() == "validation accuracy"   # the column it plots
    plt.close(fig)


def test_p2_figures_show_what_they_are_given():
    import pandas as pd

    fr = torch.linspace(0, 1, 5)
    curves = {"relex": (torch.tensor([1.0, .5, .2, .1, 0]), torch.ones(5)),
              "grad": ([torch.full((5,), .5), torch.full((5,), .7)], torch.zeros(5))}
    fig = plotting.game_curves(curves, fr, {"relex": "RelEx", "grad": "SimGrad"})
    dele, pres = fig.axes
    assert [ln.get_label() for ln in dele.lines] == ["RelEx", "SimGrad"]
    assert float(dele.lines[1].get_ydata()[0]) == pytest.approx(0.6)  # mean over the seed list
    plt.close(fig)
    rows = [{"measure": "spearman", "label": lab, "eps": e, "seed": s, "value": v + 0.01 * s}
            for lab, v in (("RelEx", 0.2), ("SimGrad", 0.5)) for e in (1, 4) for s in (0, 1)]
    fig = plotting.similarity_vs_eps(pd.DataFrame(rows), ("spearman",), {"RelEx": 0.7, "SimGrad": 1.0})
    ax = fig.axes[0]
    assert any(ln.get_linestyle() == ":" and ln.get_ydata()[0] == 0.7 for ln in ax.lines)
    assert not any(ln.get_linestyle() == ":" and ln.get_ydata()[0] == 1.0 for ln in ax.lines)
    plt.close(fig)
    probs = {"relex": torch.tensor([[0.1, 0.9], [0.8, 0.2]])}
    fig = plotting.class_evidence(probs, [1, 0], ["a", "b"])
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == pytest.approx([0.1, 0.9])
    plt.close(fig)
    fig = plotting.map_grid(torch.rand(2, 3, 4, 4), {"m": torch.rand(2, 1, 4, 4)}, ["a", "b"], title="T")
    assert fig._suptitle.get_text() == "T"
    plt.close(fig)


def test_show_map_clip_scales_each_map_to_its_percentile():
    import numpy as np

    gen = torch.Generator().manual_seed(0)
    m = 0.5 + 0.5 * torch.rand(1, 32, 32, generator=gen)   # a dim, non-zero background
    m[0, 3, 4] = 100.0                                         # and one bright pixel
    q99 = float(np.percentile(m[0].numpy(), 99))
    fig, (plain, clipped) = plt.subplots(1, 2)
    plotting.show_map(plain, m)
    plotting.show_map(clipped, m, clip=99)
    a, b = plain.images[0].get_array(), clipped.images[0].get_array()
    assert plain.images[0].get_clim() == (0, 100.0) and float(a.max()) == 100.0  # today's: own maximum
    assert float(b.max()) == pytest.approx(q99) and clipped.images[0].get_clim() == pytest.approx((0, q99))
    assert q99 < 1.1
    # the background: ~0 of the colour range without clip, visible with it
    back = np.ones((32, 32), bool)
    back[3, 4] = False
    assert float((a[back] / 100.0).max()) < 0.011
    assert float((b[back] / q99 > 0.4).mean()) > 0.95
    # signed: clipped symmetrically at the percentile of |value|
    s = torch.tensor([[-4.0, 1.0, 0.5, -0.5] * 25])
    plotting.show_map(plain, s, signed=True, clip=50)
    lo, hi = plain.images[-1].get_clim()
    arr = plain.images[-1].get_array()
    assert hi == -lo == pytest.approx(0.75) and float(arr.min()) == pytest.approx(-0.75)
    with pytest.raises(ValueError):
        plotting.show_map(plain, m, clip=0)
    plt.close(fig)


def test_map_grid_clip_is_passed_on_and_named_in_the_title():
    imgs = torch.rand(2, 3, 8, 8)
    maps = {"a": torch.rand(2, 3, 8, 8)}
    maps["a"][0, :, 0, 0] = 50.0
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"], title="T")
    assert fig._suptitle.get_text() == "T"                               # default: unchanged
    assert float(fig.axes[1].images[0].get_array().max()) == pytest.approx(150.0)
    plt.close(fig)
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"], title="T", clip=99)
    assert fig._suptitle.get_text() == "T (each map clipped at its 99th percentile of |value|)"
    shown = fig.axes[1].images[0].get_array()
    summed = maps["a"][0].abs().sum(0).numpy()
    import numpy as np
    assert float(shown.max()) == pytest.approx(float(np.percentile(summed, 99)))
    plt.close(fig)
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"], clip=99.5)
    assert "99.5th percentile" in fig._suptitle.get_text()
    plt.close(fig)


def test_selection_grid_labels_each_panel_with_its_measure():
    import pandas as pd

    table = pd.DataFrame([{"method": "l1", "validation score": 0.60, "validation accuracy": 0.80,
                           "score": "gini", "chosen": "✓"},
                          {"method": "l1", "validation score": 0.70, "validation accuracy": 0.70,
                           "score": "gini", "chosen": ""},
                          {"method": "group", "validation score": 0.30, "validation accuracy": 0.79,
                           "score": "group gini", "chosen": "✓"}])
    fig = plotting.selection_grid(table, "validation score", "validation accuracy", 0.81, 0.02)
    assert [ax.get_ylabel() for ax in fig.axes] == ["validation score: gini", "validation score: group gini"]
    assert all(ax.get_xlabel() == "validation accuracy" for ax in fig.axes)
    gini, group = fig.axes
    assert sorted(float(y) for ln in gini.get_lines() if ln.get_linestyle() == "None"
                  for y in ln.get_ydata()) == [0.6, 0.6, 0.7]                       # no group gini here
    assert [float(y) for ln in group.get_lines() if ln.get_linestyle() == "None" for y in ln.get_ydata()] == [0.3, 0.3]
    assert [ln.get_color() for ln in group.get_lines() if ln.get_linestyle() == "None"][0] == "C1"  # its colour kept
    assert all(any(ln.get_linestyle() == "--" for ln in ax.get_lines()) for ax in fig.axes)  # the cut-off in each
    plt.close(fig)
    # one measure named: one panel, labelled with it; no naming column: the score argument
    fig = plotting.selection_grid(table[table.method == "l1"], "validation score", "validation accuracy")
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "validation score: gini"
    plt.close(fig)
    fig = plotting.selection_grid(table.drop(columns="score"), "validation score", "validation accuracy")
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "validation score"
    plt.close(fig)


def test_randomization_curves_tell_the_reference_lines_apart():
    import pandas as pd

    rows = [{"method": m, "seed": s, "layers": k, "randomized": f"layer{k}", "ssim": 1.0 - 0.3 * k}
            for m in ("ce", "l1", "group") for s in (0, 1) for k in range(3)]
    refs = {"ce": 0.4, "l1": 0.4, "group": 0.4}            # coinciding values
    fig = plotting.randomization_curves(pd.DataFrame(rows), refs, {"ce": "CE", "l1": "L1"})
    ax = fig.axes[0]
    twins = [ln for ln in ax.get_lines() if "twin" in ln.get_label()]
    assert [ln.get_label() for ln in twins] == ["CE twin (0.40)", "L1 twin (0.40)", "group twin (0.40)"]
    assert [ln.get_color() for ln in twins] == ["C0", "C1", "C2"]                   # the methods' colours
    dashes = [ln._unscaled_dash_pattern for ln in twins]
    assert all(d[1] for d in dashes) and len(set(dashes)) == 3                      # broken and all different
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["CE", "CE twin (0.40)", "L1", "L1 twin (0.40)", "group", "group twin (0.40)"]
    plt.close(fig)


def test_lines_vs_eps_log_axis_ticks_at_the_budgets():
    import pandas as pd

    rows = [{"label": lab, "eps": e, "seed": s, "value": 0.1 * e + s}
            for lab in ("RelEx", "SimGrad") for e in (2, 4, 8, 16) for s in (0, 1)]
    df = pd.DataFrame(rows)
    fig = plotting.lines_vs_eps({"a": df, "b": df[df.eps <= 4]}, ylabel="v")
    a, b = fig.axes[:2]
    fig.canvas.draw()
    assert list(a.get_xticks()) == [2, 4, 8, 16] and list(b.get_xticks()) == [2, 4]
    assert [t.get_text() for t in a.get_xticklabels()] == ["2", "4", "8", "16"]
    assert all(t.get_text() == "" for t in a.get_xticklabels(minor=True))
    assert a.get_xscale() == "log"
    plt.close(fig)
    fig = plotting.lines_vs_eps({"a": df}, ylabel="v", logx=False)
    assert fig.axes[0].get_xscale() == "linear"
    plt.close(fig)


def _frontier_rows():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for h in ("a", "b"):
        for lam in (1.0, 0.1, 10.0):                        # not in order: the curves sort by lam
            for s in (0, 1, 2):
                rows.append({"method": h, "lam": lam, "seed": s, "measure": "accuracy", "value": rng.random()})
                for m in ("leak", "rob"):
                    rows.append({"method": h, "lam": lam, "seed": s, "measure": m, "value": rng.random()})
    return pd.DataFrame(rows)


def test_frontier_curves_mean_lines_seed_lines_and_annotations():
    import numpy as np

    df = _frontier_rows()
    fig = plotting.frontier_curves(df, ["leak", "rob"], labels={"a": "A"}, xline=[0.3, 0.6], title="T")
    acc = df[df.measure == "accuracy"].set_index(["method", "lam", "seed"])["value"]
    for ax, m in zip(fig.axes, ("leak", "rob")):
        val = df[df.measure == m].set_index(["method", "lam", "seed"])["value"]
        bold = [ln for ln in ax.lines if ln.get_linewidth() > 2]
        thin = [ln for ln in ax.lines if ln.get_linewidth() < 1]
        assert [ln.get_label() for ln in bold] == ["A", "b"]
        assert len(thin) == 2 * 3                                                   # hues x seeds
        for ln, h in zip(bold, ("a", "b")):
            want_x = acc.loc[h].groupby("lam").mean().sort_index()
            want_y = val.loc[h].groupby("lam").mean().sort_index()
            assert np.allclose(ln.get_xdata(), want_x.to_numpy()) and np.allclose(ln.get_ydata(), want_y.to_numpy())
        first = thin[0]                                                             # hue a, seed 0, by lam
        assert np.allclose(first.get_xdata(), [acc["a", lam, 0] for lam in (0.1, 1.0, 10.0)])
        assert np.allclose(first.get_ydata(), [val["a", lam, 0] for lam in (0.1, 1.0, 10.0)])
        assert [t.get_text() for t in ax.texts] == ["0.1", "1", "10"] * 2
        dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
        assert [tuple(ln.get_xdata()) for ln in dotted] == [(0.3, 0.3), (0.6, 0.6)]
        assert ax.get_xlabel() == "accuracy" and ax.get_ylabel() == m
        assert ax.get_legend() is None
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts.count("A") == texts.count("b") == texts.count("matched accuracy") == 1
    plt.close(fig)
    fig = plotting.frontier_curves(df, ["leak"], xline=0.5)                       # one number
    assert [tuple(ln.get_xdata()) for ln in fig.axes[0].lines if ln.get_linestyle() == ":"] == [(0.5, 0.5)]
    plt.close(fig)
    with pytest.raises(ValueError, match="'acc'"):
        plotting.frontier_curves(df, ["leak"], x="acc")


def _overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_sweep_curves_legend_is_a_figure_legend_below_the_panels():
    df = _frontier_rows()
    fig = plotting.sweep_curves(df, "lam", ["leak", "rob", "accuracy"], labels={"a": "A"}, logx=True, title="T")
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["A", "b"]               # one entry per hue
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = legend.get_window_extent(r)
    assert all(box.y1 <= ax.get_tightbbox(r).y0 for ax in fig.axes)             # under the panels
    plt.close(fig)


def _map_axes(fig, n, k):
    import numpy as np

    return np.array(fig.axes[:n * (k + 1)]).reshape(n, k + 1)[:, 1:].ravel()


def test_map_grid_shared_uses_one_colour_scale():
    import numpy as np

    imgs = torch.rand(2, 3, 8, 8)
    maps = {"small": 0.01 * torch.rand(2, 3, 8, 8), "big": 5 * torch.rand(2, 1, 8, 8)}
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"], title="T", shared=True)
    clims = {ax.images[0].get_clim() for ax in _map_axes(fig, 2, 2)}
    top = max(float(maps[k][i].abs().sum(0).max()) for k in maps for i in range(2))
    assert len(clims) == 1 and next(iter(clims)) == pytest.approx((0, top))
    assert fig._suptitle.get_text() == "T (one colour scale for all maps)"
    assert len(fig.axes) == 2 * 3 + 1                                              # one colorbar
    plt.close(fig)
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"], shared=True, clip=99, signed=True)
    pooled = np.concatenate([maps[k][i].sum(0).abs().numpy().ravel() for k in maps for i in range(2)])
    v = float(np.percentile(pooled, 99))
    assert all(ax.images[0].get_clim() == pytest.approx((-v, v)) for ax in _map_axes(fig, 2, 2))
    assert "one colour scale for all maps" in fig._suptitle.get_text()
    plt.close(fig)
    fig = plotting.map_grid(imgs, maps, ["x0", "x1"])                              # default: per map
    clims = [ax.images[0].get_clim() for ax in _map_axes(fig, 2, 2)]
    assert clims[0] != clims[1] and len(fig.axes) == 2 * 3
    plt.close(fig)


@pytest.mark.parametrize("n", [2, 6])
def test_map_grid_suptitle_sits_just_above_the_column_titles(n):
    maps = {"a": torch.rand(n, 3, 8, 8), "b": torch.rand(n, 1, 8, 8)}
    for kw in ({}, {"notes": {"a": ["0.9"] * n}}, {"shared": True}):
        fig = plotting.map_grid(torch.rand(n, 3, 8, 8), maps, [f"x{i}" for i in range(n)], title="T", **kw)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        st = fig._suptitle.get_window_extent(r)
        top = max(ax.title.get_window_extent(r).y1 for ax in fig.axes if ax.get_title())
        gap = (st.y0 - top) / fig.dpi
        assert 0 < gap < 0.25, (n, kw, gap)
        plt.close(fig)


def test_image_grid_row_labels_are_horizontal_and_do_not_overlap():
    names = ["standard (ST)", "ST + ours (marginal density)", "ST + InputGrad"]
    images = {name: torch.rand(4, 3, 8, 8) for name in names}
    fig = plotting.image_grid(images, col_labels=list("abcd"), title="T")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    first = fig.axes[::4]
    labels = [ax.yaxis.label for ax in first]
    assert labels[1].get_text() == "ST + ours\n(marginal density)" and labels[0].get_rotation() == 0
    boxes = [lab.get_window_extent(r) for lab in labels]
    assert not any(_overlap(boxes[i], boxes[j]) for i in range(3) for j in range(i + 1, 3))
    images_boxes = [ax.get_window_extent(r) for ax in fig.axes]
    assert not any(_overlap(b, im) for b in boxes for im in images_boxes)
    assert all(b.x1 <= ax.get_window_extent(r).x0 for b, ax in zip(boxes, first))
    plt.close(fig)


def test_cost_scatter_points_bars_reference_and_bad_columns():
    import numpy as np
    import pandas as pd

    pts = pd.DataFrame({"time mean": [1.0, 4.0, 2.0], "time std": [np.nan, 0.5, 0.1],
                        "rob mean": [0.2, 0.6, 0.4], "rob std": [0.01, 0.02, np.nan]}, index=["ce", "a", "b"])
    fig = plotting.cost_scatter(pts, "time", ["rob"], labels={"a": "A"}, title="T")
    ax = fig.axes[0]
    markers = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert [(float(ln.get_xdata()[0]), float(ln.get_ydata()[0])) for ln in markers] == [(1.0, 0.2), (4.0, 0.6), (2.0, 0.4)]
    assert [t.get_text() for t in ax.texts] == ["ce", "A", "b"]
    dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert any(tuple(ln.get_xdata()) == (1.0, 1.0) for ln in dotted)        # ce's cost
    assert any(tuple(ln.get_ydata()) == (0.2, 0.2) for ln in dotted)       # ce's robustness
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "time" and ax.get_ylabel() == "rob"
    # a's error bars: x ± 0.5 and y ± 0.02 (the bar segments hold the ends)
    segs = [np.asarray(c.get_segments()) for c in ax.collections]
    ends = {tuple(np.round(s.ravel(), 6)) for seg in segs for s in seg}
    assert (3.5, 0.6, 4.5, 0.6) in ends and (4.0, 0.58, 4.0, 0.62) in ends
    plt.close(fig)
    with pytest.raises(ValueError, match="'cost mean'"):
        plotting.cost_scatter(pts, "cost", ["rob"])


def test_rank_heatmap_cells_spread_and_missing():
    import numpy as np
    import pandas as pd

    mean = pd.DataFrame({"m1": [1.0, 2.0], "m2 (x)": [np.nan, 1.5]}, index=["A", "B"])
    std = pd.DataFrame({"m1": [0.0, 0.5], "m2 (x)": [np.nan, np.nan]}, index=["A", "B"])
    fig = plotting.rank_heatmap(mean, std, title="T")
    ax = fig.axes[0]
    img = ax.images[0].get_array()
    assert np.ma.is_masked(img[0, 1]) and img[0, 0] == 1.0 and img[1, 1] == 1.5
    assert [t.get_text() for t in ax.texts] == ["1.0\n±0.0", "–", "2.0\n±0.5", "1.5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    plt.close(fig)
    fig = plotting.rank_heatmap(mean)                                               # no spread
    assert [t.get_text() for t in fig.axes[0].texts] == ["1.0", "–", "2.0", "1.5"]
    plt.close(fig)


def test_selection_strips_rows_points_rings_and_band():
    import numpy as np
    import pandas as pd

    t = pd.DataFrame({"method": ["A", "A", "B"], "setting": ["lam=1", "lam=2", "eps=1"],
                      "validation accuracy": [0.6, 0.5, 0.55], "chosen": ["✓ x", "", "✓ y"]})
    fig = plotting.selection_strips(t, 0.62, 0.05, title="T")
    ax = fig.axes[0]
    offsets = [c.get_offsets() for c in ax.collections]
    pts = np.concatenate([o for o, c in zip(offsets, ax.collections) if c.get_facecolors().size and
                          c.get_facecolors()[0][3] > 0])
    assert sorted(map(tuple, np.round(pts, 6))) == [(0.5, 0.0), (0.55, 1.0), (0.6, 0.0)]
    rings = [tuple(np.round(c.get_offsets()[0], 6)) for c in ax.collections
             if c.get_facecolors().size == 0 or c.get_facecolors()[0][3] == 0]
    assert sorted(rings) == [(0.55, 1.0), (0.6, 0.0)]
    assert [t.get_text() for t in ax.texts] == ["lam=1", "lam=2", "eps=1"]
    vlines = sorted(float(ln.get_xdata()[0]) for ln in ax.lines if ln.get_linestyle() in (":", "--"))
    assert np.allclose(vlines, [0.57, 0.62])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    plt.close(fig)
