"""Units of perturbation budgets, step sizes and noise levels, checked in one place.

Every public function of the library takes them in the papers' units:

* L-infinity budgets, their step sizes and uniform noise levels: 0-255 pixel units, as the
  papers write them (``eps=4`` means 4/255 of the [0, 1] input range).  Accepted: a finite
  number in [0, 255]; a larger value (which would perturb every pixel over its whole range) is
  rejected with an error that names the unit.
* L2 budgets and step sizes: input units (P4's convention; the L2 norm of the perturbation
  of a [0, 1] image).  Accepted: a finite number >= 0.

``linf(value)`` and ``l2(value)`` check a value and return it in input units; ``budget(value,
norm)`` picks one by the norm's name.  A leaf module: it imports nothing of the library.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["PIXEL_MAX", "NORMS", "linf", "l2", "budget"]

PIXEL_MAX = 255.0
NORMS = ("linf", "l2")


def _number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def linf(value: float, name: str = "eps") -> float:
    """``value`` in 0-255 pixel units, checked to lie in [0, 255], as input units (``value / 255``)."""
    if not _number(value) or not 0 <= float(value) <= PIXEL_MAX:
        raise ValueError(f"{name}={value!r} is not valid; accepted: a number in [0, 255] in 0-255 "
                         f"pixel units (L-infinity budgets, steps and noise levels: {name}=8 "
                         f"means 8/255 of the [0, 1] input range)")
    return float(value) / PIXEL_MAX


def l2(value: float, name: str = "eps") -> float:
    """``value`` in input units (an L2 norm of a [0, 1] image's perturbation), checked to be >= 0."""
    if not _number(value) or float(value) < 0:
        raise ValueError(f"{name}={value!r} is not valid; accepted: a finite number >= 0 in input "
                         f"units (L2 budgets and steps: the L2 norm of the perturbation of a "
                         f"[0, 1] image)")
    return float(value)


def budget(value: float, norm: str, name: str = "eps") -> float:
    """``linf(value)`` for ``norm="linf"``, ``l2(value)`` for ``norm="l2"``."""
    if norm == "linf":
        return linf(value, name)
    if norm == "l2":
        return l2(value, name)
    raise ValueError(f"norm={norm!r} is not known; accepted: {NORMS}")
