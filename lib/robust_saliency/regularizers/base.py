"""``Regularized``: the base of the methods here, ``loss = base + penalty`` with validated
hyperparameters."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..training import Method
from ._checks import _ACCEPTED
from .terms import _f

if TYPE_CHECKING:
    import torch


class Regularized(Method):
    """Base of the methods here: ``loss = base + penalty`` with validated hyperparameters.

    Subclasses set ``params = {name: (default, check)}`` and implement ``terms``.  ``hparams``
    holds every hyperparameter (defaults included, numbers as float) for cache keys.
    """

    name = "regularized"
    params = {}
    draws = ()  # names of the random draws a caller may fix, e.g. ("delta",)

    def __init__(self, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {unknown}; "
                             f"accepted: {sorted(self.params)}")
        merged = {}
        for key, (default, check) in self.params.items():
            value = hparams.get(key, default)
            norm = check(value)
            if norm is None:
                accepted = _ACCEPTED.get(check) or check.accepted
                raise ValueError(f"{self.name}: {key}={value!r} is not accepted; expected {accepted}")
            merged[key] = norm
        super().__init__(**merged)

    def _check_draws(self, draws):
        unknown = sorted(set(draws) - set(self.draws) - set(self.extras))
        if unknown:
            raise ValueError(f"{self.name}: cannot fix draw(s) {unknown}; accepted: {list(self.draws)}"
                             + (f" and the extras {list(self.extras)}" if self.extras else ""))

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              **draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(base, penalty, logs): the two scalar loss terms and a dict of floats."""
        raise NotImplementedError

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 **draws: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        self._check_draws(draws)
        base, penalty, logs = self.terms(model, x, y, **draws)
        loss = base + penalty
        return loss, {"loss": _f(loss), **logs}

    def penalty(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                **draws: torch.Tensor) -> torch.Tensor:
        """The weighted regularization term alone (scalar tensor, differentiable)."""
        self._check_draws(draws)
        return self.terms(model, x, y, **draws)[1]
