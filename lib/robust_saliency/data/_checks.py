"""Parameter checks shared by ``robust_saliency.data`` and its loaders: the accepted splits and
the keyword and integer checks whose errors name the parameter and the accepted values."""
import numpy as np

SPLITS = ("train", "test")


def _check_kw(name, kw, accepted):
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for dataset {name!r}; "
                         f"accepted: {tuple(sorted(accepted))}")


def _check_int(param, value, low, high=None):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{param}={value!r} is not valid; accepted: an int {rng}")
