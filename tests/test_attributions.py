"""Tests of robust_saliency.attributions against captum, zennit, literal re-implementations,
finite differences (gradcheck) and invariants (conservation, completeness, ranges)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from robust_saliency import attributions as A
from robust_saliency import models

DIFF = ("grad", "input_x_grad", "guided_backprop", "lrp")


def tiny_net(activation="softplus", bias=True, beta=3.0, pool=True):
    """conv -> act -> (maxpool) -> flatten -> linear -> act -> linear, float64, inputs (2, 4, 4)."""
    act = (lambda: nn.Softplus(beta=beta)) if activation == "softplus" else nn.ReLU
    layers = [nn.Conv2d(2, 3, 3, padding=1, bias=bias), act()]
    layers += [nn.MaxPool2d(2)] if pool else []
    side = 2 if pool else 4
    layers += [nn.Flatten(), nn.Linear(3 * side * side, 5, bias=bias), act(), nn.Linear(5, 3, bias=bias)]
    return nn.Sequential(*layers).double()


def rand_x(n=2, shape=(2, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 0.9 + 0.05


def no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                    or getattr(m, "_backward_pre_hooks", None)) for m in model.modules())


# ----------------------------------------------------------------------------- registry
def test_registry():
    assert A.NAMES == ("grad", "input_x_grad", "guided_backprop", "lrp", "integrated_gradients",
                       "smoothgrad", "deeplift", "gradcam", "relex", "sparse_moreaugrad")
    assert A.get("lrp").fn is A.lrp
    with pytest.raises(ValueError, match="attribution='nope' is not known; accepted"):
        A.get("nope")
    assert A.DIFFERENTIABLE == ("grad", "input_x_grad", "guided_backprop", "lrp", "integrated_gradients",
                                "smoothgrad", "gradcam")
    assert [n for n in A.NAMES if A.get(n).needs_fit] == ["relex", "sparse_moreaugrad"]  # optimised per input
    assert A.get("deeplift").differentiable is False


def test_explainer_binds_hyperparameters_and_checks_their_names():
    torch.manual_seed(0)
    model, x, t = tiny_net("softplus"), rand_x(), torch.tensor([0, 2])
    ig = A.get("integrated_gradients", steps=4)
    assert ig.hparams == {"steps": 4}
    assert torch.equal(ig(model, x, t), A.integrated_gradients(model, x, t, steps=4))
    assert not torch.equal(ig(model, x, t), A.integrated_gradients(model, x, t))
    # captum's call shape: the bound hyperparameters apply, and create_graph reaches the method
    assert torch.equal(ig.attribute(model, x, t), A.integrated_gradients(model, x, t, steps=4))
    g = A.get("grad")
    assert g.attribute(model, x, t, create_graph=True).requires_grad and not g.attribute(model, x, t).requires_grad
    assert torch.equal(ig(model, x, t, steps=8), A.integrated_gradients(model, x, t, steps=8))
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['step'\]; accepted: .*'steps'"):
        A.get("integrated_gradients", step=4)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        A.get("grad", create_graph=True)  # a call option, not a hyperparameter


# ----------------------------------------------------------------------------- differentiability
@pytest.mark.parametrize("name", DIFF)
def test_gradcheck_wrt_x(name):
    torch.manual_seed(0)
    model = tiny_net("softplus")
    x = rand_x().requires_grad_(True)
    t = torch.tensor([0, 2])
    fn = A.get(name)
    assert torch.autograd.gradcheck(lambda inp: fn(model, inp, t, create_graph=True), (x,), atol=1e-6,
                                    fast_mode=True)


def test_grad_gradcheck_wrt_weight():
    torch.manual_seed(1)
    model = tiny_net("softplus")
    x = rand_x()
    t = torch.tensor([1, 0])
    params = dict(model.named_parameters())

    def f(w):
        p = dict(params, **{"0.weight": w})
        return A.grad(lambda inp: functional_call(model, p, (inp,)), x, t, create_graph=True)

    assert torch.autograd.gradcheck(f, (params["0.weight"].detach().clone().requires_grad_(True),), fast_mode=True)


@pytest.mark.parametrize("name", DIFF)
def test_map_differentiable_wrt_weights(name):
    """The map feeds a regularizer: its gradient w.r.t. the weights exists and is finite."""
    torch.manual_seed(2)
    model = tiny_net("softplus")
    r = A.get(name)(model, rand_x(), torch.tensor([0, 1]), create_graph=True)
    gw = torch.autograd.grad((r ** 2).sum(), model[0].weight)[0]
    assert torch.isfinite(gw).all() and gw.abs().sum() > 0


@pytest.mark.parametrize("name", DIFF)
def test_weight_gradient_of_the_map_matches_finite_differences(name):
    """d/dW sum(map^2) is the true derivative (central differences along a random direction in
    the first conv's and the last linear's weights).  zennit's rules use detached copies of the
    weights (ParamMod), so an LRP built on zennit fails this: the reason ``lrp`` stays hand-written."""
    torch.manual_seed(4)
    model = tiny_net("softplus")
    x, t = rand_x(), torch.tensor([0, 2])
    for weight in (model[0].weight, model[-1].weight):
        (gw,) = torch.autograd.grad((A.get(name)(model, x, t, create_graph=True) ** 2).sum(), weight)
        v = torch.randn_like(weight)
        h = 1e-6
        with torch.no_grad():
            weight += h * v
            up = (A.get(name)(model, x, t) ** 2).sum()
            weight -= 2 * h * v
            down = (A.get(name)(model, x, t) ** 2).sum()
            weight += h * v
        assert torch.allclose((gw * v).sum(), (up - down) / (2 * h), rtol=1e-5, atol=1e-9)


def test_lrp_create_graph_directional_finite_difference():
    torch.manual_seed(3)
    model = tiny_net("softplus")
    x, t = rand_x(), torch.tensor([2, 1])
    v = torch.randn_like(x)
    w = torch.randn_like(x)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad((A.lrp(model, xg, t, create_graph=True) * w).sum(), xg)
    h = 1e-6
    fd = ((A.lrp(model, x + h * v, t) - A.lrp(model, x - h * v, t)) * w).sum() / (2 * h)
    assert torch.allclose((gx * v).sum(), fd, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- captum references
def test_grad_and_input_x_grad_match_captum():
    from captum.attr import InputXGradient, Saliency

    torch.manual_seed(4)
    model = models.build("small_cnn", 4, (3, 8, 8), width=4).double()
    x, t = rand_x(3, (3, 8, 8)), torch.tensor([0, 3, 1])
    assert torch.allclose(A.grad(model, x, t), Saliency(model).attribute(x, target=t, abs=False))
    assert torch.allclose(A.input_x_grad(model, x, t), InputXGradient(model).attribute(x, target=t))
    assert torch.allclose(A.grad(model, x, 2), A.grad(model, x, torch.tensor([2, 2, 2])))  # int target


def test_guided_backprop_relu_matches_captum():
    from captum.attr import GuidedBackprop

    torch.manual_seed(5)
    model = models.build("lenet", 4, (3, 8, 8), width=4, hidden=16).double()
    x, t = rand_x(3, (3, 8, 8)), torch.tensor([1, 2, 3])
    ref = GuidedBackprop(model).attribute(x, target=t)
    out = A.guided_backprop(model, x, t)
    assert torch.allclose(out, ref)
    assert not torch.allclose(out, A.grad(model, x, t))


def test_guided_backprop_softplus_literal():
    """Layer-by-layer backward written out by hand: relu(grad_out) * sigmoid(beta z) at each softplus."""
    torch.manual_seed(6)
    beta = 3.0
    model = tiny_net("softplus", beta=beta, pool=False)
    conv, _, _, lin1, _, lin2 = model
    x, t = rand_x(), torch.tensor([0, 2])
    with torch.no_grad():
        z1 = conv(x)
        a1 = nn.functional.softplus(z1, beta)
        z2 = lin1(a1.flatten(1))
        g = nn.functional.one_hot(t, 3).double() @ lin2.weight  # d logit / d a2
        g = torch.relu(g) * torch.sigmoid(beta * z2)             # through softplus 2
        g = (g @ lin1.weight).view_as(z1)                        # through linear 1
        g = torch.relu(g) * torch.sigmoid(beta * z1)             # through softplus 1
        ref = nn.functional.conv_transpose2d(g, conv.weight, padding=1)  # through the conv
    assert torch.allclose(A.guided_backprop(model, x, t), ref)


# ----------------------------------------------------------------------------- LRP vs zennit
def zennit_lrp(model, x, t, low=0.0, high=1.0, zero_bias=False, canonizers=None, init="logit",
               create_graph=False, stabilizer=1e-6):
    from zennit.attribution import Gradient
    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import ZBox, ZPlus
    from zennit.types import Linear as ZLinear

    zero_params = "bias" if zero_bias else None
    composite = SpecialFirstLayerMapComposite(
        layer_map=layer_map_base(stabilizer) + [(ZLinear, ZPlus(stabilizer=stabilizer, zero_params=zero_params))],
        first_map=[(ZLinear, ZBox(low, high, stabilizer=stabilizer))], canonizers=canonizers)

    def attr_output(out):
        oh = nn.functional.one_hot(t, out.shape[1]).to(out)
        # zennit's LRP has a correct graph only if this output requires grad
        return out * oh if init == "logit" else oh.requires_grad_(create_graph)

    with Gradient(model, composite, create_graph=create_graph) as attributor:
        _, rel = attributor(x, attr_output)
    return rel


@pytest.mark.parametrize("zplus_bias", [True, False])
@pytest.mark.parametrize("init", ["logit", "onehot"])
def test_lrp_matches_zennit_relu(zplus_bias, init):
    torch.manual_seed(7)
    model = models.build("lenet", 3, (3, 8, 8), width=4, hidden=16).double()
    for p in model.parameters():  # non-zero biases of both signs, so that the bias handling is tested
        if p.dim() == 1:
            nn.init.uniform_(p, -0.1, 0.1)
    x, t = rand_x(4, (3, 8, 8)), torch.tensor([0, 1, 2, 1])
    ours = A.lrp(model, x, t, zplus_bias=zplus_bias, init=init)
    ref = zennit_lrp(model, x, t, zero_bias=not zplus_bias, init=init)
    assert torch.allclose(ours, ref, rtol=1e-7, atol=1e-10)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def random_batchnorm(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    return model.eval()


def test_lrp_batchnorm_folding_matches_zennit_canonizer():
    from zennit.canonizers import SequentialMergeBatchNorm

    torch.manual_seed(8)
    model = random_batchnorm(models.build("vgg11", 3, (3, 16, 16), width=2).double())
    x, t = rand_x(3, (3, 16, 16)), torch.tensor([0, 1, 2])
    ours = A.lrp(model, x, t, stabilizer=1e-13)
    ref = zennit_lrp(model, x, t, canonizers=[SequentialMergeBatchNorm()], stabilizer=1e-13)
    # zennit's merged BatchNorm keeps its eps (x / sqrt(1 + eps)): agreement to ~1e-5, not 1e-12
    assert rel_err(ours, ref) < 1e-4


def test_lrp_residual_resnet18_matches_zennit_sum_canonizer():
    """Library ResNet18: residual sums split relevance in proportion (zennit: Sum module + Norm rule)."""
    from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
    from zennit.layer import Sum

    def block_forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.canonizer_sum(torch.stack([out, self.shortcut(x)], dim=-1)))

    def attribute_map(name, module):
        if isinstance(module, models.BasicBlock):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    torch.manual_seed(20)
    model = random_batchnorm(models.build("resnet18", 3, (3, 8, 8), width=2).double())
    x, t = rand_x(3, (3, 8, 8)), torch.tensor([0, 1, 2])
    canonizer = CompositeCanonizer((SequentialMergeBatchNorm(), AttributeCanonizer(attribute_map)))
    ref = zennit_lrp(model, x, t, canonizers=[canonizer], stabilizer=1e-13)
    # zennit's merged BatchNorm keeps its eps (x / sqrt(1 + eps)): agreement to ~1e-5, not 1e-12
    assert rel_err(A.lrp(model, x, t, stabilizer=1e-13), ref) < 1e-4


def test_lrp_torchvision_resnet_with_inplace_relu_matches_zennit():
    """torchvision's ResNet (in-place ReLU reused twice per block, ``out += identity``, overlapping max-pool)."""
    torchvision = pytest.importorskip("torchvision")
    from zennit.torchvision import ResNetCanonizer

    torch.manual_seed(21)
    model = random_batchnorm(torchvision.models.resnet18(num_classes=4).double())
    x, t = rand_x(2, (3, 16, 16)), torch.tensor([1, 3])
    ref = zennit_lrp(model, x, t, canonizers=[ResNetCanonizer()], stabilizer=1e-13)
    # zennit's merged BatchNorm keeps its eps (x / sqrt(1 + eps)): agreement to ~1e-5, not 1e-12
    assert rel_err(A.lrp(model, x, t, stabilizer=1e-13), ref) < 1e-4
    assert no_hooks(model)


def test_lrp_normalize_uses_transformed_box_bounds():
    """LRP of Normalize + net at x == zennit on the net alone at u = (x - m) / s, bounds (0 - m) / s, (1 - m) / s."""
    torch.manual_seed(9)
    mean, std = torch.tensor([0.3, 0.5, 0.4]), torch.tensor([0.2, 0.3, 0.25])
    model = models.build("small_cnn", 3, (3, 8, 8), width=4, mean=mean, std=std).double()
    x, t = rand_x(2, (3, 8, 8)), torch.tensor([2, 0])
    m, s = mean.double().view(1, 3, 1, 1), std.double().view(1, 3, 1, 1)
    ref = zennit_lrp(model[1:], (x - m) / s, t, low=(0 - m) / s, high=(1 - m) / s)
    assert torch.allclose(A.lrp(model, x, t), ref, rtol=1e-7, atol=1e-10)
    mlp = models.build("mlp", 3, (3, 4, 4), hidden=8, mean=mean, std=std).double()  # Normalize -> Flatten -> Linear
    x = rand_x(2, (3, 4, 4))
    low, high = ((0 - m) / s).expand(1, 3, 4, 4).reshape(1, -1), ((1 - m) / s).expand(1, 3, 4, 4).reshape(1, -1)
    ref = zennit_lrp(mlp[2:], ((x - m) / s).flatten(1), t, low=low, high=high)
    assert torch.allclose(A.lrp(mlp, x, t), ref.view_as(x), rtol=1e-7, atol=1e-10)


def test_lrp_second_order_matches_zennit_softplus():
    """d/dx <w, LRP(x)> agrees with zennit's create_graph=True on a softplus net (zennit handles Softplus as Pass)."""
    torch.manual_seed(10)
    model = tiny_net("softplus")
    x, t = rand_x(), torch.tensor([1, 2])
    w = torch.randn_like(x)
    grads = []
    for fn in (lambda inp: A.lrp(model, inp, t, create_graph=True),
               lambda inp: zennit_lrp(model, inp, t, create_graph=True)):
        xg = x.clone().requires_grad_(True)
        r = fn(xg)
        grads.append((r, torch.autograd.grad((r * w).sum(), xg)[0]))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-7, atol=1e-10)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_lrp_conservation_without_biases(activation):
    torch.manual_seed(11)
    model = tiny_net(activation, bias=False)
    x = rand_x(4)
    t = torch.tensor([0, 1, 2, 0])
    r = A.lrp(model, x, t, stabilizer=1e-12)  # the default 1e-6 shifts small denominators
    logit = model(x).gather(1, t.view(-1, 1)).squeeze(1)
    assert torch.allclose(r.sum((1, 2, 3)), logit, rtol=1e-5, atol=1e-8)
    r1 = A.lrp(model, x, t, init="onehot", stabilizer=1e-12)  # P1's delta_iy: the map sums to 1
    assert torch.allclose(r1.sum((1, 2, 3)), torch.ones(4, dtype=torch.float64), rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "lenet", "small_cnn", "vgg11", "two_layer"])
def test_lrp_conservation_on_library_models(name):
    """With zero biases (BatchNorm: zero mean and shift), every layer conserves relevance.

    (Not resnet18: a negative pre-activation entering a residual sum carries relevance that z+
    drops when its positive pre-activation z+ is zero, as in zennit.)
    """
    torch.manual_seed(19)
    shape = (2,) if name == "two_layer" else (3, 8, 8)
    kw = {"resnet18": {"width": 2}, "vgg11": {"width": 1}, "mlp": {"hidden": 16}}.get(name, {})
    model = models.build(name, 3, shape, mean=[0.4] * shape[0], std=[0.3] * shape[0], **kw).double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
        for p in m.parameters(recurse=False):
            if p.dim() == 1 and not isinstance(m, nn.BatchNorm2d) or (isinstance(m, nn.BatchNorm2d) and p is m.bias):
                nn.init.zeros_(p)
    x, t = rand_x(3, shape), torch.tensor([0, 1, 2])
    r = A.lrp(model, x, t, stabilizer=1e-12)
    logit = model(x).gather(1, t.view(-1, 1)).squeeze(1).detach()
    assert torch.allclose(r.flatten(1).sum(1), logit, rtol=1e-6, atol=1e-9)
    with torch.no_grad():  # a caller's no_grad context does not matter
        assert torch.allclose(A.lrp(model, x, t, stabilizer=1e-12), r)
        assert torch.allclose(A.guided_backprop(model, x, t), A.guided_backprop(model, x, t, create_graph=True))


def test_lrp_resnet_runs_conserves_share_and_restores_mode():
    torch.manual_seed(12)
    model = models.build("resnet18", 3, (3, 8, 8), width=2).double()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, t = rand_x(2, (3, 8, 8)), torch.tensor([0, 2])
    r = A.lrp(model, x, t)
    assert r.shape == x.shape and torch.isfinite(r).all()
    assert all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # no BN statistics update
    assert no_hooks(model)


def test_lrp_rejects_unpaired_batchnorm_and_other_activations():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2)).eval()
    with pytest.raises(ValueError, match="BatchNorm"):
        A.lrp(model, torch.rand(1, 1, 4, 4), 0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="Tanh"):
        A.lrp(model, torch.rand(1, 2), 0)
    assert no_hooks(model)
    with pytest.raises(ValueError, match="init"):
        A.lrp(tiny_net(), rand_x(), 0, init="ones")


# ----------------------------------------------------------------------------- captum-based methods
def test_integrated_gradients_completeness():
    torch.manual_seed(13)
    model = tiny_net("softplus")
    x, t = rand_x(3), torch.tensor([0, 1, 2])
    ig = A.integrated_gradients(model, x, t, steps=32)
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x))).gather(1, t.view(-1, 1)).squeeze(1)
    assert ig.shape == x.shape
    assert torch.allclose(ig.sum((1, 2, 3)), delta, rtol=1e-4, atol=1e-6)


def test_smoothgrad_noise_free_equals_grad_and_is_random_otherwise():
    torch.manual_seed(14)
    model = tiny_net("softplus")
    x, t = rand_x(), torch.tensor([0, 1])
    assert torch.allclose(A.smoothgrad(model, x, t, n=4, sigma=0.0), A.grad(model, x, t))
    torch.manual_seed(0)
    a = A.smoothgrad(model, x, t, n=8)
    torch.manual_seed(0)
    b = A.smoothgrad(model, x, t, n=8)
    assert torch.equal(a, b) and not torch.allclose(a, A.grad(model, x, t))


def test_deeplift_linear_model_and_summation_to_delta():
    torch.manual_seed(15)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(32, 3)).double()
    x, t = rand_x(), torch.tensor([2, 0])
    assert torch.allclose(A.deeplift(lin, x, t), A.input_x_grad(lin, x, t))
    model = tiny_net("relu")
    dl = A.deeplift(model, x, t)
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x))).gather(1, t.view(-1, 1)).squeeze(1)
    assert torch.allclose(dl.sum((1, 2, 3)), delta, rtol=1e-5, atol=1e-7)


def test_gradcam_range_shape_and_errors():
    torch.manual_seed(16)
    model = models.build("lenet", 4, (3, 12, 12), width=4, hidden=16)
    x, t = torch.rand(3, 3, 12, 12), torch.tensor([0, 1, 3])
    cam = A.gradcam(model, x, t)
    assert cam.shape == x.shape
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.equal(cam[:, 0], cam[:, 2])  # broadcast over channels
    assert A.last_conv(model, x) is model[7]
    with pytest.raises(ValueError, match="Conv2d"):
        A.gradcam(models.build("mlp", 3, (1, 4, 4)), torch.rand(2, 1, 4, 4), 0)


@pytest.mark.parametrize("name", ["deeplift"])
def test_captum_methods_refuse_create_graph(name):
    model = models.build("small_cnn", 3, (1, 8, 8))
    with pytest.raises(ValueError, match="create_graph"):
        A.get(name)(model, torch.rand(2, 1, 8, 8), 0, create_graph=True)


# ----------------------------------------------------------------------------- side effects
@pytest.mark.parametrize("name", A.NAMES)
def test_no_leftover_hooks_and_model_unchanged(name):
    torch.manual_seed(17)
    model = models.build("small_cnn", 3, (3, 8, 8), activation="softplus").eval()
    x, t = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    with torch.no_grad():
        before = model(x)
    r = A.get(name)(model, x, t)
    assert r.shape == x.shape
    assert no_hooks(model)
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert not x.requires_grad


def test_train_mode_preserved_by_gradient_methods():
    model = models.build("small_cnn", 3, (3, 8, 8))
    model.train()
    for name in DIFF:
        A.get(name)(model, torch.rand(2, 3, 8, 8), 1, create_graph=True)
        assert all(m.training for m in model.modules()) and no_hooks(model)


# ----------------------------------------------------------------------------- postprocess
def test_postprocess_ranges_and_gradient():
    torch.manual_seed(18)
    h = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    m = A.postprocess(h, "max")
    assert m.shape == (3, 1, 10, 10)
    assert torch.allclose(m.flatten(1).max(1).values, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(m, h.abs().sum(1, keepdim=True) / h.abs().sum(1).flatten(1).max(1).values.view(3, 1, 1, 1))
    p = A.postprocess(h, "p99")
    assert p.min() >= 0 and p.max() <= 1
    saturated = (p == 1).flatten(1).float().mean(1)
    assert ((saturated >= 0.01) & (saturated <= 0.03)).all()  # top 1% clipped
    hg = h[:2, :, :5, :5].clone().requires_grad_(True)
    for mode in ("max", "p99"):
        assert torch.autograd.gradcheck(lambda a: A.postprocess(a, mode), (hg,), fast_mode=True)
    with pytest.raises(ValueError, match="mode"):
        A.postprocess(h, "l1")


def _normalized_net():
    """(inner net, Normalize + inner, x, targets, x_n = (x - mu)/sigma, grad_{x_n} of the target logit), float64."""
    from robust_saliency.models import Normalize

    torch.manual_seed(5)
    inner = tiny_net("softplus")
    model = nn.Sequential(Normalize([0.4, 0.6], [0.2, 0.3]), *inner).double()
    mu, sd = model[0].mean.view(1, 2, 1, 1), model[0].std.view(1, 2, 1, 1)
    x, t = rand_x(), torch.tensor([1, 2])
    x_n = ((x - mu) / sd).requires_grad_(True)
    (g_n,) = torch.autograd.grad(inner(x_n).gather(1, t.view(-1, 1)).sum(), x_n)
    return inner, model, x, t, x_n, g_n


def test_input_x_grad_in_p1s_normalized_space():
    """space='normalized' is P1's released xGrad: x_n * grad_{x_n} g_y with x_n = (x - mu)/sigma,
    computed on the network without its Normalize (float64 transcription)."""
    inner, model, x, t, x_n, g_n = _normalized_net()
    ours = A.get("input_x_grad", space="normalized")(model, x, t)
    torch.testing.assert_close(ours, (x_n * g_n).detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(A.input_x_grad(model, x, t), ours, rtol=0, atol=0)  # the default
    assert not torch.allclose(A.input_x_grad(model, x, t, space="pixel"), ours)  # pixel form differs
    torch.testing.assert_close(A.input_x_grad(inner, x, t, space="normalized"),  # no Normalize: same
                               A.input_x_grad(inner, x, t, space="pixel"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="space='norm' is not known"):
        A.input_x_grad(model, x, t, space="norm")


def test_grad_in_the_normalized_space():
    """space='normalized' is P3's released simplegrad (and P1's): grad_{x_n} g_y with x_n = (x - mu)/sigma,
    computed on the network without its Normalize (float64); space='pixel' is the old call."""
    inner, model, x, t, x_n, g_n = _normalized_net()
    ours = A.get("grad", space="normalized")(model, x, t)
    torch.testing.assert_close(ours, g_n, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(A.grad(model, x, t, space="normalized"), ours, rtol=0, atol=0)
    # pixel (the default) is the old call: the gradient of the target logit w.r.t. x, bit for bit
    xr = x.clone().requires_grad_(True)
    (g_x,) = torch.autograd.grad(model(xr).gather(1, t.view(-1, 1)).sum(), xr)
    torch.testing.assert_close(A.grad(model, x, t), g_x, rtol=0, atol=0)
    torch.testing.assert_close(A.grad(model, x, t, space="pixel"), A.grad(model, x, t), rtol=0, atol=0)
    assert not torch.allclose(A.grad(model, x, t), ours)
    torch.testing.assert_close(ours, g_x * model[0].std.view(1, 2, 1, 1), rtol=1e-12, atol=1e-14)  # sigma_c * grad_x
    torch.testing.assert_close(A.grad(inner, x, t, space="normalized"),  # no Normalize: the pixel gradient
                               A.grad(inner, x, t), rtol=0, atol=0)
    # differentiable with create_graph: gradcheck w.r.t. x and a weight gradient through the map
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inp: A.grad(model, inp, t, create_graph=True, space="normalized"),
                                    (xg,), atol=1e-6, fast_mode=True)
    r = A.grad(model, x, t, create_graph=True, space="normalized")
    assert torch.autograd.grad(r.pow(2).sum(), model[1].weight)[0].abs().sum() > 0
    with pytest.raises(ValueError, match=r"space='norm' is not known; accepted: \['pixel', 'normalized'\]"):
        A.grad(model, x, t, space="norm")


def _sparsify_numpy(h, q):
    """Soft thresholding at the per-sample np.quantile of |h| (float64), one sample at a time."""
    out = []
    for v in h.numpy():
        tau = np.quantile(np.abs(v), q)
        out.append(np.sign(v) * np.maximum(np.abs(v) - tau, 0.0))
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("shape", [(3, 2, 5, 5), (4, 17), (2, 6, 6)])
@pytest.mark.parametrize("q", [0.0, 0.3, 0.8, 0.95])
def test_sparsify_matches_numpy_and_keeps_signs_and_order(shape, q):
    torch.manual_seed(22)
    h = torch.randn(shape, dtype=torch.float64)
    s = A.sparsify(h, q)
    assert s.shape == h.shape
    torch.testing.assert_close(s, _sparsify_numpy(h, q), rtol=0, atol=1e-14)
    n = h[0].numel()
    zeros = (s == 0).flatten(1).sum(1)
    # linear interpolation: the entries at or below the q-quantile, floor(q (n - 1)) + 1 of them
    assert (zeros == int(q * (n - 1)) + 1).all() and (zeros.double() / n - q).abs().max() <= 1 / n + 1e-12
    alive = s != 0
    assert torch.equal(s.sign()[alive], h.sign()[alive])  # signs preserved
    for i in range(shape[0]):  # order of |h| preserved among the survivors; each shrinks by one tau
        hs, ss = h[i][alive[i]].abs(), s[i][alive[i]].abs()
        assert torch.equal(hs.argsort(), ss.argsort())
        shift = hs - ss
        torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=0, atol=1e-14)


def test_sparsify_q0_shifts_by_the_minimum_and_is_differentiable():
    torch.manual_seed(23)
    h = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    tau = h.abs().flatten(1).min(1).values.view(-1, 1, 1, 1)
    s = A.sparsify(h, 0.0)
    torch.testing.assert_close(s, h.sign() * (h.abs() - tau), rtol=0, atol=1e-15)
    assert ((s == 0).flatten(1).sum(1) == 1).all()  # only the smallest |h| becomes 0
    hg = h.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: A.sparsify(a, 0.55), (hg,), fast_mode=True)
    assert torch.equal(A.sparsify(h), A.sparsify(h, 0.8))  # the default
    for bad in (1.0, -0.1, 2, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"q=.* is not valid; accepted: a number in \[0, 1\)"):
            A.sparsify(h, bad)
