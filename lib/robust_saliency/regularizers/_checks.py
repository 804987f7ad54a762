"""Hyperparameter checks of the regularized methods: each returns the normalized value or None."""
import math
import numbers

from .. import units


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _nonneg(v):
    return float(v) if _is_real(v) and v >= 0 else None


def _pos(v):
    return float(v) if _is_real(v) and v > 0 else None


def _real(v):
    return float(v) if _is_real(v) else None


def _boolean(v):
    return v if isinstance(v, bool) else None


def _pos_int(v):
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 else None


def _nonneg_int(v):
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 else None


def _fraction(v):
    return float(v) if _is_real(v) and 0 < v <= 1 else None


def _p_norm(v):
    return float(v) if _is_real(v) and v >= 1 else None


def _pixels(v):
    """A budget, step or noise level in 0-255 pixel units (``units.linf``): a number in [0, 255]."""
    try:
        units.linf(v)
    except ValueError:
        return None
    return float(v)


def _choice(*options):
    def check(v):
        return v if isinstance(v, str) and v in options else None
    check.accepted = " or ".join(repr(o) for o in options)
    return check


def _squared(v):
    return v if v == "form" and isinstance(v, str) else _boolean(v)


_squared.accepted = "True, False or 'form' (as the form: squared for reference_code)"


def _optional_key(v):
    return v if isinstance(v, str) and v else None


_optional_key.accepted = "a non-empty string"


_ACCEPTED = {_nonneg: "a finite number >= 0", _pos: "a finite number > 0",
             _real: "a finite real number", _boolean: "True or False",
             _pos_int: "an integer >= 1", _nonneg_int: "an integer >= 0",
             _fraction: "a number in (0, 1]", _p_norm: "a finite number >= 1",
             _pixels: "a number in [0, 255] in 0-255 pixel units (eps=8 means 8/255)"}
