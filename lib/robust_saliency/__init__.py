"""robust_saliency: the shared library of the robust-saliency paper companion.

Modules (one concept each): common, units, cache, registry, executor, data, models, attributions,
regularizers, adversarial_training, methods, attacks, metrics, evaluation, training, cost, claims, results,
settings, profiles, runs, papers, experiments, plotting, report, compare, site, sweep.
``data``, ``attributions``, ``regularizers``, ``metrics`` and ``papers`` are subpackages:
data.datasets (dataset classes), data.synthetic (embedded generators), data.real (real-dataset
readers); attributions.gradient / lrp / smooth / captum_methods / fitted / postprocess; regularizers.terms / base /
alignment / baselines; metrics.similarity / concentration / robustness / games / accuracy;
papers.p1 … p4 (one module per paper: its facts, protocol and claims) and papers.protocol (what they share).  ``registry`` gives every family of named
things one shape: ``get(name, **hyperparameters)`` -> a configured object with metadata.  ``experiments`` is the notebooks' one import: it re-exports profiles, runs,
results and ``papers.p1``.  ``docs/ARCHITECTURE.md`` draws the stack.
Inputs are images in the pixel range [0, 1]; L-infinity budgets and noise levels are in 0-255
pixel units (divided by 255), L2 budgets in input units (``units``).
"""

__version__ = "0.1.0"
