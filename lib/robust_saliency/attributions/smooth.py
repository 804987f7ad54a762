"""Maps that average the gradient -- over noisy copies (smoothgrad), along a path
(integrated_gradients), over space (gradcam) -- hand-written on torch.autograd, so that they
are differentiable w.r.t. ``x`` and the weights with ``create_graph=True`` (attacks and
regularizers differentiate through them; P2 attacks SmoothGrad, IntGrad and GradCAM through
differentiable versions of them).

With their default options they compute what the captum 0.9.0 wrappers they replace computed
(``NoiseTunnel(Saliency)``, ``IntegratedGradients``, ``LayerGradCam`` +
``LayerAttribution.interpolate``; the tests compare them); further options give what the
released code of P2 (RelEx, Lim et al. CVPR 2021) computes: a per-image noise range, the
model's normalized input, the softmax probability as the explained score, P2's path rule,
``align_corners=True`` and the stage output after its activation as GradCAM's layer.

Every function moves ``x`` and ``target`` to the model's device first
(``common.to_device_of``), leaves the model's train/eval mode alone and removes its hooks in
``finally``.  With ``create_graph=False`` the map is detached.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import to_device_of
from ..models import leading_normalize
from ._common import _baseline, _import_captum, _input, _target
from .gradient import _ACTIVATIONS, _check_space

OUTPUTS = ("logit", "softmax")
NOISE_RANGES = ("batch", "image")
IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
              "p2_code")
GRADCAM_LAYERS = ("conv", "block")


# ----------------------------------------------------------------------------- checks, helpers
def _check_choice(name, value, accepted):
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name}={value!r} is not known; accepted: {list(accepted)}")


def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is not valid; accepted: an int >= {low}")


def _score(model, inp, target, output):
    """Sum over the batch of the target scores: logits, or softmax probabilities."""
    out = model(inp)
    if output == "softmax":
        out = F.softmax(out, 1)
    return out.gather(1, target.view(-1, 1)).sum()


def _space_maps(model, space):
    """(to_z, from_z): [0, 1] pixels to the input ``space`` (the model's normalized input
    z = (x - mean)/std after its leading ``Normalize`` for ``"normalized"``) and back."""
    _check_space(space)
    norm = leading_normalize(model) if space == "normalized" else None
    if norm is None:
        return (lambda x: x), (lambda z: z)
    return norm, (lambda z: z * norm._view(norm.std, z) + norm._view(norm.mean, z))


# ----------------------------------------------------------------------------- SmoothGrad
def _noise(r, n, sigma, noise_range):
    """captum NoiseTunnel's draw (``_add_noise_to_input``, nt_samples_batch_size None) for ``n``
    copies of each image of ``r``: ``torch.normal(0, std)`` with ``std`` a tensor of torch's
    default dtype of shape (N * n, ...), copies of an image consecutive.  std = sigma *
    (max - min) of ``r`` over the batch (``"batch"``) or per image (``"image"``)."""
    size = (r.shape[0] * n,) + tuple(r.shape[1:])
    if noise_range == "batch":
        std = torch.tensor(float(sigma * (r.max() - r.min())), device=r.device).repeat(size)
    else:
        flat = r.flatten(1)
        stds = (sigma * (flat.amax(1) - flat.amin(1))).tolist()
        std = torch.tensor(stds, device=r.device).repeat_interleave(n)
        std = std.view(-1, *([1] * (r.dim() - 1))).expand(size).contiguous()
    return torch.normal(0, std)


def _smoothgrad(model, x, target, create_graph, n, sigma, noise_range, output, space, noise=None):
    """``smoothgrad`` after its checks; ``noise`` (N * n, ...) in ``space``'s units, copies of
    an image consecutive, replaces the draw (tests inject P2's noise through it)."""
    to_z, from_z = _space_maps(model, space)
    x, target = to_device_of(model, x, target)
    target = _target(target, x)
    with torch.enable_grad():
        x = _input(x) if create_graph else x.detach()
        z = to_z(x)
        if noise is None:
            noise = _noise(z.detach(), n, sigma, noise_range)
        noisy = z.repeat_interleave(n, 0) + noise.to(z.device)
        if not create_graph:
            noisy = noisy.detach().requires_grad_(True)
        score = _score(model, from_z(noisy), target.repeat_interleave(n), output)
        (g,) = torch.autograd.grad(score, noisy, create_graph=create_graph)
        g = g.view(x.shape[0], n, *x.shape[1:]).sum(1) / n  # captum: sum over the copies * 1 / n
    return g if create_graph else g.detach()


def smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
               n: int = 16, sigma: float = 0.15, noise_range: str = "batch", output: str = "logit",
               space: str = "pixel") -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean signed gradient of the target score over ``n``
    noisy copies x + N(0, s^2) of each input.

    The noise is drawn from torch's global RNG exactly as captum's ``NoiseTunnel`` draws it
    (seed it for determinism): with the defaults and the same seed the map equals
    ``NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=n,
    stdevs=s, abs=False)``, the captum wrapper this function replaces.  As there, the noise
    has torch's default dtype (float32 for a float64 ``x`` too) and all N * n copies are drawn
    at once; for a single image the draw also equals P2's ``torch.empty(n, C, H,
    W).normal_(0, x_std)`` under the same seed (a batch's numbers differ from explaining its
    images one at a time).  With ``create_graph=True`` the map is differentiable w.r.t. ``x``
    and the weights, the noise (and s, although it is computed from x) held constant.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.
    create_graph : bool
        Keep the graph of the map (differentiable w.r.t. ``x`` and the weights).
    n : int
        Noisy copies per input (P2's options.py: 50).
    sigma : float
        Noise level: s = ``sigma * (max - min)`` of the input in ``space`` (P2: 0.1).
    noise_range : {"batch", "image"}
        Where max - min is taken: over the whole batch (``"batch"``, the default and P1's
        reference code) or per image (``"image"``, P2's code, which explains one image at a
        time: ``x_std = (x.max() - x.min()) * std_level``).
    output : {"logit", "softmax"}
        The explained score: the target logit (default) or the target softmax probability
        (P2's code differentiates ``softmax(net(x))[:, c]``).
    space : {"pixel", "normalized"}
        ``"pixel"`` (default): noise on x in [0, 1] and the gradient w.r.t. x.
        ``"normalized"``: noise added to, range taken on, and the gradient taken w.r.t. the
        model's normalized input z = (x - mean)/std after its leading ``models.Normalize``
        (P2's code works on the normalized input); without one it equals ``"pixel"``.

    Returns
    -------
    torch.Tensor
        The map, same shape as ``x``: target score per unit of ``space``'s input.
    """
    _check_int("n", n)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma={sigma!r} is not valid; accepted: a number >= 0")
    _check_choice("noise_range", noise_range, NOISE_RANGES)
    _check_choice("output", output, OUTPUTS)
    _check_space(space)
    return _smoothgrad(model, x, target, create_graph, n, sigma, noise_range, output, space)


# ----------------------------------------------------------------------------- Integrated Gradients
def _path_rule(method, steps):
    """(alphas, weights) of the path points: captum's ``approximation_parameters`` for its
    rules; P2's ``linspace(0, 1, steps)`` (float32, as its code) with weights alpha_i / steps."""
    if method == "p2_code":
        alphas = torch.linspace(0, 1, steps, dtype=torch.float32).tolist()
        return alphas, [a / steps for a in alphas]
    _import_captum()
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    return alphas(steps), step_sizes(steps)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int,
                         create_graph: bool = False, steps: int = 32,
                         baseline: float | torch.Tensor | str = 0.0, method: str = "gausslegendre",
                         output: str = "logit", internal_batch_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from ``baseline`` b to ``x``:
    (x - b) * sum_i w_i grad f(b + alpha_i (x - b)), f the target score.

    For captum's rules (``method`` other than ``"p2_code"``) the map equals captum's
    ``IntegratedGradients(model).attribute(x, baselines=b, target=target, n_steps=steps,
    method=method)`` (the nodes alpha_i and weights w_i are captum's
    ``approximation_parameters``; the gradients are computed here).  With
    ``create_graph=True`` the map is differentiable w.r.t. ``x`` and the weights: the true
    derivative, the factor (x - b) included.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.
    create_graph : bool
        Keep the graph of the map (differentiable w.r.t. ``x`` and the weights).
    steps : int
        Path points (P2's options.py: 100).  At least 2 for the Riemann rules.
    baseline : float, torch.Tensor or "normalized_zero"
        A number: a constant pixel value (default 0: black); a tensor broadcastable to ``x``;
        ``"normalized_zero"``: the model's leading ``Normalize`` mean, the pixel image whose
        normalized input is 0 (P2's code integrates from the normalized input's zero); 0
        without a leading ``Normalize``.
    method : str
        ``"gausslegendre"`` (default), ``"riemann_left"``, ``"riemann_right"``,
        ``"riemann_middle"``, ``"riemann_trapezoid"`` (captum's rules), or ``"p2_code"``: a
        transcription of P2's released ``IntegratedGradient``, which differentiates
        ``softmax(net(alpha * z))[:, c].mean()`` over alpha in ``linspace(0, 1, steps)``
        w.r.t. the normalized input z and multiplies by z.  The gradient flows through
        alpha * z, so path point i is weighted by alpha_i / steps, not 1 / steps: the map is
        (x - b) * sum_i (alpha_i / steps) grad f(b + alpha_i (x - b)).  This is not
        Sundararajan's IG (completeness does not hold); it is what the released code
        computes.  With ``baseline="normalized_zero"`` (and ``output="softmax"``) it equals
        the code's map, z * grad_z = (x - mean) * grad_x, so no ``space`` option is needed.
        The code detaches its trailing factor z (a constant for second derivatives); here
        (x - b) stays differentiable with ``create_graph=True`` (the true derivative).
    output : {"logit", "softmax"}
        The explained score: the target logit (default) or the target softmax probability
        (P2's code).
    internal_batch_size : int or None
        Path points per forward pass, as captum batches them (``max(1, internal_batch_size
        // N)`` steps at a time; memory only).  None: all at once.  With ``create_graph=True``
        every chunk's graph is kept until the map is differentiated.

    Returns
    -------
    torch.Tensor
        The map, same shape as ``x``, in units of the target score.
    """
    _check_choice("method", method, IG_METHODS)
    _check_int("steps", steps, 2 if method.startswith("riemann") else 1)
    _check_choice("output", output, OUTPUTS)
    if internal_batch_size is not None:
        _check_int("internal_batch_size", internal_batch_size)
    x, target = to_device_of(model, x, target)
    target = _target(target, x)
    b = _baseline(model, x, baseline)
    alphas, weights = _path_rule(method, steps)
    n = x.shape[0]
    per = len(alphas) if internal_batch_size is None else max(1, internal_batch_size // n)
    total = None
    with torch.enable_grad():
        if create_graph:
            x = _input(x)
        else:
            x, b = x.detach(), b.detach()
        for s0 in range(0, len(alphas), per):
            a, w = alphas[s0:s0 + per], weights[s0:s0 + per]
            pts = torch.cat([b + alpha * (x - b) for alpha in a], dim=0)  # captum's expression
            if not create_graph:
                pts = pts.requires_grad_(True)
            (g,) = torch.autograd.grad(_score(model, pts, target.repeat(len(a)), output), pts,
                                       create_graph=create_graph)
            wt = torch.tensor(w, dtype=g.dtype, device=g.device).view(-1, 1)
            part = (g.contiguous().view(len(a), -1) * wt).reshape(len(a), *x.shape).sum(0)
            total = part if total is None else total + part
        ig = total * (x - b)
    return ig if create_graph else ig.detach()


# ----------------------------------------------------------------------------- GradCAM
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


def _check_layer(layer):
    if layer is None or isinstance(layer, nn.Module):
        return
    if not isinstance(layer, str) or layer not in GRADCAM_LAYERS:
        raise ValueError(f"layer={layer!r} is not known; accepted: None, {list(GRADCAM_LAYERS)[0]!r}, "
                         f"{list(GRADCAM_LAYERS)[1]!r} or an nn.Module of the model")


def _forward_with_layer(model, x, layer):
    """(model(x), the activation GradCAM weighs), in one forward pass: the output of the last
    ``nn.Conv2d`` executed (``"conv"``), of the first ReLU/Softplus module executed after it
    (``"block"``), or of the given module (its last call)."""
    seen = {"conv": None, "block": None, "module": None}

    def first(o):
        return o[0] if isinstance(o, tuple) else o

    def on_conv(m, a, o):
        seen["conv"], seen["block"] = first(o), None

    def on_act(m, a, o):
        if seen["conv"] is not None and seen["block"] is None:
            seen["block"] = first(o)

    def on_module(m, a, o):
        seen["module"] = first(o)

    handles = []
    try:
        if isinstance(layer, nn.Module):
            handles.append(layer.register_forward_hook(on_module))
        else:
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    handles.append(m.register_forward_hook(on_conv))
                elif layer == "block" and isinstance(m, _ACTIVATIONS):
                    handles.append(m.register_forward_hook(on_act))
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    if isinstance(layer, nn.Module):
        act = seen["module"]
        if act is None:
            raise ValueError(f"layer={type(layer).__name__} did not run in the model's forward pass; "
                             f"accepted: None, 'conv', 'block' or a module the model runs")
    elif seen["conv"] is None:
        raise ValueError("gradcam needs a model with an nn.Conv2d layer; accepted models: conv nets")
    else:
        act = seen[layer]
        if act is None:
            raise ValueError("layer='block' needs an nn.ReLU or nn.Softplus module that runs after the "
                             "model's last nn.Conv2d; accepted for this model: None, 'conv' or an nn.Module")
    if not torch.is_tensor(act) or act.dim() != 4:
        shape = tuple(act.shape) if torch.is_tensor(act) else type(act).__name__
        raise ValueError(f"gradcam's layer output has shape {shape}; accepted: a layer whose output is "
                         f"an (N, C, H, W) map")
    return out, act


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
            layer: str | nn.Module | None = None, align_corners: bool = False,
            output: str = "logit") -> torch.Tensor:
    """GradCAM (Selvaraju et al. 2017) at a layer with activation A (N, K, h, w).

    Weights w_k = the spatial mean of d(target score)/dA_k; cam = relu(sum_k w_k A_k),
    bilinearly upsampled to x's size, min-max scaled to [0, 1] per image (a flat map gives
    zeros) and broadcast over the input channels.  With the defaults it equals the captum
    wrapper this function replaces (``LayerGradCam`` at the last conv,
    ``LayerAttribution.interpolate(..., "bilinear")``, min-max).  With ``create_graph=True``
    the map is differentiable w.r.t. ``x`` and the weights with the full derivative: the
    weights w_k depend on x too (P2's code holds them constant: it differentiates the score
    with ``create_graph=False``).

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits, with an ``nn.Conv2d``.
    x : torch.Tensor
        (N, C, H, W) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.
    create_graph : bool
        Keep the graph of the map (differentiable w.r.t. ``x`` and the weights).
    layer : None, "conv", "block" or nn.Module
        None or ``"conv"``: the output of the last ``nn.Conv2d`` executed (``last_conv``;
        the default).  ``"block"``: the output of the first ``nn.ReLU`` / ``nn.Softplus``
        module executed after that conv -- a stage's output after its activation, the
        analogue of P2's ``layer4`` of ResNet-50.  An ``nn.Module``: its output (its last
        call if it runs several times).  The layer's output must be an (N, K, h, w) map.
    align_corners : bool
        ``F.interpolate``'s option for the bilinear upsampling: False (default, captum's
        ``LayerAttribution.interpolate``) or True (P2's code).
    output : {"logit", "softmax"}
        The explained score: the target logit (default, also P2's code) or the target softmax
        probability.

    Returns
    -------
    torch.Tensor
        The map in [0, 1], same shape as ``x`` (equal over channels).
    """
    _check_layer(layer)
    if not isinstance(align_corners, bool):
        raise ValueError(f"align_corners={align_corners!r} is not valid; accepted: True or False")
    _check_choice("output", output, OUTPUTS)
    x, target = to_device_of(model, x, target)
    target = _target(target, x)
    with torch.enable_grad():
        x = _input(x) if create_graph else x.detach().requires_grad_(True)
        out, act = _forward_with_layer(model, x, "conv" if layer is None else layer)
        score = (F.softmax(out, 1) if output == "softmax" else out).gather(1, target.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(score, act, create_graph=create_graph, allow_unused=True)
        if g is None:
            raise ValueError("gradcam's layer does not lead to the model's output; accepted: a layer "
                             "on the path from x to the logits")
        if not create_graph:
            g, act = g.detach(), act.detach()
        cam = torch.relu(torch.sum(g.mean(dim=(2, 3), keepdim=True) * act, dim=1, keepdim=True))
        cam = F.interpolate(cam, tuple(x.shape[2:]), mode="bilinear", align_corners=align_corners)
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        span = (hi - lo).view(-1, 1, 1, 1)
        cam = torch.where(span > 0, (cam - lo.view(-1, 1, 1, 1)) / span.clamp_min(1e-12), torch.zeros_like(cam))
        cam = cam.expand_as(x).contiguous()
    return cam if create_graph else cam.detach()
