"""Evaluation-only attributions through captum 0.9.0 (``create_graph=True`` raises):
integrated_gradients, smoothgrad, deeplift, gradcam."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from ..common import to_device_of
from ._common import _no_create_graph, _target


def _import_captum():
    """Import captum.attr once, silencing tqdm's 'IProgress not found' warning that captum's
    ``tqdm.auto`` import raises in a notebook without ipywidgets (nbval compares stderr)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import captum.attr  # noqa: F401  (pyflakes: used for its side effect)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int,
                         create_graph: bool = False, steps: int = 32, baseline: float = 0.0,
                         internal_batch_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from a constant baseline (zero = black), captum."""
    _import_captum()
    from captum.attr import IntegratedGradients

    _no_create_graph("integrated_gradients", create_graph)
    x, target = to_device_of(model, x.detach(), target)
    return IntegratedGradients(model).attribute(x, baselines=torch.full_like(x, float(baseline)),
                                                target=_target(target, x), n_steps=steps,
                                                internal_batch_size=internal_batch_size).detach()


def smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
               n: int = 16, sigma: float = 0.15) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): mean signed gradient over ``n`` noisy copies, captum NoiseTunnel.

    The noise std is ``sigma * (x.max() - x.min())`` with the range taken over the whole batch
    (P1's reference code). Uses torch's global RNG (seed it for determinism).
    """
    _import_captum()
    from captum.attr import NoiseTunnel, Saliency

    _no_create_graph("smoothgrad", create_graph)
    x, target = to_device_of(model, x.detach(), target)
    std = float(sigma * (x.max() - x.min()))
    return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=std,
                                                  target=_target(target, x), abs=False).detach()


def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
             baseline: float = 0.0) -> torch.Tensor:
    """DeepLift rescale rule (Shrikumar et al. 2017) from a constant baseline, captum (ReLU/Softplus/MaxPool)."""
    _import_captum()
    from captum.attr import DeepLift

    _no_create_graph("deeplift", create_graph)
    x, target = to_device_of(model, x.detach(), target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DeepLift(model).attribute(x, baselines=torch.full_like(x, float(baseline)),
                                         target=_target(target, x)).detach()


def last_conv(model: nn.Module, x: torch.Tensor) -> nn.Conv2d:
    """The last ``nn.Conv2d`` executed in a forward pass of ``model`` on ``x`` (GradCAM's default layer)."""
    seen = []
    handles = [m.register_forward_hook(lambda m, a, o: seen.append(m)) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("gradcam needs a model with an nn.Conv2d layer; accepted models: conv nets")
    return seen[-1]


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
            layer: nn.Module | None = None) -> torch.Tensor:
    """GradCAM (Selvaraju et al. 2017) at ``layer`` (default: the last conv), captum.

    ReLU of the channel-weighted activation map, bilinearly upsampled to the input size,
    min-max scaled to [0, 1] per image and broadcast over the input channels.
    """
    _import_captum()
    from captum.attr import LayerAttribution, LayerGradCam

    _no_create_graph("gradcam", create_graph)
    x, target = to_device_of(model, x.detach(), target)
    layer = last_conv(model, x) if layer is None else layer
    cam = LayerGradCam(model, layer).attribute(x, target=_target(target, x), relu_attributions=True).detach()
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, 1, 1, 1)
    cam = torch.where(span > 0, (cam - lo.view(-1, 1, 1, 1)) / span.clamp_min(1e-12), torch.zeros_like(cam))
    return cam.expand_as(x).contiguous()

