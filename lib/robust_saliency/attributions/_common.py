"""Helpers shared by the attribution methods: targets, inputs, the create_graph guard."""
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
                         "only); accepted: False. Differentiable maps: grad, input_x_grad, guided_backprop, lrp")

