"""P3's metrics: AOPC most-relevant-first against a written-out loop, the images of ROAR, top-k
among non-zero pixels, and cascading randomization."""
import pytest
import torch

from robust_saliency import evaluation, metrics, models


def _net(seed=0, size=16):
    torch.manual_seed(seed)
    return models.build("small_cnn", 3, (2, size, size), width=3).eval()


def test_aopc_mofr_matches_a_written_out_loop():
    net = _net()
    x = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    maps = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    got = metrics.aopc_mofr(net, x, y, maps, steps=5, step_fraction=0.1)
    flat = maps.flatten(1)
    want = torch.zeros(3)
    with torch.no_grad():
        p0 = net(x).softmax(1)[torch.arange(3), y]
        for k in range(6):
            xk = x.clone()
            n_rm = round(k * 0.1 * 256)
            for i in range(3):
                idx = flat[i].argsort(descending=True)[:n_rm]
                xk[i].view(2, -1)[:, idx] = 0.0
            want += p0 - net(xk).softmax(1)[torch.arange(3), y]
    assert torch.allclose(got, want / 6, atol=1e-6)
    assert metrics.get("aopc_mofr", steps=5).higher_is_better
    with pytest.raises(ValueError, match="steps"):
        metrics.aopc_mofr(net, x, y, maps, steps=0)


def test_removed_images_remove_the_right_pixels():
    x = torch.ones(1, 2, 2, 2)
    maps = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    top = metrics.removed_images(x, maps, 0.5)
    bottom = metrics.removed_images(x, maps, 0.5, most_relevant=False)
    assert torch.equal(top[0, 0], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(bottom[0, 1], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(metrics.removed_images(x, maps, 0.25, baseline=torch.full((1, 2, 1, 1), 0.5))[0, :, 0, 0],
                       torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="fraction"):
        metrics.removed_images(x, maps, 1.5)


def test_topk_intersection_among_nonzero_pixels():
    a = torch.tensor([[5.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 4.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    # 50% of the 2 non-zero pixels of a: k = 1, a's top {0} vs b's top {2}
    assert float(metrics.topk_intersection(a, b, 0.5, among="nonzero")) == 0.0
    # 50% of all 8 pixels: k = 4
    assert float(metrics.topk_intersection(a, b, 0.5)) > 0
    assert float(metrics.topk_intersection(a, a, 0.5, among="nonzero")) == 1.0
    assert float(metrics.topk_intersection(torch.zeros(1, 8), b, 0.5, among="nonzero")) == 0.0
    with pytest.raises(ValueError, match="among"):
        metrics.topk_intersection(a, b, 0.5, among="some")


def test_cascading_randomization_starts_at_one_and_leaves_the_model_alone():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(4, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    rows = evaluation.cascading_randomization(net, x, torch.tensor([0, 1, 2, 0]))
    assert [r["layers"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["randomized"] == "none" and rows[0]["ssim"] == pytest.approx(1.0)
    assert all(r["ssim"] < 0.9 for r in rows[1:])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    again = evaluation.cascading_randomization(net, x, torch.tensor([0, 1, 2, 0]))
    assert [r["ssim"] for r in again] == [r["ssim"] for r in rows]  # seeded


def test_swap_samples_and_permuted_labels():
    from robust_saliency import data, runs

    tr = data.load("shapes", "train", size=16, n=60)
    te = data.load("shapes", "test", size=16, n=30)
    a, common = runs.swap_samples(tr, te, 10, seed=1)
    assert len(a) == 60 and len(common) == 20
    rows = {tuple(v.flatten()[:20].tolist()) for v in a.x}
    te_rows = [tuple(v.flatten()[:20].tolist()) for v in te.x]
    moved = [r for r in te_rows if r in rows]
    assert len(moved) == 10
    assert not any(tuple(v.flatten()[:20].tolist()) in rows for v in common.x)  # never trained on
    assert sum(tuple(v.flatten()[:20].tolist()) in rows for v in tr.x) == 50
    assert a.masks.shape[0] == 60 and torch.equal(a.y[-10:], te.y[[te_rows.index(r) for r in moved]])
    b, _ = runs.swap_samples(tr, te, 10, seed=1)
    assert a.fingerprint == b.fingerprint and a.fingerprint != runs.swap_samples(tr, te, 10, seed=2)[0].fingerprint
    with pytest.raises(ValueError, match="n="):
        runs.swap_samples(tr, te, 30)
    p = runs.permuted_labels(tr, seed=0)
    assert torch.equal(p.x, tr.x) and sorted(p.y.tolist()) == sorted(tr.y.tolist())
    assert not torch.equal(p.y, tr.y) and p.fingerprint != tr.fingerprint
    assert torch.equal(tr.y, data.load("shapes", "train", size=16, n=60).y)  # the original is untouched


def test_roar_sets_remove_by_the_models_maps():
    from robust_saliency import attributions, data

    torch.manual_seed(0)
    net = models.build("small_cnn", 10, (3, 16, 16), width=3).eval()
    ds = data.load("shapes", "train", size=16, n=20)
    sets = evaluation.roar_sets(net, ds, 0.25, batch_size=8, baseline="zero")
    top, bottom = sets["top"], sets["bottom"]
    assert len(top) == len(bottom) == 20 and torch.equal(top.y, ds.y) and top.masks.shape == ds.masks.shape
    g = attributions.grad(net, ds.x, ds.y).abs().sum(1).flatten(1)
    removed_top = (top.x != ds.x).any(1).flatten(1) | (top.x == 0).all(1).flatten(1)
    k = round(0.25 * 256)
    for i in range(20):
        want = torch.zeros(256, dtype=torch.bool)
        want[g[i].argsort(descending=True, stable=True)[:k]] = True
        assert torch.equal((top.x[i] == 0).all(0).flatten() & want, want)  # the top-k are zero
        assert int((bottom.x[i] == 0).all(0).flatten()[want].sum()) <= int((ds.x[i] == 0).all(0).flatten()[want].sum())
    assert removed_top.sum() >= 20 * k
    assert top.fingerprint != bottom.fingerprint != ds.fingerprint


def test_diff_roar_finds_the_pixel_the_label_lives_in(tmp_path):
    """Labels written into pixel (0, 0), a model whose map is that pixel alone: removing the top
    1/16 of pixels removes the label (chance after retraining), removing the bottom keeps it."""
    from robust_saliency import data, profiles, runs

    def make(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.rand(n, 1, 4, 4, generator=g) * 0.5
        x[:, 0, 0, 0] = 0.5 + 0.5 * y.float()
        return data.ArrayDataset(x, y, num_classes=2, classes=("a", "b"))

    oracle = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        oracle[1].weight.zero_()
        oracle[1].weight[1, 0], oracle[1].weight[0, 0] = 4.0, -4.0
        oracle[1].bias.zero_()
    params = profiles.profile_params("smoke", model="mlp", num_epochs=8, batch_size=32, lr=1e-2, normalize=False)
    params["cache_dir"] = str(tmp_path)
    out = runs.diff_roar(params, oracle, make(400, 0), make(200, 1), 1 / 16, baseline="zero")
    assert out["top"] < 0.65 and out["bottom"] > 0.95
    assert out["diff_roar"] == pytest.approx(out["bottom"] - out["top"])
    again = runs.diff_roar(params, oracle, make(400, 0), make(200, 1), 1 / 16, baseline="zero")
    assert again == out  # the retrained models come from the cache: the same numbers


def _file_sets(tmp_path, n_train=8, n_test=6):
    """Tiny ImageFileDatasets (16x16 RGB PNGs) and their in-memory copies."""
    import numpy as np
    from PIL import Image

    from robust_saliency import data, runs

    rng = np.random.default_rng(0)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        paths = []
        for i in range(n):
            p = tmp_path / split / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
            paths.append(p)
        ds = data.ImageFileDataset(paths, torch.arange(n) % 3, classes=("a", "b", "c"), name="files",
                                   split=split, size=16)
        x, y = runs.batch(ds)
        out += [ds, data.ArrayDataset(x, y, num_classes=3, classes=("a", "b", "c"), name="files", split=split)]
    return out


def test_swap_samples_permuted_labels_and_roar_sets_on_file_datasets(tmp_path):
    """The paper profile's ImageNette is read from files: P3's stability, data-randomization and ROAR
    sets work on it and hold the same rows as on the in-memory copy."""
    from robust_saliency import data, runs

    tr, tr_mem, te, te_mem = _file_sets(tmp_path)
    a, common = runs.swap_samples(tr, te, 2, seed=1)
    b, common_mem = runs.swap_samples(tr_mem, te_mem, 2, seed=1)
    assert isinstance(a, data.JoinedDataset) and len(a) == len(b) == 8 and len(common) == len(common_mem) == 4
    assert torch.equal(runs.batch(a)[0], b.x) and torch.equal(a.y, b.y)
    assert torch.equal(runs.batch(common)[0], common_mem.x)
    assert a.fingerprint == runs.swap_samples(tr, te, 2, seed=1)[0].fingerprint != runs.swap_samples(tr, te, 2, seed=2)[0].fingerprint
    p = runs.permuted_labels(a, seed=0)
    assert torch.equal(runs.batch(p)[0], runs.batch(a)[0]) and torch.equal(p.y, runs.permuted_labels(b, seed=0).y)
    assert [int(p[i][1]) for i in range(8)] == p.y.tolist() and p.fingerprint != a.fingerprint
    net = models.build("small_cnn", 3, (3, 16, 16), width=3).eval()
    files, mem = evaluation.roar_sets(net, tr, 0.25, batch_size=3), evaluation.roar_sets(net, tr_mem, 0.25, batch_size=3)
    for k in ("top", "bottom"):
        assert isinstance(files[k], data.UInt8ImageDataset) and torch.equal(files[k].y, tr.y)
        assert (runs.batch(files[k])[0] - mem[k].x).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit copies
    with pytest.raises(ValueError, match="dataset of the library"):
        runs.swap_samples(torch.utils.data.TensorDataset(tr_mem.x, tr_mem.y), te, 2)
