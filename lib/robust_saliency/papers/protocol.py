"""The protocol the paper modules share: how a notebook names its models (``ModelSpec``), takes
the paper's datasets at the ``paper`` profile, checks a grid of settings before any work, finds
the setting a model takes from a selection, and reads a ``make bench`` record.

Each ``papers.pN`` module keeps only its paper's facts, its protocol's choices and its claims;
the scaffolding they have in common lives here."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from ..results import benchmark_record

if TYPE_CHECKING:
    import os

__all__ = ["ModelSpec", "with_paper_data", "check_named_grid", "hp_of", "check_fractions", "benchmark_table"]


class ModelSpec(NamedTuple):
    """One model of a notebook: its training ``method`` (a name of ``methods.METHODS``), the
    ``fixed`` hyperparameters that make it this model, the ``grid`` whose chosen setting it takes
    (a key of the selection; None: it takes none) and its network keywords ``model_kw``."""

    method: str
    fixed: Mapping[str, Any] = {}
    grid: str | None = None
    model_kw: Mapping[str, Any] = {}


def with_paper_data(profile: str, paper_data: Mapping[str, Any], notebook_params: dict) -> dict:
    """The notebook's parameters with the paper's datasets (``paper_data``) at the ``paper``
    profile, unless the notebook names others (a value other than None); unchanged otherwise."""
    if profile != "paper":
        return notebook_params
    return {**paper_data, **{k: v for k, v in notebook_params.items() if v is not None}}


def check_named_grid(grid: Any, wanted: set[str] | frozenset[str], build: Callable[[str, dict], Any],
                     key: str = "grid") -> dict:
    """Check a grid ``{name: [hyperparameter dict, ...]}`` before any work: its keys are exactly
    ``wanted``, each list is non-empty and every point builds (``build(name, hp)`` raises a
    ``ValueError`` naming the bad setting).  ``key`` names the parameter in the messages."""
    if not isinstance(grid, dict) or set(grid) != set(wanted):
        raise ValueError(f"{key}={grid!r} is not valid; accepted: a dict with one list of hyperparameter "
                         f"dicts for each of {sorted(wanted)}")
    for name, points in grid.items():
        if not isinstance(points, (list, tuple)) or not points:
            raise ValueError(f"{key}[{name!r}] must be a non-empty list of hyperparameter dicts; got {points!r}")
        for hp in points:
            if not isinstance(hp, dict):
                raise ValueError(f"{key}[{name!r}] item {hp!r} is not valid; accepted: a dict of hyperparameters")
            build(name, hp)
    return grid


def hp_of(specs: Mapping[str, ModelSpec], chosen: Mapping[str, dict], name: str) -> dict:
    """The chosen hyperparameters model ``name`` takes: those of its spec's ``grid`` (``{}``
    when it takes none)."""
    grid = specs[name].grid
    return dict(chosen.get(grid, {})) if grid else {}


def check_fractions(params: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Every value of each parameter in ``keys`` (a number or a list) is a fraction in (0, 1)."""
    import numpy as np

    for key in keys:
        vals = np.atleast_1d(params[key]).tolist()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in vals):
            raise ValueError(f"{key}={params[key]!r} is not valid; accepted: fractions in (0, 1)")


def benchmark_table(filename: str, describe: Callable[[dict], str],
                    path: str | os.PathLike | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """A ``make bench`` record (``results/<filename>``, or ``path``): the table of one training
    step per method relative to ``ce`` and ``describe(config)`` followed by the machine it ran
    on; ``(None, None)`` if it was never run."""
    table, doc = benchmark_record(filename, path)
    if table is None:
        return None, None
    return table, f"{describe(doc['config'])}; {doc['machine']['platform']}"
