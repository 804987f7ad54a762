"""Shared fixtures: one torch thread for modules of tiny models, a fresh default cache folder."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module of tiny models: fastest, and no oversubscription of a
    shared CPU; the previous number is restored after the module.  Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh cache folder (``tmp_path``) that the library uses by default: ROBUST_SALIENCY_CACHE
    points at it for the test."""
    monkeypatch.setenv("ROBUST_SALIENCY_CACHE", str(tmp_path))
    return tmp_path
