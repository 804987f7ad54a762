"""SmoothGrad, Integrated Gradients and GradCAM on torch.autograd (attributions.smooth), and
DeepLIFT's P2 options: equal to captum with the defaults, equal to transcriptions of P2's
released code (JBNU-VL/RelEx) with its options, and twice differentiable (autograd against
central finite differences, float64 softplus nets)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_saliency import attributions as A
from robust_saliency import models
from robust_saliency.attributions.smooth import _smoothgrad

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = {"rtol": 1e-5, "atol": 1e-6}
MEAN, STD = (0.45, 0.5, 0.4), (0.25, 0.2, 0.3)
CAPTUM_RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def inner_net(seed=0):
    """conv -> softplus -> strided conv -> softplus -> linear -> softplus -> linear, float64,
    inputs (3, 6, 6), 4 classes (no max-pool: smooth everywhere; the hidden linear layer makes
    GradCAM's weights depend on x at both layers)."""
    torch.manual_seed(seed)
    return [nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(beta=3.0), nn.Conv2d(4, 5, 3, padding=1, stride=2),
            nn.Softplus(beta=3.0), nn.Flatten(), nn.Linear(5 * 3 * 3, 8), nn.Softplus(beta=3.0), nn.Linear(8, 4)]


def net(seed=0, normalize=False):
    layers = inner_net(seed)
    return nn.Sequential(*([models.Normalize(MEAN, STD)] if normalize else []), *layers).double().eval()


def rand_x(n=2, seed=1, shape=(3, 6, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 0.9 + 0.05


def minmax(cam):
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return torch.where(hi > lo, (cam - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(cam))


def no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules())


# ----------------------------------------------------------------------------- registry
def test_registry_marks_the_three_differentiable():
    assert A.DIFFERENTIABLE == ("grad", "input_x_grad", "guided_backprop", "lrp", "integrated_gradients",
                                "smoothgrad", "gradcam")
    for name in ("integrated_gradients", "smoothgrad", "gradcam"):
        assert A.get(name).differentiable and A.get(name).source == "autograd"
    assert not A.get("deeplift").differentiable and A.get("deeplift").source == "captum"
    sg = A.get("smoothgrad", noise_range="image", output="softmax", space="normalized")
    assert sg.hparams == {"noise_range": "image", "output": "softmax", "space": "normalized"}
    assert set(A.get("integrated_gradients").accepted()) >= {"steps", "baseline", "method", "output"}
    assert set(A.get("gradcam").accepted()) == {"layer", "align_corners", "output"}
    assert set(A.get("deeplift").accepted()) == {"baseline", "output"}


# ----------------------------------------------------------------------------- equal to captum
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_seed(dtype):
    from captum.attr import NoiseTunnel, Saliency

    torch.manual_seed(3)
    model = models.build("small_cnn", 4, (3, 8, 8), width=4).to(dtype).eval()
    x, t = torch.rand(3, 3, 8, 8, dtype=dtype), torch.tensor([0, 3, 1])
    std = float(0.15 * (x.max() - x.min()))
    torch.manual_seed(7)
    ref = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=6, stdevs=std, target=t,
                                                 abs=False)
    torch.manual_seed(7)
    ours = A.smoothgrad(model, x, t, n=6)
    torch.testing.assert_close(ours, ref, **TOL)
    torch.manual_seed(7)
    assert torch.equal(A.get("smoothgrad", n=6)(model, x, t, create_graph=True).detach(), ours)


@pytest.mark.parametrize("method", CAPTUM_RULES)
def test_integrated_gradients_equals_captum_for_every_rule(method):
    from captum.attr import IntegratedGradients

    torch.manual_seed(4)
    model = models.build("small_cnn", 4, (3, 8, 8), width=4, mean=MEAN, std=STD).eval()
    x, t = torch.rand(3, 3, 8, 8), torch.tensor([2, 0, 1])
    mean = torch.tensor(MEAN).view(1, 3, 1, 1).expand_as(x)
    tensor_base = torch.rand(1, 3, 8, 8)
    for base, captum_base, ibs in ((0.0, torch.zeros_like(x), None), (0.3, torch.full_like(x, 0.3), 7),
                                   ("normalized_zero", mean, None), (tensor_base, tensor_base.expand_as(x), 4)):
        ref = IntegratedGradients(model).attribute(x, baselines=captum_base, target=t, n_steps=5, method=method,
                                                   internal_batch_size=ibs)
        ours = A.integrated_gradients(model, x, t, steps=5, baseline=base, method=method, internal_batch_size=ibs)
        torch.testing.assert_close(ours, ref, **TOL)
        graph = A.integrated_gradients(model, x, t, create_graph=True, steps=5, baseline=base, method=method,
                                       internal_batch_size=ibs)
        assert graph.requires_grad
        torch.testing.assert_close(graph.detach(), ours, rtol=1e-6, atol=1e-7)


def _captum_gradcam(model, x, t, layer):
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
    return minmax(LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")).expand_as(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradcam_equals_captum_at_the_last_conv_and_at_another_layer(dtype):
    torch.manual_seed(5)
    model = models.build("lenet", 4, (3, 12, 12), width=4, hidden=16).to(dtype).eval()
    x, t = torch.rand(3, 3, 12, 12, dtype=dtype), torch.tensor([0, 1, 3])
    for layer, ours in ((model[7], A.gradcam(model, x, t)), (model[7], A.gradcam(model, x, t, layer="conv")),
                        (model[2], A.gradcam(model, x, t, layer=model[2])),
                        (model[8], A.gradcam(model, x, t, layer="block"))):
        torch.testing.assert_close(ours, _captum_gradcam(model, x, t, layer), **TOL)
        assert ours.shape == x.shape and torch.equal(ours[:, 0], ours[:, 2])
    for layer in (None, "block", model[2]):
        graph = A.gradcam(model, x, t, create_graph=True, layer=layer)
        assert graph.requires_grad
        torch.testing.assert_close(graph.detach(), A.gradcam(model, x, t, layer=layer), rtol=1e-6, atol=1e-7)
    assert no_hooks(model)


def test_gradcam_block_is_the_stage_output_after_its_activation():
    """P2's layer4 of a ResNet: the last block's output after its final activation."""
    torch.manual_seed(6)
    model = models.build("resnet18", 3, (3, 8, 8), width=2).eval()
    x, t = torch.rand(2, 3, 8, 8), torch.tensor([0, 2])
    last = model[0].layers[-1]
    assert A.last_conv(model, x) is last.conv2
    torch.testing.assert_close(A.gradcam(model, x, t, layer="block"), A.gradcam(model, x, t, layer=last.act2), rtol=0,
                               atol=0)
    torch.testing.assert_close(A.gradcam(model, x, t), _captum_gradcam(model, x, t, last.conv2), **TOL)


# ----------------------------------------------------------------------------- second derivatives
def _check_second_derivative(fn, x, seed=0, dirs=2, h=1e-5, keep=None):
    """d/dx <fn(x), v> by autograd (create_graph=True) against central differences of
    <fn(x), v> along random directions d (zero where ``keep`` is True)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad((fn(xg, True) * v).sum(), xg)
    for _ in range(dirs):
        d = torch.randn(x.shape, generator=g, dtype=x.dtype)
        if keep is not None:
            d = d.masked_fill(keep, 0.0)
        fd = ((fn(x + h * d, False) - fn(x - h * d, False)) * v).sum() / (2 * h)
        torch.testing.assert_close((gx * d).sum(), fd, rtol=1e-4, atol=1e-9)


def _extremes(r):
    """Where ``r`` takes its batch and per-image max and min: directions that keep SmoothGrad's
    noise scale sigma * (max - min) fixed are zero there."""
    flat = r.flatten(1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    for idx in (flat.argmax(1), flat.argmin(1)):
        keep[torch.arange(flat.shape[0]), idx] = True
    keep = keep.view_as(r)
    return keep | (r == r.max()) | (r == r.min())


@pytest.mark.parametrize("opts", [{}, {"noise_range": "image", "output": "softmax", "space": "normalized"}])
def test_smoothgrad_second_derivative_matches_finite_differences(opts):
    model, x, t = net(normalize=True), rand_x(), torch.tensor([1, 3])

    def fn(inp, create_graph):
        torch.manual_seed(11)  # the same noise at every call
        return A.smoothgrad(model, inp, t, create_graph=create_graph, n=3, **opts)

    z = (x - torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    _check_second_derivative(fn, x, keep=_extremes(x) | _extremes(z))


@pytest.mark.parametrize("opts", [{"method": "gausslegendre"},
                                  {"method": "p2_code", "baseline": "normalized_zero", "output": "softmax"},
                                  {"method": "riemann_trapezoid", "baseline": 0.2, "internal_batch_size": 4}])
def test_integrated_gradients_second_derivative_matches_finite_differences(opts):
    model, x, t = net(normalize=True), rand_x(), torch.tensor([0, 2])
    _check_second_derivative(lambda inp, cg: A.integrated_gradients(model, inp, t, create_graph=cg, steps=5, **opts), x)


@pytest.mark.parametrize("layer", ["conv", "block"])
def test_gradcam_second_derivative_matches_finite_differences(layer):
    model, x, t = net(), rand_x(), torch.tensor([1, 3])
    assert (A.gradcam(model, x, t, layer=layer).flatten(1).amax(1) == 1).all()  # no flat map: a real test
    _check_second_derivative(lambda inp, cg: A.gradcam(model, inp, t, create_graph=cg, layer=layer), x, seed=2)


@pytest.mark.parametrize("name, hp", [("smoothgrad", {"n": 3}), ("integrated_gradients", {"steps": 4}),
                                      ("gradcam", {"layer": "block"})])
def test_weight_derivative_matches_finite_differences(name, hp):
    model, x, t = net(), rand_x(), torch.tensor([1, 2])
    fn = A.get(name, **hp)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    weight = model[0].weight

    def value(create_graph):
        torch.manual_seed(13)
        return (fn(model, x, t, create_graph=create_graph) * v).sum()

    (gw,) = torch.autograd.grad(value(True), weight)
    d = torch.randn(weight.shape, generator=torch.Generator().manual_seed(4), dtype=weight.dtype)
    h = 1e-5
    with torch.no_grad():
        weight += h * d
        up = value(False)
        weight -= 2 * h * d
        down = value(False)
        weight += h * d
    torch.testing.assert_close((gw * d).sum(), (up - down) / (2 * h), rtol=1e-4, atol=1e-9)


# ----------------------------------------------------------------------------- P2's released code
def _p2_integrated_gradient(inner, z, c, steps):
    """P2's ``IntegratedGradient.forward`` (one image, the normalized input z)."""
    z = z.clone().requires_grad_(True)
    pathes = torch.linspace(0, 1, steps, dtype=torch.float32)
    pathes_x = pathes.view(steps, 1, 1, 1) * z
    accus = F.softmax(inner(pathes_x), 1)
    return torch.autograd.grad(accus[:, c].mean(), z)[0] * z.detach()


def test_p2_code_integrated_gradients_equals_the_released_code_and_the_pixel_form():
    model, x, t = net(normalize=True), rand_x(3), torch.tensor([0, 3, 2])
    norm, inner = model[0], model[1:]
    steps = 7
    ours = A.integrated_gradients(model, x, t, steps=steps, method="p2_code", baseline="normalized_zero",
                                  output="softmax")
    ref = torch.cat([_p2_integrated_gradient(inner, norm(x[i:i + 1]), int(t[i]), steps) for i in range(3)])
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    # the pixel form (x - b) * sum_i (alpha_i / steps) grad_x p_t(b + alpha_i (x - b)), b the Normalize mean
    b = norm.mean.to(x.dtype).view(1, 3, 1, 1)  # the Normalize's (float32) mean
    total = torch.zeros_like(x)
    for alpha in torch.linspace(0, 1, steps, dtype=torch.float32).tolist():
        p = (b + alpha * (x - b)).requires_grad_(True)
        (g,) = torch.autograd.grad(F.softmax(model(p), 1).gather(1, t.view(-1, 1)).sum(), p)
        total += alpha / steps * g
    torch.testing.assert_close(ours, (x - b) * total, rtol=1e-9, atol=1e-12)
    # not Sundararajan's IG: the logit version is not complete
    plain = A.integrated_gradients(model, x, t, steps=steps, method="p2_code", baseline="normalized_zero")
    with torch.no_grad():
        delta = (model(x) - model(b.expand_as(x))).gather(1, t.view(-1, 1)).squeeze(1)
    assert not torch.allclose(plain.sum((1, 2, 3)), delta, rtol=1e-2)
    # without a leading Normalize, "normalized_zero" is black
    bare = net()
    torch.testing.assert_close(A.integrated_gradients(bare, x, t, baseline="normalized_zero"),
                               A.integrated_gradients(bare, x, t, baseline=0.0), rtol=0, atol=0)


def _p2_smoothgrad(inner, z, c, noise):
    """P2's ``SmoothGrad.forward`` (one image, the normalized input z) with its noise given."""
    z = z.clone().requires_grad_(True)
    accus = F.softmax(inner(z + noise), 1)
    return torch.autograd.grad(accus[:, c].mean(), z)[0]


def test_smoothgrad_p2_options_equal_the_released_code():
    model, x, t = net(normalize=True), rand_x(3), torch.tensor([2, 0, 1])
    norm, inner = model[0], model[1:]
    n, level = 5, 0.1
    opts = {"noise_range": "image", "output": "softmax", "space": "normalized"}
    # P2's draws, one image at a time: torch.empty(n, C, H, W).normal_(0, x_std.item())
    torch.manual_seed(21)
    noises, refs = [], []
    for i in range(3):
        z = norm(x[i:i + 1])
        x_std = (z.max() - z.min()) * level
        noises.append(torch.empty(n, 3, 6, 6).normal_(0, x_std.item()))
        refs.append(_p2_smoothgrad(inner, z, int(t[i]), noises[-1]))
    ref = torch.cat(refs)
    ours = _smoothgrad(model, x, t, False, n, level, "image", "softmax", "normalized", noise=torch.cat(noises))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    # the public function draws the same numbers as P2's code (one image per call, same seed)
    for i in range(3):
        torch.manual_seed(100 + i)
        z = norm(x[i:i + 1])
        p2 = _p2_smoothgrad(inner, z, int(t[i]),
                            torch.empty(n, 3, 6, 6).normal_(0, ((z.max() - z.min()) * level).item()))
        torch.manual_seed(100 + i)
        torch.testing.assert_close(A.smoothgrad(model, x[i:i + 1], t[i:i + 1], n=n, sigma=level, **opts), p2,
                                   rtol=1e-6, atol=1e-9)
    # without a leading Normalize, space="normalized" is the pixel space
    bare = net()
    torch.manual_seed(5)
    a = A.smoothgrad(bare, x, t, n=3, space="normalized")
    torch.manual_seed(5)
    assert torch.equal(a, A.smoothgrad(bare, x, t, n=3))


def test_smoothgrad_noise_scale_per_image_and_per_batch():
    """noise_range: the batch's range (captum's single std) or each image's own."""
    model = net()
    x = torch.cat([rand_x(1) * 0.1, rand_x(1, seed=2)])  # ranges ~0.09 and ~0.9
    t = torch.tensor([0, 1])
    r = x.flatten(1)
    for noise_range, stds in (("batch", [float(0.2 * (x.max() - x.min()))] * 2),
                              ("image", (0.2 * (r.amax(1) - r.amin(1))).tolist())):
        torch.manual_seed(8)
        ours = _smoothgrad(model, x, t, False, 4, 0.2, noise_range, "logit", "pixel")
        torch.manual_seed(8)
        unit = torch.normal(0, torch.ones(8, 3, 6, 6))
        noise = unit * torch.tensor(stds).repeat_interleave(4).view(-1, 1, 1, 1)
        torch.testing.assert_close(ours, _smoothgrad(model, x, t, False, 4, 0.2, noise_range, "logit", "pixel",
                                                     noise=noise), rtol=0, atol=0)


def test_gradcam_align_corners_equals_the_released_code():
    model, x, t = net(), rand_x(3), torch.tensor([1, 0, 3])
    for layer in (model[2], model[3]):
        feats = []
        handle = layer.register_forward_hook(lambda m, a, o: feats.append(o))
        try:
            xr = x.clone().requires_grad_(True)
            output = model(xr)
        finally:
            handle.remove()
        onehot = torch.zeros_like(output).scatter_(1, t.view(-1, 1), 1)
        (grad,) = torch.autograd.grad((output * onehot).sum(), feats[0])
        cam = F.relu(feats[0].mul(F.adaptive_avg_pool2d(grad, 1)).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=(6, 6), mode="bilinear", align_corners=True)
        ours = A.gradcam(model, x, t, layer="block" if layer is model[3] else layer, align_corners=True)
        torch.testing.assert_close(ours, minmax(cam).expand_as(x), rtol=1e-9, atol=1e-12)
        assert not torch.allclose(ours, A.gradcam(model, x, t, layer=layer))  # align_corners matters
    # output="softmax": the weights are gradients of the target probability
    sm = A.gradcam(model, x, t, output="softmax")
    assert sm.shape == x.shape and not torch.allclose(sm, A.gradcam(model, x, t))


@pytest.mark.filterwarnings("ignore::UserWarning")  # captum's DeepLift, called directly for the references
def test_deeplift_p2_options():
    from captum.attr import DeepLift

    model, x, t = net(normalize=True), rand_x(3), torch.tensor([1, 2, 0])
    mean = model[0].mean.to(x.dtype).view(1, 3, 1, 1).expand_as(x)
    torch.testing.assert_close(A.deeplift(model, x, t, baseline="normalized_zero"),
                               DeepLift(model).attribute(x, baselines=mean, target=t), **TOL)
    ref = DeepLift(nn.Sequential(model, nn.Softmax(1))).attribute(x, baselines=mean, target=t)
    torch.testing.assert_close(A.get("deeplift", baseline="normalized_zero", output="softmax")(model, x, t), ref, **TOL)
    bare = net()
    torch.testing.assert_close(A.deeplift(bare, x, t, baseline="normalized_zero"), A.deeplift(bare, x, t),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="create_graph"):
        A.deeplift(model, x, t, create_graph=True)
    assert no_hooks(model)


# ----------------------------------------------------------------------------- side effects, errors
@pytest.mark.parametrize("name, hp", [("smoothgrad", {"n": 2}), ("integrated_gradients", {"steps": 3}),
                                      ("gradcam", {"layer": "block"})])
def test_train_mode_and_hooks_untouched_with_create_graph(name, hp):
    model = net().train()
    x = rand_x()
    r = A.get(name, **hp)(model, x, 1, create_graph=True)
    assert r.requires_grad and r.shape == x.shape and not x.requires_grad
    with torch.no_grad():  # create_graph=True keeps the graph inside a no_grad block too
        assert A.get(name, **hp)(model, x, 1, create_graph=True).requires_grad
    assert all(m.training for m in model.modules()) and no_hooks(model)
    model.eval()
    A.get(name, **hp)(model, x, 1)
    assert not any(m.training for m in model.modules()) and no_hooks(model)


def test_bad_options_raise_naming_the_parameter():
    model, x = net(), rand_x()
    bad = [
        ("smoothgrad", {"noise_range": "pixel"}, r"noise_range='pixel' is not known; accepted: \['batch', 'image'\]"),
        ("smoothgrad", {"output": "prob"}, r"output='prob' is not known; accepted: \['logit', 'softmax'\]"),
        ("smoothgrad", {"space": "norm"}, r"space='norm' is not known; accepted: \['pixel', 'normalized'\]"),
        ("smoothgrad", {"n": 0}, "n=0 is not valid"),
        ("smoothgrad", {"sigma": -0.1}, "sigma=-0.1 is not valid"),
        ("integrated_gradients", {"method": "riemann"}, r"method='riemann' is not known; accepted: \['gausslegendre'"),
        ("integrated_gradients", {"method": "riemann_left", "steps": 1}, "steps=1 is not valid; accepted: an int >= 2"),
        ("integrated_gradients", {"steps": 0}, "steps=0 is not valid"),
        ("integrated_gradients", {"baseline": "zero"}, r"baseline='zero' is not known; accepted: .*'normalized_zero'"),
        ("integrated_gradients", {"baseline": torch.zeros(2, 6, 6)}, "baseline tensor of shape"),
        ("integrated_gradients", {"output": "probs"}, "output='probs' is not known"),
        ("integrated_gradients", {"internal_batch_size": 0}, "internal_batch_size=0 is not valid"),
        ("gradcam", {"layer": "layer4"}, r"layer='layer4' is not known; accepted: None, 'conv', 'block'"),
        ("gradcam", {"align_corners": 1}, "align_corners=1 is not valid"),
        ("gradcam", {"output": "prob"}, "output='prob' is not known"),
        ("gradcam", {"layer": nn.ReLU()}, "layer=ReLU did not run"),
        ("deeplift", {"output": "prob"}, "output='prob' is not known"),
        ("deeplift", {"baseline": "mean"}, "baseline='mean' is not known"),
    ]
    for name, hp, match in bad:
        with pytest.raises(ValueError, match=match):
            A.get(name, **hp)(model, x, 0)
    no_act = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(32, 3)).double()
    with pytest.raises(ValueError, match="layer='block' needs an nn.ReLU or nn.Softplus"):
        A.gradcam(no_act, x, 0, layer="block")
    flat_act = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(32, 3), nn.ReLU()).double()
    with pytest.raises(ValueError, match=r"layer output has shape \(2, 3\)"):
        A.gradcam(flat_act, x, 0, layer="block")
    with pytest.raises(ValueError, match="Conv2d"):
        A.gradcam(models.build("mlp", 3, (1, 4, 4)), torch.rand(2, 1, 4, 4), 0)
    assert no_hooks(model) and no_hooks(no_act) and no_hooks(flat_act)
