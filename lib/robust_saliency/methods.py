"""The training methods by name: one explicit registry for ``training.train``.

``METHODS`` (a ``registry.Registry`` of ``training.Method`` classes) holds ``ce``
(``training``), P1's and P4's regularizers and baselines (``regularizers.REGISTRY``, the
same classes: P4's marginal_density, score_matching and cure), adversarial training
(``adversarial_training``: at_pgd, at_fgsm, P3's norm_regularized_at and gaussian_noise) and
``group_dro``, which wraps any of the others by name (``GroupDRO``): it lives here, above both
packages whose methods it composes.  The modules are imported at the top, so a broken one fails
this import with its own error instead of hiding as an "unknown method".
``get(name, **hparams)`` builds the method.
"""
from __future__ import annotations

from typing import Any

from . import adversarial_training, regularizers
from .registry import Registry
from .training import CE, Method

__all__ = ["METHODS", "NAMES", "GroupDRO", "get"]


class GroupDRO(regularizers.GroupDRO):
    """Group DRO (Sagawa 2020; P4 Table 2) composed with the training method ``regularizer`` (a
    name of ``METHODS`` other than ``ce`` and ``group_dro``, or None) built with ``reg_kw``: the
    group-weighted CE at that method's training input plus its penalty
    (``regularizers.GroupDRO``).  ``n_groups``, ``eta``, ``mode`` as there."""

    def __init__(self, regularizer: str | None = None, reg_kw: dict | None = None, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.params))
        if unknown:
            raise ValueError(f"group_dro: unknown hyperparameter(s) {unknown}; accepted: "
                             f"{sorted([*self.params, 'regularizer', 'reg_kw'])}")
        names = [n for n in NAMES if n not in ("ce", self.name)]
        if regularizer is not None and regularizer not in names:
            raise ValueError(f"group_dro: regularizer={regularizer!r} is not accepted; expected None "
                             f"or one of {names}")
        if reg_kw is not None and not isinstance(reg_kw, dict):
            raise ValueError(f"group_dro: reg_kw={reg_kw!r} is not accepted; expected None or a dict "
                             f"of the regularizer's hyperparameters")
        if regularizer is None and reg_kw:
            raise ValueError(f"group_dro: reg_kw={reg_kw!r} is not accepted without a regularizer; "
                             f"expected None or {{}}")
        try:
            inner = None if regularizer is None else METHODS.get(regularizer, **(reg_kw or {}))
        except ValueError as err:
            raise ValueError(f"group_dro: reg_kw={reg_kw!r} is not accepted by {regularizer!r}: "
                             f"{err}") from None
        super().__init__(inner=inner, **hparams)


METHODS = Registry("method", {"ce": CE, **dict(regularizers.REGISTRY.items()),
                              **adversarial_training.REGISTRY, "group_dro": GroupDRO})
NAMES = METHODS.names


def get(name: str, **hparams: Any) -> Method:
    """The training method ``name`` (one of ``NAMES``) with hyperparameters ``hparams``."""
    return METHODS.get(name, **hparams)
