"""The notebooks' one import: profiles and parameter validation, runs, provenance and results
files, and P1's protocol, re-exported from the modules that own them.

    params = experiments.validate(**experiments.profile_params(profile, num_epochs=num_epochs))
    ...
    experiments.write_results("01_local_gradient_alignment", profile, results, params,
                              t_start=t_start)

Where each name lives: ``profiles`` (``PROFILES``, ``notebook_settings``, ``profile_params``,
``validate``, ``accepted_names``, ``train_config``, ``resolve_device``), ``results``
(``repo_root``, ``default_cache_dir``, ``code_changes``, ``provenance``, ``write_results``),
``runs`` (``load_data``, ``build_model``, ``fit``, ``fit_many``, ``batch``, ``split_validation``, ``check_grid``,
``cached_eval``), ``papers.p1`` (``fit_method``, ``evaluate_saliency``, ``select_hparams``)
and ``claims`` (``mean_std``).
"""
from .claims import mean_std
from .papers.p1 import evaluate_saliency, fit_method, select_hparams
from .profiles import (PROFILES, accepted_names, notebook_settings, profile_params,
                       resolve_device, train_config, validate)
from .results import code_changes, default_cache_dir, provenance, repo_root, write_results
from .runs import batch, build_model, cached_eval, check_grid, fit, fit_many, load_data, split_validation

__all__ = ["PROFILES", "notebook_settings", "profile_params", "validate", "train_config",
           "resolve_device", "default_cache_dir", "repo_root", "provenance", "code_changes",
           "write_results",
           "accepted_names", "load_data", "build_model", "fit", "fit_many", "fit_method", "batch", "split_validation",
           "evaluate_saliency", "check_grid", "select_hparams", "cached_eval", "mean_std"]
