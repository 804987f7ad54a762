"""Models (SPEC section 4): ``build(name, num_classes, in_shape, activation='relu', beta=3.0, **kw)``.

Every model takes inputs in the pixel range [0, 1]; per-channel normalization, when wanted,
is the model's first module (:class:`Normalize`, from the ``mean``/``std`` keywords).
Activations are separate ``nn.ReLU`` / ``nn.Softplus(beta)`` module instances, one per use
(no functional activations and no module reused inside ``forward``), so that hooks
(guided backprop, LRP, captum's DeepLift) find every nonlinearity. Max-pooling is an
``nn.MaxPool2d`` module and is never replaced by :func:`replace_activation`.
"""
import copy
import math

import torch
import torch.nn as nn

NAMES = ("mlp", "lenet", "resnet18", "vgg11", "small_cnn", "two_layer")
ACTIVATIONS = ("relu", "softplus")
INITS = ("kaiming", "torch")


class Normalize(nn.Module):
    """Per-channel normalization ``(x - mean) / std`` as the model's first layer (SPEC section 4)."""

    def __init__(self, mean, std):
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

    def forward(self, x):
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def extra_repr(self):
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class LogitMargin(nn.Module):
    """A two-class model's margin g_1(x) - g_0(x) as a single logit (the BCE logit of P1 Fig. 1).

    Output shape (N, 1), so ``attributions.grad(LogitMargin(m), x, 0)`` is the gradient of the
    margin; softmax cross-entropy over two classes is BCE on this logit.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if out.shape[-1] != 2:
            raise ValueError(f"LogitMargin needs a two-class model; got {out.shape[-1]} outputs")
        return out[:, 1:] - out[:, :1]


def make_activation(activation="relu", beta=3.0):
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

    def __init__(self, cin, cout, stride, act):
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

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet18 (3x3 stem, no max-pool; He et al. 2016) with a ``width`` parameter (64 = standard)."""

    def __init__(self, in_channels, num_classes, act, width=64):
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

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.layers(out))))


_BUILDERS = {"mlp": (_mlp, ("hidden",)), "two_layer": (_two_layer, ("hidden",)),
             "lenet": (_lenet, ("width", "hidden")), "small_cnn": (_small_cnn, ("width",)),
             "vgg11": (_vgg11, ("width", "batch_norm")), "resnet18": (None, ("width",))}


def build(name, num_classes, in_shape, activation="relu", beta=3.0, **kw):
    """Build model ``name`` (SPEC section 4) for inputs of shape ``in_shape`` in [0, 1].

    ``activation``: ``relu`` or ``softplus`` (with ``beta``; P1 uses 3). Optional ``mean`` and
    ``std`` (per channel) put a :class:`Normalize` first. Per-model keywords: mlp ``hidden``
    (256), two_layer ``hidden`` (64), lenet ``width`` (32) and ``hidden`` (256), small_cnn
    ``width`` (8), vgg11 ``width`` (64) and ``batch_norm`` (True), resnet18 ``width`` (64).

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

    if name == "resnet18":
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
    return model


def replace_activation(model, activation="softplus", beta=3.0):
    """Replace every ``nn.ReLU`` and ``nn.Softplus`` module of ``model`` in place; returns ``model``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not known; accepted: {list(ACTIVATIONS)}")
    _replace(model, (nn.ReLU, nn.Softplus), activation, beta)
    return model


def _replace(module, types, activation, beta):
    for child_name, child in module.named_children():
        if isinstance(child, types):
            setattr(module, child_name, make_activation(activation, beta))
        else:
            _replace(child, types, activation, beta)


def leading_normalize(model):
    """The model's first leaf module if it is a ``Normalize`` (the input transform P1's
    released code applies outside its models), else None (also for a plain function)."""
    if not isinstance(model, nn.Module):
        return None
    for m in model.modules():
        if not any(True for _ in m.children()):
            return m if isinstance(m, Normalize) else None
    return None


def softplus_copy(model, beta=20.0):
    """A deep copy of ``model`` with every ``nn.ReLU`` replaced by ``nn.Softplus(beta)`` (P1's code, beta 20).

    Used by attribution attacks on ReLU models (SPEC section 7); max-pools are kept and
    existing Softplus modules keep their beta.
    """
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta={beta!r} must be a positive number")
    clone = copy.deepcopy(model)
    _replace(clone, (nn.ReLU,), "softplus", beta)
    return clone


def count_params(model, trainable_only=True):
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
