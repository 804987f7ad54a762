"""Tests of robust_saliency.attacks: hand-computed cases, eps-ball membership, loss increase."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_saliency import attacks

TOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is fastest and avoids oversubscription on shared CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _linear_two_class(d=12):
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2)).double()
    with torch.no_grad():
        w = torch.linspace(-1, 1, 2 * d, dtype=torch.float64).view(2, d)
        w[1] = w[1].flip(0) * 0.7 + 0.05  # no equal entries between the rows
        model[1].weight.copy_(w)
        model[1].bias.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on three noisy prototypes (2x4x4 images), plus held-out data."""
    torch.manual_seed(0)
    protos = 0.5 + 0.15 * torch.randn(3, 2, 4, 4)

    def sample(n):
        y = torch.randint(0, 3, (n,))
        return (protos[y] + 0.25 * torch.randn(n, 2, 4, 4)).clamp(0, 1), y

    model = nn.Sequential(nn.Flatten(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = sample(64)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    x, y = sample(64)
    return model.eval(), x, y


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def _linf(a, b):
    return (a - b).flatten(1).abs().amax(1)


def _l2(a, b):
    return (a - b).flatten(1).norm(dim=1)


def test_fgsm_hand_computed_linear():
    d = 12
    model = _linear_two_class(d)
    w = model[1].weight.detach()
    x = torch.full((2, 1, 3, 4), 0.5, dtype=torch.float64)
    x[1, 0, 0] = torch.tensor([0.0, 0.01, 1.0, 0.99], dtype=torch.float64)  # clipping cases
    y = torch.tensor([0, 1])
    eps = 0.03
    out = attacks.fgsm(model, x, y, eps=eps)
    # d CE / dx = sum_j p_j w_j - w_y = p_wrong (w_wrong - w_true): sign(w_wrong - w_true)
    direction = torch.stack([(w[1] - w[0]).sign(), (w[0] - w[1]).sign()]).view_as(x)
    expected = (x + eps * direction).clamp(0, 1)
    assert torch.equal(out, expected)
    assert torch.equal(attacks.get("fgsm", eps=eps)(model, x, y), expected)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_ball_range_and_loss_increase(trained, norm):
    model, x, y = trained
    eps = 8 / 255 if norm == "linf" else 0.5
    x_adv = attacks.pgd(model, x, y, eps=eps, steps=10, norm=norm, seed=0)
    dist = _linf(x_adv, x) if norm == "linf" else _l2(x_adv, x)
    assert (dist <= eps + TOL).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    clean = _loss(model, x, y)
    adv = _loss(model, x_adv, y)
    assert (adv >= clean - 1e-5).all() and adv.mean() > clean.mean() + 0.1
    assert (adv > clean).float().mean() > 0.9
    # beats random noise of the same size
    torch.manual_seed(1)
    if norm == "linf":
        noise = eps * torch.randint(0, 2, x.shape).float().mul(2).sub(1)
    else:
        z = torch.randn_like(x)
        noise = eps * z / z.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    rand = _loss(model, (x + noise).clamp(0, 1), y)
    assert adv.mean() > rand.mean() + 0.05
    assert (adv > rand).float().mean() > 0.9


def test_pgd_l2_projection_when_steps_overshoot(trained):
    model, x, y = trained
    x_adv = attacks.pgd(model, x, y, eps=0.1, alpha=1.0, steps=3, norm="l2", random_start=False)
    assert (_l2(x_adv, x) <= 0.1 + TOL).all() and (_l2(x_adv, x) > 0.05).any()


def test_pgd_reduces_accuracy(trained):
    model, x, y = trained
    with torch.no_grad():
        clean_acc = (model(x).argmax(1) == y).float().mean()
    atk = attacks.get("pgd", norm="linf", eps=0.2, steps=20)
    with torch.no_grad():
        adv_acc = (model(atk(model, x, y)).argmax(1) == y).float().mean()
    assert clean_acc > 0.9 and adv_acc < clean_acc - 0.3


def test_mifgsm_ball_and_loss(trained):
    model, x, y = trained
    eps = 8 / 255
    x_adv = attacks.get("mifgsm", eps=eps, steps=5)(model, x, y)
    assert (_linf(x_adv, x) <= eps + TOL).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _loss(model, x_adv, y).mean() > _loss(model, x, y).mean()


def test_mifgsm_one_step_is_fgsm(trained):
    model, x, y = trained
    assert torch.allclose(attacks.mifgsm(model, x, y, eps=0.05, steps=1), attacks.fgsm(model, x, y, eps=0.05))


@pytest.mark.parametrize("name", attacks.NAMES)
def test_no_grad_leak_and_mode_kept(trained, name):
    model, x, y = trained
    kw = {"eps": 4 / 255}
    if name != "fgsm":
        kw["steps"] = 2
    atk = attacks.get(name, **kw)
    model.train()
    atk(model, x, y)
    assert model.training
    model.eval()
    x_in = x.clone().requires_grad_(True)
    with torch.no_grad():  # attacks work even when called under no_grad
        out = atk(model, x_in, y)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert x_in.grad is None and not out.requires_grad


def test_pgd_determinism_with_seed(trained):
    model, x, y = trained
    a = attacks.pgd(model, x, y, eps=8 / 255, steps=3, seed=5)
    b = attacks.pgd(model, x, y, eps=8 / 255, steps=3, seed=5)
    c = attacks.pgd(model, x, y, eps=8 / 255, steps=3, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for norm in ("linf", "l2"):  # random start alone stays in the ball
        x0 = attacks.pgd(model, x, y, eps=0.1, steps=1, alpha=1e-9, norm=norm, seed=1)
        dist = _linf(x0, x) if norm == "linf" else _l2(x0, x)
        assert (dist <= 0.1 + TOL).all() and (dist > 0).all()


def test_y_none_attacks_the_prediction(trained):
    model, x, _ = trained
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert torch.equal(attacks.fgsm(model, x, None, eps=0.05), attacks.fgsm(model, x, pred, eps=0.05))


def test_registry_and_bad_parameters():
    assert set(attacks.NAMES) == {"pgd", "fgsm", "mifgsm"}
    atk = attacks.get("pgd", norm="linf", eps=8 / 255, steps=20)
    assert atk.name == "pgd" and atk.kwargs["eps"] == 8 / 255
    with pytest.raises(ValueError, match="attack='cw'"):
        attacks.get("cw")
    with pytest.raises(ValueError, match="norm='l1'"):
        attacks.get("pgd", norm="l1", eps=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        attacks.get("fgsm", eps=0.1, steps=3)
    with pytest.raises(ValueError, match="eps"):
        attacks.get("pgd")
    with pytest.raises(ValueError, match="eps"):
        attacks.get("fgsm", eps=-0.1)
    with pytest.raises(ValueError, match="steps"):
        attacks.get("pgd", eps=0.1, steps=0)
