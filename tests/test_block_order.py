"""BlockMNIST's random block order (``augment="block_order"``): per sample the top and bottom
halves along H are swapped with probability 1/2, drawn on the CPU from the (seed, epoch)
generator; odd heights and non-image batches are refused, methods with extras too, and training
with the mode repeats bitwise per seed, differs from plain training and has its own cache key."""
import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from robust_saliency import data
from robust_saliency import training as T
from robust_saliency.data.synthetic import null_block


def _gen(seed=5):
    return torch.Generator().manual_seed(seed)


def _blocks(n=16, c=2, h=4, w=4, seed=0, signal_top=None):
    """(n, c, 2h, w) BlockMNIST-like images: a random signal block over or under the null block."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.rand(n, c, h, w, generator=g)
    null = null_block(max(h, w))[:h, :w].expand(n, c, h, w)
    top = torch.rand(n, generator=g) < 0.5 if signal_top is None else signal_top
    t = top.view(n, 1, 1, 1)
    return torch.cat([torch.where(t, signal, null), torch.where(t, null, signal)], 2)


def test_swapped_samples_are_the_halves_exchanged_with_the_generators_draw():
    x = _blocks(n=64, h=5, w=3)
    h = x.shape[2] // 2
    out = T.block_order(x, _gen(7))
    swap = torch.rand(64, generator=_gen(7)) < 0.5  # an independent draw of the same generator
    exchanged = torch.cat([x[:, :, h:], x[:, :, :h]], 2)
    assert 0 < int(swap.sum()) < 64
    assert torch.equal(out[swap], exchanged[swap]) and torch.equal(out[~swap], x[~swap])
    for n in range(64):  # per sample, and no sample equals its own exchange
        assert torch.equal(out[n], exchanged[n] if swap[n] else x[n])
        assert not torch.equal(x[n], exchanged[n])
    assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    assert torch.equal(T.block_order(out, _gen(7)), x)  # the same draws undo the swaps
    # one draw of N uniforms per batch: the generator's next state is that after torch.rand(N)
    g, ref = _gen(7), _gen(7)
    T.block_order(x, g)
    torch.rand(64, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())


def test_draws_repeat_per_seed_and_epoch_and_go_through_the_dispatch():
    x = _blocks(n=32)

    def aug(gen):
        return T._augment(T.TrainConfig(augment="block_order"), x, {}, gen)[0]

    a = aug(T._augment_generator(0, 3))
    assert torch.equal(a, T.block_order(x, T._augment_generator(0, 3)))
    assert torch.equal(a, aug(T._augment_generator(0, 3)))
    assert not torch.equal(a, aug(T._augment_generator(0, 4)))
    assert not torch.equal(a, aug(T._augment_generator(1, 3)))


def test_swap_share_is_one_half():
    n = 20000
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 1).clone()
    x[:, :, 1] += 0.5  # the bottom row is 0.5 above the top row: swapped iff out[:, :, 0] > out[:, :, 1]
    out = T.block_order(x, _gen(11))
    swapped = int((out[:, 0, 0, 0] > out[:, 0, 1, 0]).sum())
    assert abs(swapped - n / 2) < 5 * math.sqrt(n / 4)  # binomial(n, 1/2): 5 standard deviations
    # a fixed random order in the data (here signal on top for all) becomes uniform per draw
    top = torch.ones(4000, dtype=torch.bool)
    x = _blocks(n=4000, h=3, w=3, seed=2, signal_top=top)
    null_on_top = int((T.block_order(x, _gen(3))[:, 0, :3] == x[0, 0, 3:]).flatten(1).all(1).sum())
    assert abs(null_on_top - 2000) < 5 * math.sqrt(1000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_dtype_device_and_values_are_kept(dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = (_blocks(n=12) * 200).to(dtype).to(device)
        out = T.block_order(x, _gen())
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert torch.equal(out.cpu(), T.block_order(x.cpu(), _gen()))
        assert torch.equal(out.sort(2).values, x.sort(2).values)  # rows permuted only
    assert T.block_order(torch.rand(0, 1, 4, 2), _gen()).shape == (0, 1, 4, 2)


def test_odd_height_and_non_images_are_refused_naming_the_mode():
    with pytest.raises(ValueError, match=r"augment='block_order' needs an even height.*\(2, 1, 7, 4\)"):
        T.block_order(torch.rand(2, 1, 7, 4), _gen())
    with pytest.raises(ValueError, match=r"augment='block_order' needs image batches.*\(2, 8, 4\)"):
        T.block_order(torch.rand(2, 8, 4), _gen())
    with pytest.raises(ValueError, match="block_order"):
        T._augment(T.TrainConfig(augment="block_order"), torch.rand(4, 12), {}, _gen())


def test_mode_is_registered_and_exported():
    assert T.AUGMENTS[-1] == "block_order" and "block_order" in T.__all__
    assert T.TrainConfig(augment="block_order").augment == "block_order"
    assert "block_order" not in T._AUGMENTS_WITH_EXTRAS
    assert 'augment="block_order"' in T.TrainConfig.__doc__


# ----------------------------------------------------------------------------- training
N = 40


def _set():
    x = _blocks(n=N, c=1, h=4, w=3, seed=3)
    return TensorDataset(x, torch.arange(N) % 3)


def _cfg(**kw):
    cfg = dict(num_epochs=2, lr=0.05, optimizer="sgd", momentum=0.9, progress=False, seed=0,
               cache_dir=None)
    cfg.update(kw)
    return cfg


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(24, 3))


def _run(method=None, **kw):
    torch.manual_seed(123)  # the model's init; the loop's result must not depend on the global RNG
    model = _model()
    torch.manual_seed(999)
    return T.train(model, method or T.CE(), DataLoader(_set(), batch_size=16), _cfg(**kw))


def _weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def _same(a, b):
    return all(torch.equal(pa, pb) for pa, pb in zip(_weights(a), _weights(b)))


def test_training_with_block_order_repeats_bitwise_and_differs_from_plain(tmp_path):
    a, b = _run(augment="block_order"), _run(augment="block_order")
    assert _same(a, b) and not _same(a, _run())
    assert not _same(a, _run(augment="block_order", seed=1))
    # the cache key covers the mode, and a cache hit gives the same weights
    torch.manual_seed(123)
    key = T.train_key(_model(), T.CE(), DataLoader(_set(), batch_size=16), _cfg(augment="block_order"))
    torch.manual_seed(123)
    plain = T.train_key(_model(), T.CE(), DataLoader(_set(), batch_size=16), _cfg())
    assert a.train_info["key"] == key != plain
    c = _run(augment="block_order", cache_dir=str(tmp_path))
    d = _run(augment="block_order", cache_dir=str(tmp_path))
    assert not c.train_info["from_cache"] and d.train_info["from_cache"]
    assert c.train_info["key"] == key and _same(a, c) and _same(a, d)


def test_training_sees_each_batch_swapped_with_the_epochs_draws():
    seen = []

    class Recorder(T.CE):
        name = "recorder"

        def __call__(self, model, x, y):
            seen.append(x.clone())
            return super().__call__(model, x, y)

    _run(Recorder(), augment="block_order", shuffle=False)
    x = _set().tensors[0]
    assert len(seen) == 2 * 3  # 40 samples in batches of 16, 2 epochs
    for epoch in range(2):
        g = T._augment_generator(0, epoch)
        for b in range(3):
            assert torch.equal(seen[3 * epoch + b], T.block_order(x[16 * b:16 * (b + 1)], g))
    assert not torch.equal(seen[0], x[:16]) and not torch.equal(seen[0], seen[3])


def test_methods_with_extras_are_refused():
    x = _blocks(n=12, c=1, h=4, w=4, seed=1)
    ds = data.ArrayDataset(x, torch.arange(12) % 3, num_classes=3, classes=("a", "b", "c"),
                           extras={"null_mask": x > 0.5})

    class WithMask(T.CE):
        name, extras = "with_mask", ("null_mask",)

        def __call__(self, model, x, y, null_mask):
            return super().__call__(model, x, y)

    def run(mode):
        model = nn.Sequential(nn.Flatten(), nn.Linear(32, 3))
        return T.train(model, WithMask(), DataLoader(ds, batch_size=5), _cfg(num_epochs=1, augment=mode))

    with pytest.raises(ValueError, match=r"augment='block_order' is not valid with method 'with_mask', "
                                         r"whose extras \['null_mask'\] would not follow"):
        run("block_order")
    run("none")  # the same method trains without the swap
