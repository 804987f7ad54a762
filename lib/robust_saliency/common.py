"""Small helpers shared by the other modules (a leaf: imports nothing from the package)."""
import contextlib

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed):
    """Run the block with torch's global RNG seeded by ``seed`` and restore its state after.

    For code that draws from the global RNG (captum's NoiseTunnel in SmoothGrad, regularizers
    that sample perturbations): its numbers then do not depend on what ran before (for example
    on whether a model came from the cache or was trained).  ``seed=None`` leaves the global
    RNG alone.  CUDA generators are forked and seeded too when CUDA is in use.
    """
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
