"""RelEx (Lim et al., CVPR 2021; P2): a saliency mask optimised over a noisy neighbourhood.

For an image x, a class c and B noisy copies x_b = x + N(0, s^2), s = ``noise_level`` *
(max x - min x) (per image), the mask m (the shape of x, initialised U[0, 0.01]) minimises

    L(m) = (1/B) sum_b [ -log p_c(m * x_b) + lambda1 ||m||_1 - lambda2 log(1 - p_c((1 - m) * x_b) + 1e-7) ]

(transcribed from P2's released ``models/saliency/optim_methods/relex.py``):
each step divides the gradient by its L2 norm (per image), takes an SGD step with momentum and
clamps m to [0, 1].  Presets (``PRESETS``): ``reference_code`` (the default; the released
code: B 50, lr 0.1, momentum 0.99, 50 iterations) and ``supplement`` (the supplement's text:
B 100, SGD lr 0.001, 50 epochs, no momentum stated).

``space``: the released code multiplies the mask and adds the noise in the model's
*normalized* input (ImageNet mean/std), so "m = 0" means the dataset's mean colour there
and s is a tenth of the normalized image's range.  ``space="normalized"`` (default) does the
same through the model's leading ``models.Normalize``, if it has one (else it equals
``"pixel"``); ``space="pixel"`` is the text's m * x on [0, 1] pixels (m = 0 is black).

Batched: all images of ``x`` are optimised at once (their noisy copies in one forward pass,
in chunks of ``chunk`` copies).  Every image draws its initial mask and its noise from its
own generator, seeded from ``seed``, the image's bytes and its class, so an image's mask does
not depend on the batch it comes in (tests check batch == one image at a time).
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..common import to_device_of
from ._common import _target

if TYPE_CHECKING:
    from torch import nn

PRESETS = {
    "reference_code": {"n_noise": 50, "lr": 0.1, "momentum": 0.99, "iters": 50},
    "supplement": {"n_noise": 100, "lr": 0.001, "momentum": 0.0, "iters": 50},
}
SPACES = ("normalized", "pixel")
LOG_EPS = 1e-7  # the released code's guard inside log(1 - p + eps)


def _normalizer(model, space):
    """(to_z, from_z): the maps between [0, 1] pixels and the space the mask works in."""
    if space not in SPACES:
        raise ValueError(f"space={space!r} is not known; accepted: {list(SPACES)}")
    from ..models import leading_normalize  # models is below attributions in the stack

    norm = leading_normalize(model) if space == "normalized" else None
    if norm is None:
        return (lambda x: x), (lambda z: z)
    return norm, (lambda z: z * norm._view(norm.std, z) + norm._view(norm.mean, z))


def _fast(x):
    """Image batches in channels-last layout: the same numbers (up to float rounding), measured
    2x faster for small conv nets on CPU (torch 2.14)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def relex_loss(model: nn.Module, z_noisy: torch.Tensor, m: torch.Tensor, target: torch.Tensor,
               lambda1: float = 1e-4, lambda2: float = 1.0, space: str = "normalized") -> torch.Tensor:
    """Per-copy RelEx loss, (N, B): ``z_noisy`` (N, B, *shape) are noisy copies in the mask's
    space, ``m`` (N, *shape) the masks, ``target`` (N,) the classes."""
    _, from_z = _normalizer(model, space)
    n, b = z_noisy.shape[:2]
    mb = m.unsqueeze(1)
    t = target.repeat_interleave(b)
    fg = model(_fast(from_z((mb * z_noisy).flatten(0, 1))))
    bg = model(_fast(from_z(((1 - mb) * z_noisy).flatten(0, 1))))
    log_p_fg = F.log_softmax(fg, 1).gather(1, t.view(-1, 1)).view(n, b)
    p_bg = F.softmax(bg, 1).gather(1, t.view(-1, 1)).view(n, b)
    l1 = m.abs().flatten(1).sum(1, keepdim=True)
    return -log_p_fg + lambda1 * l1 - lambda2 * torch.log(1 - p_bg + LOG_EPS)


def image_seed(seed: int, x: torch.Tensor, target: int | torch.Tensor) -> int:
    """The seed of one image's draws: a hash of ``seed``, the image's float32 bytes and its class."""
    h = hashlib.sha256()
    h.update(str(int(seed)).encode())
    h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(str(int(target)).encode())
    return int.from_bytes(h.digest()[:8], "little") & (2 ** 63 - 1)


def _generators(x, target, seed):
    """One generator per image, seeded by ``image_seed`` (so draws do not depend on the batch)."""
    gens = []
    for i in range(x.shape[0]):
        g = torch.Generator(device=x.device)
        g.manual_seed(image_seed(seed, x[i], target[i]))
        gens.append(g)
    return gens


def _draw_masks(gens, x):
    return torch.stack([torch.rand(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) / 100
                        for g in gens])


def initial_masks(x: torch.Tensor, target: torch.Tensor | int, seed: int = 0) -> torch.Tensor:
    """The U[0, 0.01] masks ``relex`` starts from for images ``x``, classes ``target`` (N,) and
    ``seed``: its first draws."""
    target = _target(target, x)
    return _draw_masks(_generators(x.detach(), target, seed), x.detach())


def check_settings(preset: str = "reference_code", space: str = "normalized") -> None:
    """Raise ValueError for an unknown ``preset`` or ``space`` (before any work)."""
    _settings(preset, {})
    if space not in SPACES:
        raise ValueError(f"space={space!r} is not known; accepted: {list(SPACES)}")


def _settings(preset, overrides):
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not known; accepted: {list(PRESETS)}")
    s = dict(PRESETS[preset])
    s.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("n_noise", "iters"):
        if isinstance(s[k], bool) or int(s[k]) != s[k] or s[k] < 1:
            raise ValueError(f"{k}={s[k]!r} is not valid; accepted: a positive int")
    if not s["lr"] > 0:
        raise ValueError(f"lr={s['lr']!r} is not valid; accepted: a number > 0")
    if not 0 <= s["momentum"] < 1:
        raise ValueError(f"momentum={s['momentum']!r} is not valid; accepted: a number in [0, 1)")
    return s


def relex(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None,
          create_graph: bool = False, preset: str = "reference_code", n_noise: int | None = None,
          lr: float | None = None, momentum: float | None = None, iters: int | None = None,
          lambda1: float = 1e-4, lambda2: float = 1.0, noise_level: float = 0.1,
          space: str = "normalized", seed: int = 0, chunk: int = 4096,
          progress: bool = False) -> torch.Tensor:
    """RelEx masks (N, *x.shape[1:]) in [0, 1] for classes ``target`` (None: the prediction; an
    int or (N,) tensor: any class, not only the predicted one).  See the module docstring.

    ``n_noise`` (B), ``lr``, ``momentum``, ``iters`` override the ``preset``; ``chunk`` bounds
    the noisy copies per forward pass (memory only: results do not depend on it).
    ``progress`` shows a bar over iterations.  Not differentiable (``create_graph=True``
    raises); the model's parameters' ``.grad`` are untouched.
    """
    if create_graph:
        raise ValueError("create_graph=True is not supported by 'relex' (an optimised mask); accepted: False")
    s = _settings(preset, {"n_noise": n_noise, "lr": lr, "momentum": momentum, "iters": iters})
    for name, v in (("lambda1", lambda1), ("lambda2", lambda2), ("noise_level", noise_level)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name}={v!r} is not valid; accepted: a number >= 0")
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk={chunk!r} is not valid; accepted: a positive int")
    to_z, _ = _normalizer(model, space)
    x, target = to_device_of(model, x.detach(), target)
    n, b = x.shape[0], int(s["n_noise"])
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(1)
    target = _target(target, x)
    z = to_z(x)
    gens = _generators(x, target, seed)
    m = _draw_masks(gens, x)
    std = noise_level * (z.flatten(1).amax(1) - z.flatten(1).amin(1))
    buf = torch.zeros_like(m)
    per = max(1, int(chunk) // b)  # images per forward pass
    steps = range(int(s["iters"]))
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="RelEx", leave=False)
    for _ in steps:
        noise = torch.stack([torch.randn((b,) + tuple(x.shape[1:]), generator=g, dtype=x.dtype,
                                         device=x.device) for g in gens])
        noise = noise * std.view(-1, *([1] * (noise.dim() - 1)))
        grad = torch.empty_like(m)
        for i0 in range(0, n, per):
            sl = slice(i0, i0 + per)
            with torch.enable_grad():
                mi = m[sl].clone().requires_grad_(True)
                loss = relex_loss(model, z[sl].unsqueeze(1) + noise[sl], mi, target[sl],
                                  lambda1, lambda2, space)
                (grad[sl],) = torch.autograd.grad(loss.mean(1).sum(), mi)
        grad = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (m.dim() - 1)))
        buf = s["momentum"] * buf + grad
        m = (m - s["lr"] * buf).clamp(0.0, 1.0)
    return m.detach()
