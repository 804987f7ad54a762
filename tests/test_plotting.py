import matplotlib.pyplot as plt
import torch

from robust_saliency import plotting


def test_savefig_writes_png_and_pdf_per_profile(tmp_path):
    plotting.setup("99_demo", profile="cpu", root=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = plotting.savefig("fig1_line", fig)
    assert {p.name for p in paths} == {"fig1_line.png", "fig1_line.pdf"}
    assert all(p.parent == tmp_path / "figures" / "99_demo" for p in paths)
    assert all(p.stat().st_size > 0 for p in paths)
    first = paths[0].read_bytes()
    plotting.savefig("fig1_line", fig)  # same figure, same bytes
    assert paths[0].read_bytes() == first
    # other profiles never overwrite the cpu figures
    plotting.setup("99_demo", profile="smoke", root=tmp_path)
    (p,) = plotting.savefig("fig1_line", fig, formats=("png",))
    assert p.parent == tmp_path / "figures" / "99_demo" / "smoke"
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
