"""Helpers shared by the metrics: flattening, shape checks, safe division."""
import torch



def _flat(a):
    return a.reshape(a.shape[0], -1)


def _check_pair(a, b):
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape; got a.shape={tuple(a.shape)}, "
                         f"b.shape={tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"maps need a batch dimension first; got shape={tuple(a.shape)}")


def _work_dtype(t):
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def _safe_div(num, den):
    """num / den where den > 0, else 0."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))
