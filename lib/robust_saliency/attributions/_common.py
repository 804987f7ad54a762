"""Helpers shared by the attribution methods: targets, inputs, baselines, the create_graph
guard, captum's import."""
import torch


def _target(target, out):
    """Target as a (N,) LongTensor on the device of ``out``."""
    if isinstance(target, int):
        return torch.full((out.shape[0],), target, dtype=torch.long, device=out.device)
    target = torch.as_tensor(target, device=out.device).long().view(-1)
    if target.numel() != out.shape[0]:
        raise ValueError(f"target has {target.numel()} entries; accepted: one per sample ({out.shape[0]})")
    return target


def _select(out, target):
    """Sum over the batch of the target logits."""
    return out.gather(1, _target(target, out).view(-1, 1)).sum()


def _input(x):
    """``x`` itself if it is already in a graph, else a detached leaf that requires grad."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _stabilize(z, eps):
    """``z + eps * sign(z)`` with sign(0) = +1 (zennit's stabilizer)."""
    return z + eps * ((z == 0).to(z) + z.sign())


def _swap(g, value):
    """Tensor with the value of ``value`` whose gradient is that of ``g``."""
    return g + (value - g).detach()


def _no_create_graph(name, create_graph):
    if create_graph:
        raise ValueError(f"create_graph={create_graph!r} is not supported by {name!r} (captum, evaluation "
                         "only); accepted: False. Differentiable maps: grad, input_x_grad, guided_backprop, "
                         "lrp, integrated_gradients, smoothgrad, gradcam")


def _import_captum():
    """Import captum.attr once, silencing tqdm's 'IProgress not found' warning that captum's
    ``tqdm.auto`` import raises in a notebook without ipywidgets (nbval compares stderr)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import captum.attr  # noqa: F401  (pyflakes: used for its side effect)


def _normalized_zero(model, x):
    """The pixel image whose normalized input is 0: the model's leading ``Normalize`` mean
    broadcast to ``x`` (P2's code starts IG and DeepLIFT from the normalized input's zero);
    zeros for a model without one.  (``metrics.normalized_zero`` is the same value for the
    perturbation games, as a (1, C, 1, 1) tensor or "zero".)"""
    from ..models import leading_normalize  # models is below attributions in the stack

    norm = leading_normalize(model)
    if norm is None:
        return torch.zeros_like(x)
    return norm._view(norm.mean, x).to(x.device).expand_as(x).contiguous()


def _baseline(model, x, baseline):
    """The reference input of IG and DeepLIFT as a tensor of ``x``'s shape: a number (a
    constant pixel value), a tensor broadcastable to ``x``, or ``"normalized_zero"``."""
    if isinstance(baseline, str):
        if baseline == "normalized_zero":
            return _normalized_zero(model, x)
    elif torch.is_tensor(baseline):
        try:
            return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError:
            raise ValueError(f"baseline tensor of shape {tuple(baseline.shape)} does not broadcast to "
                             f"x.shape={tuple(x.shape)}; accepted: a number, a tensor broadcastable to "
                             "x or 'normalized_zero'") from None
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    raise ValueError(f"baseline={baseline!r} is not known; accepted: a number, a tensor broadcastable "
                     "to x or 'normalized_zero'")

