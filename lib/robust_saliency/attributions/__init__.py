"""Attribution maps: ``get(name, **hp)`` -> an ``Explainer``, called as
``explainer(model, x, target, create_graph=False) -> map`` (or ``.attribute(...)``, captum's
name).  The map has the shape of ``x`` and lies on the model's device: every explainer moves
``x`` and ``target`` there first (``common.to_device_of``).

Modules: ``gradient`` (grad, input_x_grad, guided_backprop), ``lrp`` (LRP, hand-written),
``smooth`` (smoothgrad, integrated_gradients, gradcam: hand-written, equal to the captum
classes with their defaults, plus the options of P2's released code), ``captum_methods``
(deeplift), ``relex`` (P2's mask optimised over a noisy neighbourhood, batched),
``postprocess`` (``postprocess``: per-pixel maps; ``sparsify``: P3's soft-thresholding
sparsification, C.2.4 / Table 5), ``moreau`` (sparse_moreaugrad: Sparse MoreauGrad, Zhang &
Farnia 2023, cited in P3's Table 5; a proximal-gradient map).
``grad``, ``input_x_grad``, ``guided_backprop``, ``lrp``, ``integrated_gradients``,
``smoothgrad`` and ``gradcam`` are written on torch.autograd and are differentiable w.r.t.
``x`` and the weights when ``create_graph=True`` (attacks and regularizers differentiate
through them); ``deeplift`` (captum), ``relex`` and ``sparse_moreaugrad`` (optimised) are
evaluation-only and raise ``ValueError`` for ``create_graph=True``.  Each explainer carries its metadata:
``differentiable``, ``needs_fit`` (an explainer fitted per input, as P2's RelEx, runs its
optimisation inside the call; the call shape is the same), ``units`` (what the map's values
are), ``source``.

No function changes the user's model permanently: hooks are removed in ``finally`` and
the train/eval mode is restored (``lrp`` runs the model in eval mode, see its docstring).
``target`` is a LongTensor of shape (N,) or an int (the same class for every sample).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Configured, Registry
from .captum_methods import deeplift
from .gradient import grad, guided_backprop, input_x_grad
from .lrp import lrp
from .fitted import relex
from .moreau import sparse_moreaugrad
from .postprocess import postprocess, sparsify
from .smooth import gradcam, integrated_gradients, last_conv, smoothgrad

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import torch

__all__ = ["Explainer", "REGISTRY", "NAMES", "DIFFERENTIABLE", "get", "grad", "input_x_grad",
           "guided_backprop", "lrp", "integrated_gradients", "smoothgrad", "deeplift", "gradcam",
           "last_conv", "postprocess", "sparsify", "relex", "sparse_moreaugrad"]


class Explainer(Configured):
    """An attribution method with its hyperparameters bound: ``(model, x, target,
    create_graph=False) -> map``."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], n_args: int = 3,
                 hparams: Mapping[str, Any] | None = None, fixed: Sequence[str] = ("create_graph",),
                 **meta: Any) -> None:
        super().__init__(name, fn, n_args, hparams, fixed, **meta)

    def attribute(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | int,
                  create_graph: bool = False) -> torch.Tensor:
        return self(model, x, target, create_graph=create_graph)


def _explainer(fn, differentiable, units, source, needs_fit=False):
    return Explainer(fn.__name__, fn, differentiable=differentiable, needs_fit=needs_fit,
                     units=units, source=source)


_SIGNED = "signed, input shape, units of the logit per input unit"
_SCORE = "the target score: logit, or probability with output='softmax'"
REGISTRY = Registry("attribution", {e.name: e for e in (
    _explainer(grad, True, _SIGNED, "autograd"),
    _explainer(input_x_grad, True, "signed, input shape, logit units", "autograd"),
    _explainer(guided_backprop, True, _SIGNED, "autograd"),
    _explainer(lrp, True, "signed relevance, input shape, sums to about the target logit", "hand"),
    _explainer(integrated_gradients, True, f"signed, input shape, units of {_SCORE}", "autograd"),
    _explainer(smoothgrad, True, f"signed, input shape, units of {_SCORE} per unit of the input "
                                 "(pixel, or normalized with space='normalized')", "autograd"),
    _explainer(deeplift, False, f"signed, input shape, units of {_SCORE}", "captum"),
    _explainer(gradcam, True, "in [0, 1] per image, broadcast over channels", "autograd"),
    _explainer(relex, False, "a mask in [0, 1], input shape (P2: used as it is)", "optimised",
               needs_fit=True),
    _explainer(sparse_moreaugrad, False, "signed, sparse, input shape, units of the logit per unit of "
                                         "the input (pixel, or normalized with space='normalized')",
               "optimised", needs_fit=True),
)})
NAMES = REGISTRY.names
DIFFERENTIABLE = REGISTRY.where(differentiable=True)


def get(name: str, **hparams: Any) -> Explainer:
    """The ``Explainer`` called ``name`` (one of ``NAMES``) with ``hparams`` bound."""
    return REGISTRY.get(name, **hparams)
