"""The training methods by name (SPEC section 6): one explicit registry for ``training.train``.

``METHODS`` (a ``registry.Registry`` of ``training.Method`` classes) holds ``ce``
(``training``), P1's and P4's regularizers and baselines (``regularizers.REGISTRY``, the
same classes: P4's marginal_density, score_matching, cure and group_dro) and adversarial
training (``adversarial_training``: at_pgd, at_fgsm, P3's norm_regularized_at and
gaussian_noise).  The modules are imported at the top, so a broken one fails this import
with its own error instead of hiding as an "unknown method".  ``get(name, **hparams)``
builds the method.
"""
from . import adversarial_training, regularizers
from .registry import Registry
from .training import CE

__all__ = ["METHODS", "NAMES", "get"]

METHODS = Registry("method", {"ce": CE, **dict(regularizers.REGISTRY.items()),
                              **adversarial_training.REGISTRY})
NAMES = METHODS.names


def get(name, **hparams):
    """The training method ``name`` (one of ``NAMES``) with hyperparameters ``hparams``."""
    return METHODS.get(name, **hparams)
