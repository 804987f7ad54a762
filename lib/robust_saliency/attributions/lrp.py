"""Layer-wise relevance propagation (P1 "LRP"), hand-written on torch.autograd so the map is
differentiable w.r.t. x *and the weights* with ``create_graph=True`` (see ``lrp``'s docstring).

Why not zennit (0.5.1, the tests' oracle, which it matches to 1e-15): tried in its place, zennit
reproduces these maps and even their x-derivative, but only with seven adjustments (a Pass rule
and transformed bounds for ``Normalize``, an exact z-rule on sums, a BatchNorm fold that does
not edit ``.data`` in place, per-architecture canonizers for residual adds, a seed that requires
grad, eval mode, the second backward only after its context exits), and it cannot give the
weight derivative: its rules use detached copies of the weights (``ParamMod``), off by 2-5%
against finite differences (``tests/test_attributions.py`` checks this).  It also gives wrong
maps silently where this module raises (BatchNorm after an activation, unsupported
activations, train mode).  zennit is about 1.5x faster (one forward pass instead of two).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import to_device_of
from ..models import Normalize
from ._common import _stabilize, _swap, _target

_ACTIVATIONS = (nn.ReLU, nn.Softplus)
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ----------------------------------------------------------------------------- LRP
def _affine(module, inp, weight, bias=None):
    if isinstance(module, nn.Linear):
        return F.linear(inp, weight, bias)
    return module._conv_forward(inp, weight, bias)


def _bn_pairs(model):
    """Map each BatchNorm module to the conv/linear module registered just before it (to be folded)."""
    pairs, prev = {}, None
    for m in model.modules():
        if len(list(m.children())) > 0:
            continue
        if isinstance(m, _BATCHNORM):
            ok = (isinstance(prev, _LINEAR)
                  and (prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels) == m.num_features)
            if not ok or m.running_var is None:
                raise ValueError("lrp: every BatchNorm must directly follow a conv/linear layer (it is folded into "
                                 f"it) and track running statistics; got {m} after {prev}")
            pairs[m] = prev
        prev = m
    return pairs


def _folded(layer, bn):
    """Weight and bias of ``layer`` with the eval-mode ``bn`` folded in (bn may be None)."""
    w = layer.weight
    b = layer.bias if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bn is None:
        return w, b
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0.0)
    return w * scale.view(-1, *([1] * (w.dim() - 1))), b * scale + shift


class _LRPContext:
    """Two forward passes of one model: a value pass on x1 and a gradient pass on x2.

    The value pass records every layer's input and output. In the gradient pass, forward
    hooks keep every output's value but change its local Jacobian so that backprop of the
    one-hot from the logits computes c with R = a * c at every tensor (relevance at
    ``x2`` directly, because the first layer applies z^B in R-form). The rule's ratios
    (z / z+, a / z) come from the value pass and keep their graph, so that
    ``create_graph=True`` differentiates the full map, denominators included.
    """

    def __init__(self, model, low, high, stabilizer, zplus_bias):
        self.model, self.low, self.high = model, low, high
        self.eps, self.zplus_bias = stabilizer, zplus_bias
        self.pairs = _bn_pairs(model)
        self.folded_into = {layer: bn for bn, layer in self.pairs.items()}
        for m in model.modules():
            if (type(m).__module__ == "torch.nn.modules.activation" and not isinstance(m, _ACTIVATIONS)):
                raise ValueError(f"lrp: activation {type(m).__name__} is not supported; accepted: ReLU, Softplus")
        self.records, self.raw, self.order, self.calls = {}, {}, [], {}
        self.mode = "value"

    # -- hooks
    def hook(self, module, args, out):
        inp = args[0]
        if self.mode == "value":
            if module in self.pairs:
                layer = self.pairs[module]
                if layer not in self.raw or self.raw[layer][-1][1] is not inp:
                    raise ValueError(f"lrp: {module} does not receive the output of {layer}; cannot fold it")
            # clones: a later in-place op (ReLU(inplace=True), ``out += identity``) must not change them
            self.records.setdefault(module, []).append((inp.clone(), out.clone()))
            self.raw.setdefault(module, []).append((inp, out))
            self.order.append(module)
            return None
        k = self.calls.get(module, 0)
        self.calls[module] = k + 1
        in1, out1 = self.records[module][k]
        if isinstance(module, _BATCHNORM):
            return inp  # folded: the layer before already output the normalized value
        if isinstance(module, Normalize):
            return _swap(inp, out)  # identity for relevance (handled by the z^B bounds)
        if isinstance(module, _ACTIVATIONS):
            if isinstance(module, nn.ReLU):
                ratio = (out1 > 0).to(out1.dtype)
            else:  # softplus treated as ReLU: relevance passes unchanged, c_z = (a / z) c_a
                zero = in1 == 0
                ratio = torch.where(zero, torch.zeros_like(out1), out1 / torch.where(zero, torch.ones_like(in1), in1))
            return _swap(inp * ratio, out)
        return self._linear(module, k, inp, in1, out1)

    def _linear(self, module, k, in2, in1, out1):
        bn = self.folded_into.get(module)
        w, b = _folded(module, bn)
        z1 = self.records[bn][k][1] if bn is not None else out1
        if module is self.first and k == 0:  # z^B (box) rule, R-form
            lo, hi = self.bounds
            wp, wn = w.clamp(min=0), w.clamp(max=0)
            zb = _affine(module, in1, w) - _affine(module, lo, wp) - _affine(module, hi, wn)
            s = z1 / _stabilize(zb, self.eps)
            g = (_affine(module, in1 * in2, w) - _affine(module, lo * in2, wp) - _affine(module, hi * in2, wn)) * s
            return _swap(g, z1)
        # z+ rule (zennit ZPlus = alpha1-beta0; with inputs >= 0 it is P1's z+)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        bp = b.clamp(min=0) if self.zplus_bias else None
        zp = _affine(module, in1.clamp(min=0), wp, bp) + _affine(module, in1.clamp(max=0), wn)
        s = z1 / _stabilize(zp, self.eps)
        pos, neg = (in1 > 0).to(in1.dtype), (in1 < 0).to(in1.dtype)
        g = (_affine(module, in2 * pos, wp) + _affine(module, in2 * neg, wn)) * s
        return _swap(g, z1)

    # -- the first layer and its box bounds (in the space the first layer sees)
    def locate_first(self, x1):
        firsts = [m for m in self.order if isinstance(m, _LINEAR)]
        if not firsts:
            raise ValueError("lrp: the model has no nn.Linear / nn.Conv layer")
        self.first = firsts[0]
        in1 = self.records[self.first][0][0]
        u = x1
        for m in self.order:
            if isinstance(m, Normalize) and self.raw[m][0][0] is x1:
                u = self.records[m][0][1]
                mean, std = m._view(m.mean, x1), m._view(m.std, x1)
                break
        else:
            mean = std = None
        if in1.numel() != u.numel() or not torch.equal(in1.detach().reshape(u.shape), u.detach()):
            raise ValueError("lrp: the first linear/conv layer must receive the input (after Normalize, if any) "
                             "up to a reshape")

        def bound(v):
            v = torch.as_tensor(v, dtype=x1.dtype, device=x1.device)
            if mean is not None:
                v = (v - mean) / std
            return v.expand_as(x1).reshape(in1.shape)

        self.bounds = (bound(self.low), bound(self.high))


def lrp(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, create_graph: bool = False,
        low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0, init: str = "logit",
        zplus_bias: bool = True, stabilizer: float = 1e-6) -> torch.Tensor:
    """LRP, z+ rule in hidden layers and z^B in the first layer (P1 "Attribution methods"; Bach et al. 2015).

    - z^B (box) rule in the first conv/linear layer with bounds ``low``/``high`` in pixel
      space ([0, 1]); a :class:`~robust_saliency.models.Normalize` first module is handled
      by applying z^B on the normalized input with the bounds normalized the same way
      (identical to folding it into the layer).
    - z+ rule (zennit's ZPlus: x+ W+ + x- W-, P1's z+ for non-negative inputs) in every
      other conv/linear layer. ``zplus_bias=True`` (zennit's default and P1's reference code)
      puts the positive part of the bias in the z+ denominator, so relevance is conserved
      only for bias-free layers; ``False`` gives P1's printed formula (no bias).
    - ReLU and Softplus pass relevance unchanged (softplus treated as ReLU); max-pool gives
      relevance to the winner (gradient); average pools and residual sums split it in
      proportion to their inputs (z-rule).
    - BatchNorm is folded into the conv/linear layer before it (eval-mode statistics), so
      the model runs in eval mode during the call (its mode is restored afterwards).
    - ``init='logit'``: output relevance = one-hot(target) * target logit, so that the map
      sums to the logit when every layer conserves; ``init='onehot'``: P1's delta_{iy}.
    Implemented as two forward passes with hooks whose gradient is the relevance message;
    all ratios keep their graph, so ``create_graph=True`` differentiates the whole map.
    """
    if init not in ("logit", "onehot"):
        raise ValueError(f"init={init!r} is not known; accepted: ['logit', 'onehot']")
    x, target = to_device_of(model, x, target)
    ctx = _LRPContext(model, low, high, stabilizer, zplus_bias)
    hooked = [m for m in model.modules()
              if isinstance(m, _LINEAR + _ACTIVATIONS + _BATCHNORM) or isinstance(m, Normalize)]
    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(ctx.hook) for m in hooked]
    try:
        model.eval()
        x2 = x.clone() if x.requires_grad else x.detach().requires_grad_(True)
        x1 = x if create_graph else x.detach()
        with torch.set_grad_enabled(create_graph):
            out1 = model(x1)
        ctx.locate_first(x1)
        ctx.raw.clear()
        ctx.mode = "relevance"
        with torch.enable_grad():
            out2 = model(x2)
            t = _target(target, out2)
            c = F.one_hot(t, out2.shape[1]).to(out2.dtype)
            if init == "onehot":
                logit = out1.gather(1, t.view(-1, 1))
                c = c / torch.where(logit == 0, torch.full_like(logit, stabilizer), logit)
            (r,) = torch.autograd.grad(out2, x2, grad_outputs=c, create_graph=create_graph)
        return r
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode

