"""P2's attacks (untargeted_pgd, structured), its explanation metrics (retrieval_rate,
explanation_probs), its post-processing modes and adversarial training (at_pgd, at_fgsm)."""
import pytest
import torch
import torch.nn.functional as F

from robust_saliency import attacks, attributions, methods, metrics, models
from robust_saliency.attacks import P2_PGD_STEP, p2_eps


def _net(seed=0, c=3, size=8, classes=4):
    torch.manual_seed(seed)
    return models.build("small_cnn", classes, (c, size, size), width=4).eval()


def _x(n=4, c=3, size=8, seed=1):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_p2_units():
    assert p2_eps(0.07) == pytest.approx(0.07 * 0.226 * 255)
    assert 3.9 < p2_eps(0.07) < 4.1 and 57 < p2_eps(1.0) < 58
    assert P2_PGD_STEP == pytest.approx(0.01 * 0.226 * 255)


@pytest.mark.parametrize("eps", [4, 58])
def test_untargeted_pgd_budget_and_reference_step(eps):
    model, x = _net(), _x()
    adv = attacks.get("untargeted_pgd", eps=eps)(model, x, None, seed=0)
    d = (adv - x).abs().max()
    assert d <= eps / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # without the random start, 40 fixed steps of ~0.58/255 bound the travel below eps=58
    adv0 = attacks.untargeted_pgd(model, x, None, eps=eps, random_start=False)
    assert (adv0 - x).abs().max() <= min(eps, 40 * P2_PGD_STEP) / 255 + 1e-5
    same = attacks.pgd(model, x, None, eps, alpha=P2_PGD_STEP, steps=40, seed=0)
    assert torch.equal(adv, same)


def test_untargeted_pgd_changes_predictions():
    torch.manual_seed(0)
    model = models.build("small_cnn", 3, (1, 8, 8), width=4).eval()
    x = _x(16, c=1)
    pred = model(x).argmax(1)
    adv = attacks.untargeted_pgd(model, x, None, eps=32, seed=0)
    assert (model(adv).argmax(1) != pred).float().mean() > 0.5


def _grad_map_distance(model, x, target_x):
    def h(z):
        z = z.clone().requires_grad_(True)
        g = attributions.grad(model, z, model(z).argmax(1))
        m = g.abs().sum(1).flatten(1)
        return m / m.sum(1, keepdim=True)
    return (h(x) - h(target_x)).pow(2).sum(1)


def test_structured_moves_the_map_to_the_target_within_budget():
    model, x = _net(), _x(4)
    target_x = _x(4, seed=9)
    atk = attacks.get("structured", eps=16, steps=60, alpha=2.0)
    adv = atk(model, x, None, target_x=target_x)
    assert (adv - x).abs().max() <= 16 / 255 + 1e-6
    assert torch.equal(model(adv).argmax(1), model(x).argmax(1))  # the label is kept
    before, after = _grad_map_distance(model, x, target_x), _grad_map_distance(model, adv, target_x)
    assert (after < before).float().mean() >= 0.75
    assert after.mean() < 0.8 * before.mean()


def test_structured_needs_a_fitting_target():
    model, x = _net(), _x(2)
    with pytest.raises(ValueError, match="target_x"):
        attacks.structured(model, x)
    with pytest.raises(ValueError, match="target_x"):
        attacks.structured(model, x, target_x=_x(3))
    with pytest.raises(ValueError, match="beta_range"):
        attacks.structured(model, x, target_x=x, beta_range=(10, 1))


def test_explanation_and_retrieval_rate():
    x = _x(3)
    m = torch.rand(3, 1, 8, 8)
    base = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    e = metrics.explanation(x, m, base)
    assert torch.allclose(e, base + m * (x - base))
    assert torch.allclose(metrics.explanation(x, m), m * x)
    with pytest.raises(ValueError, match="0, 1"):
        metrics.explanation(x, m * 3)
    model = _net()
    probs = metrics.explanation_probs(model, x, m, base)
    with torch.no_grad():
        assert torch.allclose(probs, F.softmax(model(base + m * (x - base)), 1))
    full = metrics.retrieval_rate(model, x, model(x).argmax(1), torch.ones(3, 1, 8, 8))
    assert torch.equal(full, torch.ones(3))  # the whole image keeps the prediction
    wrong = metrics.get("retrieval_rate")(model, x, (model(x).argmax(1) + 1) % 4, torch.ones(3, 1, 8, 8))
    assert torch.equal(wrong, torch.zeros(3))


def test_p2_postprocess_modes():
    h = torch.randn(2, 3, 4, 4)
    mm = attributions.postprocess(h, "minmax")
    a = h.mean(1, keepdim=True)
    lo = a.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = a.flatten(1).max(1).values.view(-1, 1, 1, 1)
    assert torch.allclose(mm, (a - lo) / (hi - lo))
    assert mm.amin() == 0 and mm.amax() == 1
    assert torch.allclose(attributions.postprocess(h, "mean"), a)
    p = attributions.postprocess(h, "p99")
    assert p.max() <= 1 and p.min() >= 0


def test_adversarial_training_is_ce_at_the_attack():
    model, x = _net(), _x(4)
    y = torch.tensor([0, 1, 2, 3])
    meth = methods.get("at_pgd", eps=4, alpha=1, steps=3)
    torch.manual_seed(3)
    loss, logs = meth(model, x, y)
    torch.manual_seed(3)
    adv = attacks.pgd(model, x, y, 4, alpha=1, steps=3)
    assert torch.allclose(loss, F.cross_entropy(model(adv), y))
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    f_loss, _ = methods.get("at_fgsm", eps=2)(model, x, y)
    assert torch.allclose(f_loss, F.cross_entropy(model(attacks.fgsm(model, x, y, 2)), y))
    assert loss > F.cross_entropy(model(x), y)
    with pytest.raises(ValueError, match="eps"):
        methods.get("at_pgd", eps=300)
