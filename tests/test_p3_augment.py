"""P3's training augmentations (peterant330/AdvGrad datasets.py): ``augment="p3_imagenette"``
and ``"p3_cub"`` equal torchvision's transform classes with the same draws, repeat per
(seed, epoch), move the gaze extra with the image, and train deterministically."""
import pytest
import torch
from torchvision import transforms as TV

from robust_saliency import data, methods, models, settings
from robust_saliency import training as T


def _images(n=6, c=3, size=16, seed=0, hi=0.9):
    return hi * torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed=5):
    return torch.Generator().manual_seed(seed)


def test_p3_imagenette_is_torchvisions_transform_with_the_same_draws(monkeypatch):
    x = _images()
    out = T.p3_imagenette(x, _gen())
    p = T.p3_imagenette_params(len(x), _gen())
    assert not torch.equal(out, x)
    for n in range(len(x)):
        angle, sigma = float(p["angle"][n]), float(p["sigma"][n])
        monkeypatch.setattr(TV.RandomRotation, "get_params", staticmethod(lambda degrees: angle))
        monkeypatch.setattr(TV.GaussianBlur, "get_params", staticmethod(lambda lo, hi: sigma))
        code = TV.Compose([TV.RandomRotation(30), TV.RandomHorizontalFlip(float(p["flip"][n])),
                           TV.GaussianBlur(kernel_size=5), TV.ColorJitter()])  # datasets.py 42-45
        want = code(x[n])
        torch.testing.assert_close(out[n], want, rtol=0, atol=1e-6)
        assert torch.equal(out[n], want.clamp(0, 1))
    many = T.p3_imagenette_params(400, _gen())
    assert -30 <= many["angle"].min() < -25 and 25 < many["angle"].max() <= 30
    assert 0.1 <= many["sigma"].min() < 0.2 and 1.9 < many["sigma"].max() <= 2.0
    assert 150 < int(many["flip"].sum()) < 250
    y = torch.rand(3, 8, 8)
    assert torch.equal(TV.ColorJitter()(y), y)  # the code's ColorJitter() is the identity


def test_p3_cub_is_torchvisions_transform_with_the_same_draws_on_image_and_gaze(monkeypatch):
    x = _images()
    gaze = x[:, :1].clone()  # the gaze map equals the first channel: they must stay equal
    out, ex = T.p3_cub(x, _gen(), {"gaze": gaze, "groups": torch.arange(6)})
    assert torch.equal(ex["gaze"], out[:, :1]) and torch.equal(ex["groups"], torch.arange(6))
    p = T.p3_cub_params(len(x), (16, 16), _gen())
    assert p["resize"] == (21, 21) and T.p3_cub_params(1, (448, 448))["resize"] == (600, 600)
    for n in range(len(x)):
        i, j = int(p["i"][n]), int(p["j"][n])
        monkeypatch.setattr(TV.RandomCrop, "get_params", staticmethod(lambda img, size: (i, j, *size)))
        code = TV.Compose([TV.Resize((21, 21), TV.InterpolationMode.BILINEAR, antialias=False),
                           TV.RandomCrop((16, 16)), TV.RandomHorizontalFlip(float(p["flip"][n]))])
        want = code(torch.cat([x[n], gaze[n]]))  # datasets.py 128-131 and 148-150: gaze as 4th channel
        assert torch.equal(out[n], want[:3]) and torch.equal(ex["gaze"][n], want[3:])
    many = T.p3_cub_params(400, (16, 16), _gen())
    assert {int(v) for v in many["i"]} == set(range(6)) == {int(v) for v in many["j"]}
    assert 150 < int(many["flip"].sum()) < 250
    as_uint8 = (gaze * 255).round().to(torch.uint8)  # cub_gha's gaze dtype: rounded back to uint8
    got = T.p3_cub(x, _gen(), {"gaze": as_uint8})[1]["gaze"]
    want = T.p3_cub(x, _gen(), {"gaze": as_uint8.float()})[1]["gaze"].round().to(torch.uint8)
    assert got.dtype == torch.uint8 and torch.equal(got, want)


def _augment(mode, x, generator):
    return T._augment(T.TrainConfig(augment=mode), x, {}, generator)[0]


@pytest.mark.parametrize("mode", ["p3_imagenette", "p3_cub"])
def test_draws_repeat_per_seed_and_epoch(mode):
    x = _images(n=8)
    a = _augment(mode, x, T._augment_generator(0, 3))
    assert torch.equal(a, _augment(mode, x, T._augment_generator(0, 3)))
    assert not torch.equal(a, _augment(mode, x, T._augment_generator(0, 4)))
    assert not torch.equal(a, _augment(mode, x, T._augment_generator(1, 3)))


@pytest.mark.parametrize("mode", ["p3_imagenette", "p3_cub"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_range_are_kept(mode, dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = torch.ones(32, 3, 10, 10, dtype=dtype, device=device)  # blurring ones overshoots 1 by ulps
        x[::2, :, :5] = 0
        out = _augment(mode, x, _gen())
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(ValueError, match=mode):
        _augment(mode, torch.rand(4, 12), _gen())


def _gaze_set(n=12, size=8):
    x = _images(n=n, c=2, size=size, seed=1)
    return data.ArrayDataset(x, torch.arange(n) % 3, num_classes=3, classes=("a", "b", "c"),
                             extras={"gaze": x[:, :1].clone()})


def _train(method, mode, ds=None):
    torch.manual_seed(0)
    net = models.build("small_cnn", 3, (2, 8, 8), width=3)
    loader = torch.utils.data.DataLoader(_gaze_set() if ds is None else ds, batch_size=5)
    return T.train(net, method, loader, num_epochs=1, cache_dir=None, progress=False, augment=mode)


def _same(a, b):
    return all(torch.equal(pa, pb) for pa, pb in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("mode", ["p3_imagenette", "p3_cub"])
def test_training_with_each_mode_is_deterministic(mode):
    a, b = _train(T.CE(), mode), _train(T.CE(), mode)
    assert _same(a, b) and not _same(a, _train(T.CE(), "none"))


def test_p3_cub_trains_a_method_with_extras_and_moves_them_with_the_image():
    seen = []

    class Recorder(T.CE):
        name, extras = "recorder", ("gaze",)

        def __call__(self, model, x, y, gaze):
            seen.append(bool(torch.equal(gaze, x[:, :1])))  # the gaze map is the first channel
            return super().__call__(model, x, y)

    _train(Recorder(), "p3_cub")
    assert seen == [True] * 3  # 12 samples in batches of 5
    wl2 = methods.get("norm_regularized_at", mode="weighted_l2", eps=0.1)
    a, b = _train(wl2, "p3_cub"), _train(wl2, "p3_cub")
    assert _same(a, b) and not _same(a, _train(wl2, "none"))
    for mode in ("crop_flip", "p3_imagenette"):
        with pytest.raises(ValueError, match=rf"augment='{mode}' is not valid with method "
                                             r"'norm_regularized_at'.*accepted: \('none', 'p3_cub'\)"):
            _train(wl2, mode)


def test_bad_mode_names_augment_and_the_accepted_values():
    with pytest.raises(ValueError, match=r"augment='p3' is not valid; accepted: "
                                         r"\('none', 'crop_flip', 'p3_imagenette', 'p3_cub', 'block_order'\)"):
        T.TrainConfig(augment="p3")
    param = settings.TRAINING["augment"]
    assert all(param.ok(m) for m in T.AUGMENTS) and not param.ok("p3")
    with pytest.raises(ValueError, match=r"augment='p3' is not valid; accepted: one of"):
        param.check("augment", "p3")


def test_the_mode_enters_the_cache_key():
    def key(**kw):
        torch.manual_seed(0)
        net = models.build("small_cnn", 3, (2, 8, 8), width=3)
        return T.train_key(net, T.CE(), torch.utils.data.DataLoader(_gaze_set(), batch_size=5), **kw)

    keys = {key(augment=m) for m in T.AUGMENTS}
    assert len(keys) == len(T.AUGMENTS) and key() in keys and key() == key(augment="none")
