"""robust_saliency: the shared library of the robust-saliency paper companion.

Modules (one concept each): data, models, attributions, regularizers,
adversarial_training, attacks, metrics, training, cache, experiments, plotting.
Inputs are images in the pixel range [0, 1]; eps values "in 0-255 units" are divided by 255.
"""

__version__ = "0.1.0"
