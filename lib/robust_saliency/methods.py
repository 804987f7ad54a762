"""The training methods by name (SPEC section 6): one explicit registry for ``training.train``.

``METHODS`` maps every name to its ``training.Method`` class: ``ce`` (``training``) and P1's
regularizers and baselines (``regularizers.REGISTRY``); the adversarial-training methods of P3
and P4's regularizers join here when their modules are written.  The modules are imported at
the top, so a broken one fails this import with its own error instead of hiding as an
"unknown method".  ``get(name, **hparams)`` builds the method.
"""
from . import regularizers
from .training import CE

__all__ = ["METHODS", "NAMES", "get"]

METHODS = {"ce": CE, **regularizers.REGISTRY}
NAMES = tuple(METHODS)


def get(name, **hparams):
    """The training method ``name`` (one of ``NAMES``) with hyperparameters ``hparams``."""
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not known; accepted: {list(NAMES)}")
    return METHODS[name](**hparams)
