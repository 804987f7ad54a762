"""Adversarial training (SPEC section 6): training methods whose loss is the cross-entropy at an
attacked input.  ``at_pgd`` (Madry 2018; P2's robust model) and ``at_fgsm`` (Goodfellow 2015)
are ``regularizers.Regularized`` methods listed in ``methods.METHODS``.

The attack runs on the model as it is during training (train mode), from the global RNG's
random start (``torch.manual_seed`` makes it repeatable; ``training.train`` seeds it), and
only input gradients are taken.  ``eps`` and ``alpha`` in 0-255 pixel units.
"""
import torch.nn.functional as F

from . import attacks
from .regularizers import Regularized
from .regularizers._checks import _pixels, _pos_int
from .regularizers.terms import _f

__all__ = ["ATPGD", "ATFGSM", "REGISTRY"]


class ATPGD(Regularized):
    """PGD adversarial training (Madry 2018): CE(f(x_adv), y), x_adv = linf PGD of ``steps``
    steps of size ``alpha`` in the ``eps`` ball with a random start (defaults: Madry's CIFAR
    setting, eps 8, alpha 2, 7 steps)."""

    name = "at_pgd"
    params = {"eps": (8.0, _pixels), "alpha": (2.0, _pixels), "steps": (7, _pos_int)}

    def attack(self, model, x, y):
        hp = self.hparams
        return attacks.pgd(model, x, y, hp["eps"], alpha=hp["alpha"], steps=hp["steps"])

    def terms(self, model, x, y):
        ce = F.cross_entropy(model(self.attack(model, x, y)), y)
        return ce, ce.new_zeros(()), {"ce_adv": _f(ce)}


class ATFGSM(ATPGD):
    """FGSM adversarial training (Goodfellow 2015): CE(f(x + eps sign(grad_x CE)), y)."""

    name = "at_fgsm"
    params = {"eps": (8.0, _pixels)}

    def attack(self, model, x, y):
        return attacks.fgsm(model, x, y, self.hparams["eps"])


REGISTRY = {m.name: m for m in (ATPGD, ATFGSM)}
