"""Tests of robust_saliency.models: shapes at two input sizes, activations, softplus copies, errors."""
import pytest
import torch
import torch.nn as nn

from robust_saliency import models

SMALL = {"resnet18": {"width": 4}, "vgg11": {"width": 2}, "lenet": {}, "mlp": {"hidden": 32},
         "small_cnn": {}, "two_layer": {"hidden": 16}, "tv_resnet18": {}, "tv_resnet50": {},
         "efficientnet_b0": {}}
SHAPES = {"two_layer": [(2,), (5,)], "mlp": [(1, 16, 16), (3, 8, 8)],
          "tv_resnet18": [(3, 32, 32), (3, 9, 9)], "tv_resnet50": [(3, 9, 9)],
          "efficientnet_b0": [(3, 32, 32), (3, 9, 9)]}  # RGB stem only
SILU_ONLY = ("efficientnet_b0",)  # own SiLU activations: no relu/softplus switch
IMAGE_SHAPES = [(3, 32, 32), (1, 9, 9)]  # an odd size too: pools use ceil_mode


def shapes_for(name):
    return SHAPES.get(name, IMAGE_SHAPES)


def act_calls(model, x):
    """Number of calls of each activation module in one forward pass."""
    calls = {}
    hooks = [m.register_forward_hook(lambda m, a, o: calls.__setitem__(m, calls.get(m, 0) + 1))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.Softplus))]
    model(x)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("name", models.NAMES)
def test_output_shapes_at_two_input_sizes(name):
    torch.manual_seed(0)
    for shape in shapes_for(name):
        model = models.build(name, 7, shape, **SMALL[name])
        out = model(torch.rand(3, *shape))
        assert out.shape == (3, 7)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in models.NAMES if n not in SILU_ONLY])
def test_activation_switch_and_no_reused_activation(name):
    shape = shapes_for(name)[0]
    x = torch.rand(2, *shape)
    relu = models.build(name, 4, shape, **SMALL[name])
    soft = models.build(name, 4, shape, activation="softplus", beta=5.0, **SMALL[name])
    relus = [m for m in relu.modules() if isinstance(m, nn.ReLU)]
    softs = [m for m in soft.modules() if isinstance(m, nn.Softplus)]
    assert relus and len(relus) == len(softs)
    assert not any(isinstance(m, nn.Softplus) for m in relu.modules())
    assert not any(isinstance(m, nn.ReLU) for m in soft.modules())
    assert all(m.beta == 5.0 for m in softs)
    # every activation is its own module and is called exactly once (hooks see every nonlinearity)
    for model, acts in ((relu, relus), (soft, softs)):
        calls = act_calls(model, x)
        assert set(calls) == set(acts) and set(calls.values()) == {1}


def test_lenet_is_p1_reference_architecture():
    """Same layers and parameter count as P1's reference LeNet on CIFAR-10 (RobustAGA models/lenet.py)."""
    model = models.build("lenet", 10, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [256, 10]
    assert models.count_params(model) == 896 + 9248 + 18496 + 36928 + (4096 * 256 + 256) + 2570


def test_resnet18_standard_width_param_count():
    model = models.build("resnet18", 10, (3, 32, 32))
    assert models.count_params(model) == 11_173_962  # the CIFAR ResNet18 (Kuang Liu's pytorch-cifar)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg11_and_count_params():
    model = models.build("vgg11", 10, (1, 16, 16), width=4)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 8
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][-1] == 32
    two = models.build("two_layer", 1, (2,), hidden=64)
    assert models.count_params(two) == (2 * 64 + 64) + (64 + 1)
    two[0].weight.requires_grad_(False)
    assert models.count_params(two) == 64 + 65
    assert models.count_params(two, trainable_only=False) == 2 * 64 + 64 + 65


def test_normalize_first_layer():
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.25, 2.0]
    model = models.build("small_cnn", 3, (3, 8, 8), mean=mean, std=std)
    assert isinstance(model[0], models.Normalize)
    x = torch.rand(2, 3, 8, 8)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model[0](x), expected)
    assert torch.allclose(model(x), model[1:](expected), atol=1e-6)
    assert model.double()(x.double()).dtype == torch.float64  # buffers follow the dtype
    plain = models.build("small_cnn", 3, (3, 8, 8))
    assert not any(isinstance(m, models.Normalize) for m in plain.modules())


@pytest.mark.parametrize("name", ["lenet", "resnet18", "mlp"])
def test_softplus_copy_approximates_relu_model(name):
    torch.manual_seed(1)
    shape = shapes_for(name)[0]
    model = models.build(name, 5, shape, **SMALL[name]).double().eval()
    x = torch.rand(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        errs = [(models.softplus_copy(model, beta=b)(x) - ref).abs().max().item() for b in (5.0, 50.0, 5000.0)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-3 * (1 + ref.abs().max().item())
    copy = models.softplus_copy(model, beta=20)
    assert not any(isinstance(m, nn.ReLU) for m in copy.modules())
    assert all(m.beta == 20 for m in copy.modules() if isinstance(m, nn.Softplus))
    assert any(isinstance(m, nn.ReLU) for m in model.modules())  # original untouched
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), copy.parameters()))
    assert sum(isinstance(m, nn.MaxPool2d) for m in copy.modules()) == sum(
        isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_replace_activation_in_place():
    model = models.build("lenet", 3, (1, 8, 8), activation="softplus", beta=3.0)
    out = models.replace_activation(model, "relu")
    assert out is model
    assert not any(isinstance(m, nn.Softplus) for m in model.modules())
    models.replace_activation(model, "softplus", beta=7.0)
    assert all(m.beta == 7.0 for m in model.modules() if isinstance(m, nn.Softplus))
    with pytest.raises(ValueError, match="activation"):
        models.replace_activation(model, "tanh")


def test_errors_name_parameter_and_accepted_values():
    with pytest.raises(ValueError, match=r"name='alexnet'.*accepted.*lenet"):
        models.build("alexnet", 10, (3, 32, 32))
    with pytest.raises(ValueError, match=r"activation='gelu'.*accepted.*softplus"):
        models.build("lenet", 10, (3, 32, 32), activation="gelu")
    with pytest.raises(ValueError, match=r"unknown keyword.*hidden"):
        models.build("resnet18", 10, (3, 32, 32), hidden=3)
    with pytest.raises(ValueError, match="in_shape"):
        models.build("lenet", 10, (32, 32))
    with pytest.raises(ValueError, match="in_shape"):
        models.build("two_layer", 2, (1, 8, 8))
    with pytest.raises(ValueError, match="beta"):
        models.build("mlp", 2, (1, 8, 8), activation="softplus", beta=0)
    with pytest.raises(ValueError, match="mean and std"):
        models.build("mlp", 2, (1, 8, 8), mean=[0.5])
    with pytest.raises(ValueError, match="num_classes"):
        models.build("mlp", 0, (1, 8, 8))


def test_init_kaiming_default_and_torch_option():
    import torch
    from torch import nn

    from robust_saliency import models

    torch.manual_seed(0)
    net = models.build("lenet", 10, (3, 32, 32), activation="softplus")
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in convs:
        fan_in = m.weight[0].numel()
        assert abs(m.weight.std().item() - (2 / fan_in) ** 0.5) < 0.25 * (2 / fan_in) ** 0.5
        assert torch.all(m.bias == 0)
    torch.manual_seed(0)
    net_t = models.build("lenet", 10, (3, 32, 32), activation="softplus", init="torch")
    m = [m for m in net_t.modules() if isinstance(m, nn.Conv2d)][1]
    bound = 1 / m.weight[0].numel() ** 0.5  # kaiming_uniform(a=sqrt(5)) bound
    assert m.weight.abs().max() <= bound + 1e-6 and (m.bias != 0).any()
    torch.manual_seed(0)
    again = models.build("lenet", 10, (3, 32, 32), activation="softplus")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    import pytest
    with pytest.raises(ValueError, match="init='xavier'.*accepted"):
        models.build("lenet", 10, (3, 32, 32), init="xavier")


def test_logit_margin():
    import pytest

    from robust_saliency import attributions, models

    torch.manual_seed(0)
    net = models.build("two_layer", 2, (2,), activation="softplus", beta=3.0)
    margin = models.LogitMargin(net)
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = net(x)
        assert torch.allclose(margin(x)[:, 0], out[:, 1] - out[:, 0])
    g = attributions.get("grad")
    diff = g(net, x, torch.ones(5, dtype=torch.long)) - g(net, x, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(g(margin, x, torch.zeros(5, dtype=torch.long)), diff, atol=1e-6)
    with pytest.raises(ValueError, match="two-class"):
        models.LogitMargin(models.build("two_layer", 3, (2,)))(x)


# ------------------------------------------------------------ torchvision ImageNet ResNets


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_resnet50"])
def test_tv_resnet_weights_path_roundtrip(tmp_path, name):
    import torchvision

    torch.manual_seed(0)
    model = models.build(name, 1000, (3, 224, 224))
    norm = model[0]
    assert isinstance(norm, models.Normalize) and models.leading_normalize(model) is norm
    assert torch.allclose(norm.mean, torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(norm.std, torch.tensor([0.229, 0.224, 0.225]))
    core = model[1]
    assert isinstance(core, torchvision.models.ResNet)
    reference = getattr(torchvision.models, name[3:])(weights=None).state_dict()
    assert {k: v.shape for k, v in core.state_dict().items()} == {
        k: v.shape for k, v in reference.items()}  # torchvision's keys: its files load
    path = tmp_path / f"{name[3:]}.pth"
    torch.save(core.state_dict(), path)
    torch.manual_seed(1)  # other random weights, replaced by the file's (init runs first)
    loaded = models.build(name, 1000, (3, 224, 224), weights_path=path)
    assert all(torch.equal(a, b) for a, b in zip(core.state_dict().values(),
                                                 loaded[1].state_dict().values()))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
        calls = act_calls(loaded.eval(), x)
        assert torch.equal(loaded(x), out) and out.shape == (1, 1000)
    assert set(calls.values()) == {1} and len(calls) == sum(
        isinstance(m, nn.ReLU) for m in loaded.modules())   # no activation module reused


def test_tv_resnet18_equals_torchvision_and_loads_old_files(tmp_path):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    # files saved before BatchNorm had num_batches_tracked (e.g. resnet50-19c8e357.pth) load too
    old = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    ours = models.build("tv_resnet18", 10, (3, 32, 32), weights_path=str(tmp_path / "old.pth"))
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), tv((x - mean) / std), atol=1e-5)
    with pytest.raises(ValueError, match=r"weights_path=.*num_classes=5"):
        models.build("tv_resnet18", 5, (3, 32, 32), weights_path=tmp_path / "old.pth")
    soft = models.build("tv_resnet18", 10, (3, 32, 32), activation="softplus", beta=4.0,
                        weights_path=tmp_path / "old.pth", init="torch")
    assert torch.equal(soft[1].fc.weight, tv.fc.weight)
    assert not any(isinstance(m, nn.ReLU) for m in soft.modules())


def test_tv_resnet_errors():
    missing = "/no/such/dir/weights/resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError) as err:
        models.build("tv_resnet50", 1000, (3, 224, 224), weights_path=missing)
    msg = str(err.value)
    for words in (f"weights_path={missing!r}", "tv_resnet50",
                  "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                  "nothing is downloaded"):
        assert words in msg, msg
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        models.build("tv_resnet18", 1000, (3, 224, 224), weights_path=missing)
    with pytest.raises(ValueError, match=r"in_shape=\(1, 32, 32\).*\(3, H, W\)"):
        models.build("tv_resnet18", 10, (1, 32, 32))
    with pytest.raises(ValueError, match=r"unknown keyword.*width.*accepted.*weights_path"):
        models.build("tv_resnet50", 10, (3, 32, 32), width=4)
    with pytest.raises(ValueError, match="weights_path"):
        models.build("resnet18", 10, (3, 32, 32), weights_path=missing)


# ------------------------------------------------------------ torchvision EfficientNet-B0 (P3)


def test_efficientnet_b0_is_torchvision_and_weights_path_roundtrip(tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = models.build("efficientnet_b0", 10, (3, 64, 64))
    norm, core = model
    assert isinstance(norm, models.Normalize) and models.leading_normalize(model) is norm
    assert torch.allclose(norm.mean, torch.tensor(models.IMAGENET_MEAN))
    assert torch.allclose(norm.std, torch.tensor(models.IMAGENET_STD))
    assert isinstance(core, torchvision.models.EfficientNet)
    tv = torchvision.models.efficientnet_b0(weights=None, num_classes=10)
    assert {k: v.shape for k, v in core.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()}  # torchvision's keys: its files load
    assert models.count_params(model) == models.count_params(tv) == 4_020_358
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    path = tmp_path / "efficientnet_b0.pth"
    torch.save(core.state_dict(), path)
    torch.manual_seed(1)  # other random weights, replaced by the file's (init runs first)
    loaded = models.build("efficientnet_b0", 10, (3, 64, 64), weights_path=str(path))
    assert all(torch.equal(a, b) for a, b in zip(core.state_dict().values(),
                                                 loaded[1].state_dict().values()))
    tv.load_state_dict(torch.load(path, weights_only=True))
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), out)
        assert torch.allclose(tv.eval()((x - mean) / std), out, atol=1e-5)  # same forward
    with pytest.raises(ValueError, match=r"weights_path=.*num_classes=5"):
        models.build("efficientnet_b0", 5, (3, 64, 64), weights_path=path)
    own = models.build("efficientnet_b0", 3, (3, 32, 32), mean=[0.5] * 3, std=[0.25] * 3)
    assert own[0].mean.tolist() == [0.5] * 3 and own[0].std.tolist() == [0.25] * 3


def test_efficientnet_b0_keeps_its_own_silu_modules():
    torch.manual_seed(0)
    model = models.build("efficientnet_b0", 4, (3, 32, 32)).eval()
    silus = [m for m in model.modules() if isinstance(m, nn.SiLU)]
    assert len(silus) == 49 and not any(m.inplace for m in silus)
    assert not any(isinstance(m, (nn.ReLU, nn.Softplus)) for m in model.modules())
    calls = {}
    hooks = [m.register_forward_hook(lambda m, a, o: calls.__setitem__(m, calls.get(m, 0) + 1))
             for m in silus]
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    for h in hooks:
        h.remove()
    assert set(calls) == set(silus) and set(calls.values()) == {1}  # none reused
    # SiLU is smooth: the input gradient has a non-zero gradient itself (double backprop works)
    g, = torch.autograd.grad(out[:, 1].sum(), x, create_graph=True)
    hess, = torch.autograd.grad(g.pow(2).sum(), x)
    assert hess.abs().sum() > 0 and torch.isfinite(hess).all()
    copy = models.softplus_copy(model)
    assert sum(isinstance(m, nn.SiLU) for m in copy.modules()) == 49
    with pytest.raises(ValueError, match=r"activation='softplus'.*efficientnet_b0.*SiLU.*'relu'"):
        models.build("efficientnet_b0", 4, (3, 32, 32), activation="softplus")


def test_efficientnet_b0_errors():
    missing = "/no/such/dir/weights/efficientnet_b0_rwightman-7f5810bc.pth"
    with pytest.raises(FileNotFoundError) as err:
        models.build("efficientnet_b0", 10, (3, 224, 224), weights_path=missing)
    msg = str(err.value)
    for words in (f"weights_path={missing!r}", "'efficientnet_b0'", "state dict of efficientnet_b0",
                  "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
                  "nothing is downloaded"):
        assert words in msg, msg
    with pytest.raises(ValueError, match=r"in_shape=\(1, 32, 32\).*\(3, H, W\)"):
        models.build("efficientnet_b0", 10, (1, 32, 32))
    with pytest.raises(ValueError, match=r"unknown keyword.*width.*accepted.*weights_path"):
        models.build("efficientnet_b0", 10, (3, 32, 32), width=4)
