"""Accuracies of a model: clean, under an attack, worst group."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..common import device_of, to_device_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def _predict(model, x, batch_size=512):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: torch.nn.Module,
             data: tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device | str | None = None, batch_size: int = 512) -> float:
    """Top-1 accuracy (float) of model on a loader of (x, y) batches or on a tuple (x, y).

    Each batch is moved to ``device`` (None: the model's, ``common.device_of``)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        batches = [data]
    else:
        batches = data
    device = device_of(model) if device is None else device
    correct, total = 0, 0
    for batch in batches:
        x, y = batch[0], batch[1]
        if device is not None:
            x, y = x.to(device), y.to(device)
        correct += (_predict(model, x, batch_size) == y).sum().item()
        total += len(y)
    if total == 0:
        raise ValueError("accuracy: data holds no samples")
    return correct / total


def adversarial_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                         attack: Callable[..., torch.Tensor]) -> float:
    """Accuracy (float) on attack(model, x, y) (P2, P4 robust accuracy); attack from attacks.get.
    ``x`` and ``y`` are moved to the model's device first."""
    x, y = to_device_of(model, x, y)
    x_adv = attack(model, x, y).detach()
    return (_predict(model, x_adv) == y).float().mean().item()


def worst_group_accuracy(preds: torch.Tensor, y: torch.Tensor, groups: torch.Tensor,
                         per_group: bool = False) -> float | tuple[float, dict[Any, float]]:
    """Minimum accuracy over groups (P4, Sagawa 2020); preds are labels (N,) or logits (N, K).

    ``per_group=True`` returns ``(worst, {group: accuracy})``.  ``y`` and ``groups`` are taken to the
    device of ``preds``.
    """
    y, groups = torch.as_tensor(y, device=preds.device), torch.as_tensor(groups, device=preds.device)
    if preds.dim() == 2:
        preds = preds.argmax(1)
    correct = (preds == y).double()
    ids, inv = torch.unique(groups, return_inverse=True)
    hits = torch.zeros(len(ids), dtype=torch.float64, device=correct.device).index_add_(0, inv, correct)
    counts = torch.bincount(inv, minlength=len(ids)).double()
    acc = hits / counts
    worst = acc.min().item()
    if per_group:
        return worst, {g.item(): a.item() for g, a in zip(ids, acc)}
    return worst
