"""Evaluation-only attributions through captum 0.9.0 (``create_graph=True`` raises): deeplift.

(SmoothGrad, Integrated Gradients and GradCAM are hand-written and differentiable in
``attributions.smooth``.)"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from ..common import to_device_of
from ._common import _baseline, _import_captum, _no_create_graph, _target

OUTPUTS = ("logit", "softmax")


def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
             baseline: float | torch.Tensor | str = 0.0, output: str = "logit") -> torch.Tensor:
    """DeepLift rescale rule (Shrikumar et al. 2017), captum (ReLU/Softplus/MaxPool).

    Parameters
    ----------
    model : nn.Module
        Classifier returning (N, num_classes) logits.
    x : torch.Tensor
        (N, ...) inputs in [0, 1].
    target : torch.Tensor or int
        (N,) class indices, or one class for every sample.
    create_graph : bool
        Must be False (evaluation only).
    baseline : float, torch.Tensor or "normalized_zero"
        A number: a constant pixel value (default 0: black); a tensor broadcastable to ``x``;
        ``"normalized_zero"``: the model's leading ``Normalize`` mean, the pixel image whose
        normalized input is 0 (P2's code calls captum's ``DeepLift`` on the normalized input
        with captum's default baseline, zero); 0 without a leading ``Normalize``.
    output : {"logit", "softmax"}
        The explained score: the target logit (default) or the target softmax probability
        (P2's code explains ``nn.Sequential(net, nn.Softmax(1))``, captum's softmax rule).

    Returns
    -------
    torch.Tensor
        The map, same shape as ``x``, in units of the target score (its contributions sum to
        the score's difference between ``x`` and the baseline).
    """
    _import_captum()
    from captum.attr import DeepLift

    _no_create_graph("deeplift", create_graph)
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not known; accepted: {list(OUTPUTS)}")
    x, target = to_device_of(model, x.detach(), target)
    base = _baseline(model, x, baseline).detach().contiguous()
    explained = nn.Sequential(model, nn.Softmax(1)) if output == "softmax" else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DeepLift(explained).attribute(x, baselines=base, target=_target(target, x)).detach()
