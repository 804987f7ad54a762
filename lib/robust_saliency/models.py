"""Models: ``build(name, num_classes, in_shape, activation='relu', beta=3.0, **kw)``.

Every model takes inputs in the pixel range [0, 1]; per-channel normalization, when wanted,
is the model's first module (:class:`Normalize`, from the ``mean``/``std`` keywords).
Activations are separate ``nn.ReLU`` / ``nn.Softplus(beta)`` module instances, one per use
(no functional activations and no module reused inside ``forward``), so that hooks
(guided backprop, LRP, captum's DeepLift) find every nonlinearity. Max-pooling is an
``nn.MaxPool2d`` module and is never replaced by :func:`replace_activation`.

``tv_resnet18`` / ``tv_resnet50`` are torchvision's ImageNet ResNets
(``torchvision.models.ResNet``, same modules and state-dict keys, so torchvision's pretrained
state dicts load into them strictly) with an ImageNet :class:`Normalize` first and, optionally,
local weights (``weights_path``; nothing is downloaded).  ``efficientnet_b0`` is torchvision's
EfficientNet-B0 (P3's ImageNette and CUB-GHA network) in the same way; its activations are its
own ``nn.SiLU`` modules (so it has no ReLU and ``activation="softplus"`` is rejected).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

NAMES = ("mlp", "lenet", "resnet18", "vgg11", "small_cnn", "two_layer", "tv_resnet18",
         "tv_resnet50", "efficientnet_b0")
ACTIVATIONS = ("relu", "softplus")
INITS = ("kaiming", "torch")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics (the tv_* default)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Per-channel normalization ``(x - mean) / std`` as the model's first layer."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != std.shape:
            raise ValueError(f"mean={mean.tolist()} and std={std.tolist()} must have the same length")
        if (std <= 0).any():
            raise ValueError(f"std={std.tolist()} must be positive")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def _view(self, t, x):
        return t.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class LogitMargin(nn.Module):
    """A two-class model's margin g_1(x) - g_0(x) as a single logit (the BCE logit of P1 Fig. 1).

    Output shape (N, 1), so ``attributions.grad(LogitMargin(m), x, 0)`` is the gradient of the
    margin; softmax cross-entropy over two classes is BCE on this logit.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.shape[-1] != 2:
            raise ValueError(f"LogitMargin needs a two-class model; got {out.shape[-1]} outputs")
        return out[:, 1:] - out[:, :1]


def make_activation(activation: str = "relu", beta: float = 3.0) -> nn.Module:
    """A fresh activation module: ``nn.ReLU()`` or ``nn.Softplus(beta)`` (P1 uses Softplus beta=3)."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "softplus":
        return nn.Softplus(beta=beta)
    raise ValueError(f"activation={activation!r} is not known; accepted: {list(ACTIVATIONS)}")


def _check_kw(name, kw, accepted):
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} got unknown keyword(s) {unknown}; accepted: {sorted(accepted)}")


def _image_shape(name, in_shape):
    if len(in_shape) != 3:
        raise ValueError(f"in_shape={tuple(in_shape)} for model {name!r}: accepted is (C, H, W)")
    return in_shape


def _pooled(n, times):
    """Spatial size after ``times`` 2x2 max-pools with ceil_mode=True."""
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


def _mlp(in_shape, num_classes, act, hidden=256):
    d = int(math.prod(in_shape))
    return [nn.Flatten(), nn.Linear(d, hidden), act(), nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, num_classes)]


def _two_layer(in_shape, num_classes, act, hidden=64):
    if len(in_shape) != 1:
        raise ValueError(f"in_shape={tuple(in_shape)} for model 'two_layer': accepted is (D,), e.g. (2,)")
    return [nn.Linear(in_shape[0], hidden), act(), nn.Linear(hidden, num_classes)]


def _lenet(in_shape, num_classes, act, width=32, hidden=256):
    """P1's reference LeNet (RobustAGA models/lenet.py): 2x(conv3x3 32), pool, 2x(conv3x3 64), pool, fc 256, fc."""
    c, h, w = _image_shape("lenet", in_shape)
    w1, w2 = width, 2 * width
    flat = w2 * _pooled(h, 2) * _pooled(w, 2)
    return [nn.Conv2d(c, w1, 3, padding=1), act(), nn.Conv2d(w1, w1, 3, padding=1), act(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(w1, w2, 3, padding=1), act(), nn.Conv2d(w2, w2, 3, padding=1), act(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Flatten(), nn.Linear(flat, hidden), act(), nn.Linear(hidden, num_classes)]


def _small_cnn(in_shape, num_classes, act, width=8):
    c, h, w = _image_shape("small_cnn", in_shape)
    flat = 2 * width * _pooled(h, 1) * _pooled(w, 1)
    return [nn.Conv2d(c, width, 3, padding=1), act(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), act(),
            nn.Flatten(), nn.Linear(flat, num_classes)]


_VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


def _vgg11(in_shape, num_classes, act, width=64, batch_norm=True):
    """VGG11 (Simonyan and Zisserman 2015; P4 Table 3), channels scaled by ``width`` (64 = standard).

    Max-pools use ceil_mode so that small inputs (8x8, 16x16) keep a 1x1 map; an adaptive
    average pool and one hidden fully connected layer make the head input-size independent.
    """
    c, _, _ = _image_shape("vgg11", in_shape)
    layers, cin = [], c
    for v in _VGG11:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        cout = v * width
        layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(act())
        cin = cout
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, cin), act(),
                     nn.Linear(cin, num_classes)]


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016) with its own activation modules (none reused)."""

    def __init__(self, cin: int, cout: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet18 (3x3 stem, no max-pool; He et al. 2016) with a ``width`` parameter (64 = standard)."""

    def __init__(self, in_channels: int, num_classes: int, act: Callable[[], nn.Module],
                 width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = act()
        blocks, cin = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = mult * width
            for j in range(2):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, act))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.layers(out))))


def _conv3x3(cin, cout, stride=1, groups=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


class TVBasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (same submodules, same state-dict keys, same forward) with one
    activation module per use (``act1``, ``act2``) instead of one ``relu`` called twice."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if groups != 1 or base_width != 64 or dilation != 1:
            raise ValueError(f"groups={groups!r}, base_width={base_width!r}, dilation={dilation!r}: "
                             f"TVBasicBlock accepts groups=1, base_width=64, dilation=1 only")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.act1 = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.act2 = nn.ReLU()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act2(out + identity)


class TVBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (ResNet v1.5: stride on the 3x3 conv; same submodules, same
    state-dict keys, same forward) with one activation module per use (``act1``..``act3``)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.act1 = nn.ReLU()
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.downsample = downsample
        self.act3 = nn.ReLU()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act3(out + identity)


_TV_RESNETS = {  # name: (block, layers, official torchvision ImageNet weights)
    "tv_resnet18": (TVBasicBlock, (2, 2, 2, 2),
                    "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    "tv_resnet50": (TVBottleneck, (3, 4, 6, 3),
                    "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
}


_TV_EFFICIENTNETS = {  # name: official torchvision ImageNet weights (IMAGENET1K_V1)
    "efficientnet_b0": "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
}


def _tv_arch(name):
    """torchvision's name of a torchvision model here (``tv_resnet50`` -> ``resnet50``)."""
    return name[3:] if name.startswith("tv_") else name


def _tv_weights_file(name, weights_path):
    """``weights_path`` as a Path to an existing file, else FileNotFoundError saying what to put."""
    path = Path(weights_path).expanduser()
    if not path.is_file():
        url = _TV_RESNETS[name][2] if name in _TV_RESNETS else _TV_EFFICIENTNETS[name]
        fname = url.rsplit("/", 1)[1]
        raise FileNotFoundError(
            f"weights_path={str(path)!r} for model {name!r} does not exist: put a torchvision "
            f"state dict of {_tv_arch(name)} there, e.g. the official ImageNet weights {fname} "
            f"(from {url}), conventionally as <data_root>/weights/{fname}; "
            f"nothing is downloaded")
    return path


def _tv_resnet(name, in_shape, num_classes):
    """torchvision's ``ResNet`` with :class:`TVBasicBlock` / :class:`TVBottleneck` blocks."""
    if len(in_shape) != 3 or in_shape[0] != 3:
        raise ValueError(f"in_shape={tuple(in_shape)} for model {name!r}: accepted is (3, H, W) "
                         f"(torchvision's RGB stem), e.g. (3, 224, 224)")
    from torchvision.models import ResNet

    block, layers, _ = _TV_RESNETS[name]
    return ResNet(block, list(layers), num_classes=num_classes)


def _tv_efficientnet(name, in_shape, num_classes):
    """torchvision's ``efficientnet_b0(weights=None, num_classes=...)`` (dropout 0.2, stochastic
    depth 0.2, as the authors' ``EfficientNet.from_name``) with every ``nn.SiLU`` a fresh,
    not in-place module (the squeeze-excitation ones are in-place in torchvision)."""
    if len(in_shape) != 3 or in_shape[0] != 3:
        raise ValueError(f"in_shape={tuple(in_shape)} for model {name!r}: accepted is (3, H, W) "
                         f"(torchvision's RGB stem), e.g. (3, 224, 224)")
    from torchvision.models import efficientnet_b0

    core = efficientnet_b0(weights=None, num_classes=num_classes)
    _replace_with(core, (nn.SiLU,), nn.SiLU)
    return core


def _load_tv_weights(name, core, path, num_classes):
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"weights_path={str(path)!r} holds a {type(state).__name__}; accepted: "
                         f"a torchvision state dict of {_tv_arch(name)} (parameter name -> tensor)")
    try:
        core.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights_path={str(path)!r} does not fit model {name!r} with "
                         f"num_classes={num_classes} (torchvision's ImageNet weights need "
                         f"num_classes=1000): {err}") from None


_BUILDERS = {"mlp": (_mlp, ("hidden",)), "two_layer": (_two_layer, ("hidden",)),
             "lenet": (_lenet, ("width", "hidden")), "small_cnn": (_small_cnn, ("width",)),
             "vgg11": (_vgg11, ("width", "batch_norm")), "resnet18": (None, ("width",)),
             "tv_resnet18": (None, ("weights_path",)), "tv_resnet50": (None, ("weights_path",)),
             "efficientnet_b0": (None, ("weights_path",))}


def build(name: str, num_classes: int, in_shape: Sequence[int], activation: str = "relu", beta: float = 3.0,
          **kw: object) -> nn.Sequential:
    """Build model ``name`` for inputs of shape ``in_shape`` in [0, 1].

    ``activation``: ``relu`` or ``softplus`` (with ``beta``; P1 uses 3). Optional ``mean`` and
    ``std`` (per channel) put a :class:`Normalize` first. Per-model keywords: mlp ``hidden``
    (256), two_layer ``hidden`` (64), lenet ``width`` (32) and ``hidden`` (256), small_cnn
    ``width`` (8), vgg11 ``width`` (64) and ``batch_norm`` (True), resnet18 ``width`` (64).

    ``tv_resnet18`` / ``tv_resnet50``: torchvision's ImageNet ResNet18/50 (``weights=None``;
    ``torchvision.models.ResNet`` with :class:`TVBasicBlock` / :class:`TVBottleneck`, which keep
    torchvision's modules and state-dict keys but give every activation its own module, so
    ``activation="softplus"`` works too).  ``in_shape`` must be (3, H, W); the model is
    ``Sequential(Normalize, resnet)`` with ImageNet ``mean``/``std`` unless given, so it takes
    [0, 1] inputs like every other model.  ``weights_path``: a local file holding a torchvision
    state dict (e.g. ``<data_root>/weights/resnet50-0676ba61.pth``, torchvision's IMAGENET1K_V1
    weights, or the older ``resnet50-19c8e357.pth``; files without BatchNorm's
    ``num_batches_tracked`` load too), loaded strictly into the resnet (``model[1]``) after
    ``init``, which therefore never overwrites them; a missing file raises
    ``FileNotFoundError`` (nothing is downloaded).  ``init="torch"`` keeps torchvision's own
    initialization.

    ``efficientnet_b0``: torchvision's ``efficientnet_b0(weights=None, num_classes=...)`` (P3's
    ImageNette and CUB-GHA network, trained from scratch as the authors'
    ``EfficientNet.from_name``; the authors' efficientnet_pytorch state dicts have other keys
    and do not load), as ``Sequential(Normalize, efficientnet)`` with the same ``in_shape``,
    ``mean``/``std``, ``weights_path`` (e.g. ``<data_root>/weights/
    efficientnet_b0_rwightman-7f5810bc.pth``, torchvision's IMAGENET1K_V1) and ``init``
    handling as the tv_resnets.  Its activations are torchvision's SiLU (Swish, as the authors'),
    each its own non-in-place ``nn.SiLU`` module, and ``nn.Sigmoid`` gates in the
    squeeze-excitation blocks; they are kept as they are: ``activation="relu"`` (the default)
    builds the network unchanged and ``activation="softplus"`` raises ``ValueError`` (SiLU is
    already smooth; :func:`softplus_copy` and :func:`replace_activation` leave it alone).  It
    has dropout (0.2) and stochastic depth (0.2): outputs are deterministic in eval mode only.

    ``init``: ``"kaiming"`` (default: He-normal weights for the ReLU gain, zero biases, for every
    conv and linear layer) or ``"torch"`` (PyTorch's default layer init).  PyTorch's default
    (gain 1/sqrt(3)) shrinks the signal at each layer, and a softplus(beta=3) lenet then sits
    on a loss plateau at chance for several epochs on the embedded datasets; He init trains at
    once.  The random draws come from the global RNG: seed it before building.
    """
    init = kw.pop("init", "kaiming")
    if init not in INITS:
        raise ValueError(f"init={init!r} is not known; accepted: {list(INITS)}")
    if name not in NAMES:
        raise ValueError(f"name={name!r} is not a known model; accepted: {list(NAMES)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not known; accepted: {list(ACTIVATIONS)}")
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta={beta!r} must be a positive number")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes={num_classes!r} must be a positive int")
    in_shape = tuple(int(s) for s in in_shape)
    mean, std = kw.pop("mean", None), kw.pop("std", None)
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together (or neither)")
    fn, accepted = _BUILDERS[name]
    _check_kw(name, kw, accepted + ("mean", "std"))

    def act():
        return make_activation(activation, beta)

    weights = None
    if name in _TV_EFFICIENTNETS and activation != "relu":
        raise ValueError(f"activation={activation!r} is not valid for model {name!r}, whose "
                         f"activations are its own SiLU modules (already smooth); accepted: "
                         f"'relu' (the default: the network unchanged)")
    if name in _TV_RESNETS or name in _TV_EFFICIENTNETS:
        if kw.get("weights_path") is not None:
            weights = _tv_weights_file(name, kw["weights_path"])  # fail before building
        if name in _TV_RESNETS:
            core = _tv_resnet(name, in_shape, num_classes)
            _replace(core, (nn.ReLU,), activation, beta)  # fresh, not in-place, the chosen one
        else:
            core = _tv_efficientnet(name, in_shape, num_classes)
        layers = [core]
        if mean is None:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif name == "resnet18":
        core = ResNet18(_image_shape(name, in_shape)[0], num_classes, act, **kw)
        layers = [core]
    else:
        layers = fn(in_shape, num_classes, act, **kw)
    if mean is not None:
        layers = [Normalize(mean, std)] + layers
    model = nn.Sequential(*layers)
    if init == "kaiming":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    if weights is not None:  # after init, which must not overwrite them
        _load_tv_weights(name, core, weights, num_classes)
    return model


def replace_activation(model: nn.Module, activation: str = "softplus", beta: float = 3.0) -> nn.Module:
    """Replace every ``nn.ReLU`` and ``nn.Softplus`` module of ``model`` in place; returns ``model``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not known; accepted: {list(ACTIVATIONS)}")
    _replace(model, (nn.ReLU, nn.Softplus), activation, beta)
    return model


def _replace(module, types, activation, beta):
    _replace_with(module, types, lambda: make_activation(activation, beta))


def _replace_with(module, types, make):
    """Replace every submodule of ``module`` that is one of ``types`` by ``make()``, in place."""
    for child_name, child in module.named_children():
        if isinstance(child, types):
            setattr(module, child_name, make())
        else:
            _replace_with(child, types, make)


def leading_normalize(model: nn.Module | Callable[..., torch.Tensor]) -> Normalize | None:
    """The model's first leaf module if it is a ``Normalize`` (the input transform P1's
    released code applies outside its models), else None (also for a plain function)."""
    if not isinstance(model, nn.Module):
        return None
    for m in model.modules():
        if not any(True for _ in m.children()):
            return m if isinstance(m, Normalize) else None
    return None


def softplus_copy(model: nn.Module, beta: float = 20.0) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` replaced by ``nn.Softplus(beta)`` (P1's code, beta 20).

    Used by attribution attacks on ReLU models (``attacks``); max-pools are kept and
    existing Softplus modules keep their beta.
    """
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta={beta!r} must be a positive number")
    clone = copy.deepcopy(model)
    _replace(clone, (nn.ReLU,), "softplus", beta)
    return clone


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
