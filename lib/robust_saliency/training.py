"""One training loop for every method.  STUB: only the Method interface and ``ce`` so far."""
import torch.nn.functional as F


class Method:
    """A training method: a loss ``L(model, x, y) -> (loss, logs)``.

    ``name`` and ``hparams`` identify it in cache keys; ``logs`` is a dict of floats.
    """

    name = "method"

    def __init__(self, **hparams):
        self.hparams = dict(hparams)

    def __call__(self, model, x, y):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{self.name}({args})"


class CE(Method):
    """Plain cross-entropy."""

    name = "ce"

    def __call__(self, model, x, y):
        loss = F.cross_entropy(model(x), y)
        return loss, {"ce": loss.item()}


METHODS = {"ce": CE}


def register_method(cls):
    """Class decorator: make a Method subclass available to ``get_method`` by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def get_method(name, **hparams):
    if name not in METHODS:
        # regularizers / adversarial_training register their methods on import
        from . import regularizers, adversarial_training  # noqa: F401
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not known; accepted: {sorted(METHODS)}")
    return METHODS[name](**hparams)
