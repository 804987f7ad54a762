"""Tests of papers.unified.evaluate_model (notebook 05's scoring core) against the library's
functions called directly, and the properties an attack of size 0 must give."""
import pytest
import torch

from robust_saliency import attacks, attributions, data, metrics, models
from robust_saliency.papers import p1, unified

TINY = {"pgd_steps": 2, "rps_n": 2, "aam_steps": 2, "untargeted_steps": 2, "topk_steps": 2}


@pytest.fixture(scope="module")
def case():
    ds = data.load("shapes", split="test", size=16)
    torch.manual_seed(0)
    net = models.build("small_cnn", num_classes=ds.num_classes, in_shape=tuple(ds.in_shape), width=4).eval()
    return net, ds.x[:8], torch.as_tensor(ds.y[:8]), ds.masks[:8]


def test_every_measure_is_the_library_function_it_names(case):
    net, x, y, masks = case
    r = unified.evaluate_model(net, x, y, masks, **TINY)
    assert r == unified.evaluate_model(net, x, y, masks, **TINY)  # seeded: the same numbers again
    assert r["accuracy"] == metrics.accuracy(net, (x, y))
    pgd = attacks.get("pgd", norm="l2", eps=0.5, steps=2, seed=0)
    assert r["PGD-2 l2"] == metrics.adversarial_accuracy(net, x, y, pgd)
    grad = attributions.get("grad")(net, x, y).detach()
    assert r["gini"] == pytest.approx(float(metrics.gini(grad.abs().sum(1)).mean()), rel=1e-6)
    assert r["object share"] == pytest.approx(float(metrics.object_share(grad, masks).mean()), rel=1e-6)
    rps = metrics.rps(net, x, y, "grad", 8, n=2, similarity="cosine", postprocess="abs_max", seed=0)
    assert r["RPS cosine"] == pytest.approx(float(rps.mean()), rel=1e-5)
    ins = metrics.insertion_score(net, x, y, grad, **p1.insertion_settings(net))
    assert r["insertion"] == pytest.approx(float(ins.mean()), rel=1e-5)
    assert all(0.0 <= r[k] <= 1.0 + 1e-6 for k in ("accuracy", "gini", "object share", "deletion", "preservation"))


def test_attacks_of_size_zero_leave_the_maps_alone(case):
    net, x, y, masks = case
    r = unified.evaluate_model(net, x, y, None, **{**TINY, "aam_eps": 0, "untargeted_eps": 0, "topk_eps": 0})
    for name in ("PGD", "top-k attack"):
        assert r[f"spearman ({name})"] == pytest.approx(1.0) and r[f"top-k intersection ({name})"] == pytest.approx(1.0)
    assert r["AAM cosine"] == pytest.approx(1.0) and r["AAM ssim"] == pytest.approx(1.0, abs=1e-5)
    assert r["adv-insertion"] == pytest.approx(r["insertion"]) and "object share" not in r


def test_a_bad_k_is_refused_before_any_work(case):
    net, x, y, _ = case
    with pytest.raises(ValueError, match="k=2 is not valid; accepted: a fraction in"):
        unified.evaluate_model(net, x, y, k=2)
