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
