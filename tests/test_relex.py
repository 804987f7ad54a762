"""RelEx (P2): the loss against a direct computation, the optimisation against a transcription of
the released code's loop, where the mask goes on a model that looks at a known region, batch
== one image at a time, presets and errors."""
import math

import pytest
import torch
import torch.nn as nn

from robust_saliency import attributions, models
from robust_saliency.attributions import fitted as rx


class RegionModel(nn.Module):
    """Logit of class 0 = a * sum of the top-left 3x3 block, of class 1 = a * sum of the
    bottom-right 3x3 block, class 2 = a constant: each class sees only its region."""

    def __init__(self, a=2.0, c=3.0):
        super().__init__()
        self.a, self.c = a, c

    def forward(self, x):
        tl = x[:, :, :3, :3].flatten(1).sum(1)
        br = x[:, :, -3:, -3:].flatten(1).sum(1)
        return torch.stack([self.a * tl, self.a * br, torch.full_like(tl, self.c)], 1)


def _tiny_model(seed=0, normalize=True):
    torch.manual_seed(seed)
    kw = {"mean": [0.4, 0.5], "std": [0.2, 0.3]} if normalize else {}
    return models.build("small_cnn", 3, (2, 6, 6), width=2, **kw).eval()


def test_loss_matches_direct_computation():
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 6, 6, generator=g)
    m = torch.rand(2, 2, 6, 6, generator=g)
    noise = 0.1 * torch.randn(2, 4, 2, 6, 6, generator=g)
    target = torch.tensor([0, 2])
    norm = models.leading_normalize(model)
    z = (x - norm.mean.view(1, -1, 1, 1)) / norm.std.view(1, -1, 1, 1)
    got = rx.relex_loss(model, z.unsqueeze(1) + noise, m, target, lambda1=0.3, lambda2=0.7)
    want = torch.empty(2, 4, dtype=torch.float64)
    mean, std = norm.mean.view(-1, 1, 1).double(), norm.std.view(-1, 1, 1).double()
    net = model.double()
    for i in range(2):
        for b in range(4):
            zb = z[i].double() + noise[i, b].double()
            with torch.no_grad():  # the model sees pixels: undo the normalization by hand
                fg = net((m[i].double() * zb * std + mean).unsqueeze(0))[0]
                bg = net(((1 - m[i].double()) * zb * std + mean).unsqueeze(0))[0]
            p_fg = math.exp(fg[target[i]]) / sum(math.exp(v) for v in fg)
            p_bg = math.exp(bg[target[i]]) / sum(math.exp(v) for v in bg)
            want[i, b] = (-math.log(p_fg) + 0.3 * float(m[i].abs().sum())
                          - 0.7 * math.log(1 - p_bg + 1e-7))
    model.float()
    assert torch.allclose(got.double(), want, atol=1e-4)


def _reference_loop(model, x, target, seed, s, lambda1=1e-4, lambda2=1.0, level=0.1):
    """The released code's RelEx.forward for one image in pixel space (a model without
    Normalize), written with torch.optim.SGD, on the draws ``relex`` makes."""
    g = torch.Generator().manual_seed(rx.image_seed(seed, x[0], target))
    m = (torch.rand(x.shape[1:], generator=g) / 100).unsqueeze(0).requires_grad_(True)
    opt = torch.optim.SGD([m], lr=s["lr"], momentum=s["momentum"])
    std = (x.max() - x.min()) * level
    for _ in range(s["iters"]):
        batch_x = x + torch.randn((s["n_noise"],) + tuple(x.shape[1:]), generator=g) * std
        p_fg = torch.softmax(model(batch_x * m), 1)[:, target]
        p_bg = torch.softmax(model(batch_x * (1 - m)), 1)[:, target]
        losses = -torch.log(p_fg) + lambda1 * m.abs().sum() - lambda2 * torch.log(1 - p_bg + 1e-7)
        losses.backward(torch.ones(s["n_noise"]) / s["n_noise"])
        m.grad.mul_(1 / torch.sqrt((m.grad ** 2).sum()))
        opt.step()
        opt.zero_grad()
        m.data.clamp_(0, 1)
    return m.detach()


@pytest.mark.parametrize("preset", ["reference_code", "supplement"])
def test_matches_transcription_of_released_loop(preset):
    model = _tiny_model(normalize=False)
    x = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    s = dict(rx.PRESETS[preset], iters=8, n_noise=6)
    want = _reference_loop(model, x, 1, seed=5, s=s)
    got = rx.relex(model, x, torch.tensor([1]), preset=preset, iters=8, n_noise=6, seed=5)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(want, torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(
        rx.image_seed(5, x[0], 1))) / 100, atol=1e-4) or preset == "supplement"


def test_mask_goes_to_the_region_the_class_looks_at():
    model = RegionModel()
    x = torch.full((2, 1, 8, 8), 0.5)
    m = rx.relex(model, x, torch.tensor([0, 1]), space="pixel", lambda1=0.01, seed=0)
    tl = torch.zeros(8, 8, dtype=torch.bool)
    tl[:3, :3] = True
    br = torch.zeros(8, 8, dtype=torch.bool)
    br[-3:, -3:] = True
    assert m[0, 0][tl].mean() > 0.9 and m[0, 0][~tl].mean() < 0.1
    assert m[1, 0][br].mean() > 0.9 and m[1, 0][~br].mean() < 0.1


def test_batch_equals_one_image_at_a_time_and_chunks():
    model = _tiny_model()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 1, 2])
    kw = {"iters": 10, "n_noise": 8, "seed": 2}
    batched = rx.relex(model, x, t, **kw)
    alone = torch.cat([rx.relex(model, x[i:i + 1], t[i:i + 1], **kw) for i in range(3)])
    chunked = rx.relex(model, x, t, chunk=8, **kw)  # one image per forward pass
    assert (batched - alone).abs().max() < 1e-5
    assert (batched - chunked).abs().max() < 1e-5
    assert not torch.allclose(batched[0], batched[1])
    assert torch.equal(rx.relex(model, x, t, **kw), batched)  # deterministic
    assert not torch.allclose(rx.relex(model, x, t, **{**kw, "seed": 3}), batched)


def test_target_none_is_the_prediction_and_registry():
    model = _tiny_model()
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(6))
    pred = model(x).argmax(1)
    kw = {"iters": 3, "n_noise": 4}
    assert torch.equal(rx.relex(model, x, None, **kw), rx.relex(model, x, pred, **kw))
    ex = attributions.get("relex", iters=3, n_noise=4)
    assert ex.needs_fit and not ex.differentiable
    out = ex(model, x, pred)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, rx.relex(model, x, pred, **kw))  # the bound iters and n_noise apply
    assert not torch.equal(out, rx.relex(model, x, pred, iters=1, n_noise=4))


def test_normalized_space_zero_mask_is_the_mean_colour():
    model = _tiny_model()
    norm = models.leading_normalize(model)
    x = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(7))
    zero = torch.zeros(1, 1, 2, 6, 6)
    loss_n = rx.relex_loss(model, zero + 0.0, torch.zeros(1, 2, 6, 6), torch.tensor([0]),
                           lambda1=0.0, lambda2=0.0)
    mean_img = norm.mean.view(1, -1, 1, 1).expand(1, 2, 6, 6)
    with torch.no_grad():
        want = -torch.log_softmax(model(mean_img), 1)[0, 0]
    assert torch.allclose(loss_n[0, 0], want, atol=1e-6)
    # pixel space: a zero mask is black
    loss_p = rx.relex_loss(model, zero, torch.zeros(1, 2, 6, 6), torch.tensor([0]), 0.0, 0.0, "pixel")
    with torch.no_grad():
        want_p = -torch.log_softmax(model(torch.zeros(1, 2, 6, 6)), 1)[0, 0]
    assert torch.allclose(loss_p[0, 0], want_p, atol=1e-6)
    assert not torch.allclose(want, want_p)
    del x


@pytest.mark.parametrize("kw,match", [
    ({"preset": "paper"}, "preset"), ({"space": "rgb"}, "space"), ({"n_noise": 0}, "n_noise"),
    ({"momentum": 1.0}, "momentum"), ({"lambda1": -1}, "lambda1"), ({"create_graph": True}, "create_graph"),
    ({"chunk": 0}, "chunk"),
])
def test_bad_settings_raise_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        rx.relex(_tiny_model(), torch.rand(1, 2, 6, 6), None, **kw)


def test_initial_masks_are_relexs_first_draws_and_settings_are_checked():
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(8))
    t = torch.tensor([0, 2])
    m0 = rx.initial_masks(x, t, seed=4)
    for i in range(2):
        g = torch.Generator().manual_seed(rx.image_seed(4, x[i], int(t[i])))
        assert torch.equal(m0[i], torch.rand(x.shape[1:], generator=g) / 100)
    assert torch.equal(rx.initial_masks(x[1:], t[1:], seed=4)[0], m0[1])  # batch-independent
    rx.check_settings("supplement", "pixel")
    with pytest.raises(ValueError, match="preset"):
        rx.check_settings("paper")
    with pytest.raises(ValueError, match="space"):
        rx.check_settings(space="rgb")
