"""Tests of robust_saliency.attacks: hand-computed cases, eps-ball membership, loss increase."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_saliency import attacks

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (conftest.py)


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
    eps = 8  # 0-255 units
    out = attacks.fgsm(model, x, y, eps=eps)
    # d CE / dx = sum_j p_j w_j - w_y = p_wrong (w_wrong - w_true): sign(w_wrong - w_true)
    direction = torch.stack([(w[1] - w[0]).sign(), (w[0] - w[1]).sign()]).view_as(x)
    expected = (x + 8 / 255 * direction).clamp(0, 1)
    assert torch.equal(out, expected)
    assert torch.equal(attacks.get("fgsm", eps=eps)(model, x, y), expected)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_ball_range_and_loss_increase(trained, norm):
    model, x, y = trained
    eps = 8 / 255 if norm == "linf" else 0.5  # input units
    x_adv = attacks.pgd(model, x, y, eps=8 if norm == "linf" else 0.5, steps=10, norm=norm, seed=0)
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
    atk = attacks.get("pgd", norm="linf", eps=0.2 * 255, steps=20)
    with torch.no_grad():
        adv_acc = (model(atk(model, x, y)).argmax(1) == y).float().mean()
    assert clean_acc > 0.9 and adv_acc < clean_acc - 0.3


def test_mifgsm_ball_and_loss(trained):
    model, x, y = trained
    x_adv = attacks.get("mifgsm", eps=8, steps=5)(model, x, y)
    assert (_linf(x_adv, x) <= 8 / 255 + TOL).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _loss(model, x_adv, y).mean() > _loss(model, x, y).mean()


def test_mifgsm_one_step_is_fgsm(trained):
    model, x, y = trained
    assert torch.allclose(attacks.mifgsm(model, x, y, eps=12, steps=1), attacks.fgsm(model, x, y, eps=12))


@pytest.mark.parametrize("name", attacks.NAMES)
def test_no_grad_leak_and_mode_kept(trained, name):
    model, x, y = trained
    kw = {"eps": 4}
    if name != "fgsm":
        kw["steps"] = 2
    atk = attacks.get(name, **kw)
    call = {"target_x": x.flip(0)} if name == "structured" else {}  # the other image's map
    model.train()
    atk(model, x, y, **call)
    assert model.training
    model.eval()
    x_in = x.clone().requires_grad_(True)
    with torch.no_grad():  # attacks work even when called under no_grad
        out = atk(model, x_in, y, **call)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert x_in.grad is None and not out.requires_grad


def test_pgd_determinism_with_seed(trained):
    model, x, y = trained
    a = attacks.pgd(model, x, y, eps=8, steps=3, seed=5)
    b = attacks.pgd(model, x, y, eps=8, steps=3, seed=5)
    c = attacks.pgd(model, x, y, eps=8, steps=3, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for norm, eps in (("linf", 0.1 * 255), ("l2", 0.1)):  # random start alone stays in the ball
        x0 = attacks.pgd(model, x, y, eps=eps, steps=1, alpha=1e-9, norm=norm, seed=1)
        dist = _linf(x0, x) if norm == "linf" else _l2(x0, x)
        assert (dist <= 0.1 + TOL).all() and (dist > 0).all()


def test_y_none_attacks_the_prediction(trained):
    model, x, _ = trained
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert torch.equal(attacks.fgsm(model, x, None, eps=12), attacks.fgsm(model, x, pred, eps=12))


def test_registry_and_bad_parameters():
    assert set(attacks.NAMES) == {"pgd", "fgsm", "mifgsm", "targeted_attribution", "topk", "untargeted_pgd",
                                   "structured"}
    atk = attacks.get("pgd", norm="linf", eps=8, steps=20)
    assert atk.name == "pgd" and atk.kwargs["eps"] == 8
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


@pytest.mark.parametrize("name", attacks.NAMES)
def test_linf_budgets_are_in_0_255_units(trained, name):
    """Units (``units``): eps=8 means 8/255 for every linf attack; above 255 is rejected by unit."""
    model, x, y = trained
    kw = {} if name == "fgsm" else {"steps": 3}
    call = {"target_x": x.flip(0), "alpha": 8} if name == "structured" else {}  # Adam steps of 8/255
    x_adv = attacks.get(name, eps=8, **kw)(model, x, y, **call)
    dist = _linf(x_adv, x)
    assert (dist <= 8 / 255 + TOL).all() and (dist > 4 / 255).any()
    for bad in (256, 1e9, float("nan"), -1):
        with pytest.raises(ValueError, match=r"eps=.*\[0, 255\] in 0-255 pixel units"):
            attacks.get(name, eps=bad, **kw)
    with pytest.raises(ValueError, match=r"eps=300.*0-255 pixel units"):
        getattr(attacks, name)(model, x, y, eps=300, **kw)  # the functions check too


def test_l2_budgets_are_in_input_units(trained):
    model, x, y = trained
    x_adv = attacks.pgd(model, x, y, eps=0.5, steps=5, norm="l2", seed=0)
    assert (_l2(x_adv, x) <= 0.5 + TOL).all() and (_l2(x_adv, x) > 0.25).any()
    with pytest.raises(ValueError, match=r"eps=-0.5.*input units"):
        attacks.get("pgd", norm="l2", eps=-0.5)



# ----------------------------------------------------------------------------- attribution attacks
import copy  # noqa: E402

from robust_saliency import attributions, data, metrics, models  # noqa: E402

ATTRIBUTION_ATTACKS = ("targeted_attribution", "topk")


def _digits_model(activation):
    """small_cnn trained 2 epochs on 256 digits (16x16), Adam lr 3e-3; 32 held-out images."""
    train = data.load("digits", "train", n=256)
    test = data.load("digits", "test", n=32)
    torch.manual_seed(0)
    model = models.build("small_cnn", train.num_classes, train.in_shape, activation=activation, beta=3.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for i in range(0, len(train), 32):
            opt.zero_grad()
            F.cross_entropy(model(train.x[i:i + 32]), train.y[i:i + 32]).backward()
            opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval(), test.x


@pytest.fixture(scope="module")
def digits_softplus():
    return _digits_model("softplus")


@pytest.fixture(scope="module")
def digits_relu():
    return _digits_model("relu")


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _frame(side, width):
    """The frame map written out by hand: ones on a border of ``width`` pixels."""
    h = torch.zeros(side, side)
    h[:width], h[-width:], h[:, :width], h[:, -width:] = 1.0, 1.0, 1.0, 1.0
    return h


def _frame_loss(model, x, h_t):
    """||h(x) - h_t||^2 per sample, h = sum_c |grad g_pred| / per-image max (independent of postprocess)."""
    xr = x.detach().requires_grad_(True)
    out = model(xr)
    (g,) = torch.autograd.grad(out.gather(1, _pred(model, x).view(-1, 1)).sum(), xr)
    a = g.abs().sum(1)
    a = a / a.flatten(1).amax(1).view(-1, 1, 1)
    return (a - h_t).pow(2).flatten(1).sum(1)


def _topk_share(model, x, x_ref, k):
    """Share of sum_c |grad g_pred| on the top-k pixels of the clean map (Ghorbani 2019)."""
    pred = _pred(model, x_ref)

    def mass(xx):
        return attributions.grad(model, xx, pred).abs().sum(1).flatten(1)

    m0 = mass(x_ref)
    idx = m0.topk(k, dim=1).indices
    m = mass(x)
    return m.gather(1, idx).sum(1) / m.sum(1)


def test_frame_target_sizes():
    assert torch.equal(attacks.frame_target(32, 32)[0, 0], _frame(32, 5))
    assert torch.equal(attacks.frame_target(16, 16)[0, 0], _frame(16, 3))  # 2.5 rounds up
    big = attacks.frame_target(224, 224)
    assert big.shape == (1, 1, 224, 224) and big.sum() == 224 ** 2 - (224 - 70) ** 2  # 35 = 5 * 7
    assert torch.equal(attacks.frame_target(8, 8)[0, 0], _frame(8, 1))
    with pytest.raises(ValueError, match="frame_width"):
        attacks.frame_target(8, 8, frame_width=0)


@pytest.mark.parametrize("name", ATTRIBUTION_ATTACKS)
@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_attribution_attacks_ball_range_labels(name, activation, digits_softplus, digits_relu):
    model, x = digits_softplus if activation == "softplus" else digits_relu
    x_adv = attacks.get(name, eps=8, steps=8)(model, x)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (_linf(x_adv, x) <= 8 / 255 + TOL).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(_pred(model, x_adv), _pred(model, x))  # label kept for every sample
    assert (_linf(x_adv, x) > 0).float().mean() > 0.5  # and most samples did move


def test_targeted_attribution_moves_map_to_frame(digits_softplus):
    model, x = digits_softplus
    h_t = _frame(16, 3)
    clean = _frame_loss(model, x, h_t)
    x_adv = attacks.targeted_attribution(model, x, eps=8, steps=20)
    adv = _frame_loss(model, x_adv, h_t)
    # every kept iterate has a lower objective than x, whose logit term is 0: the map term drops
    assert (adv <= clean + 1e-4).all()
    assert adv.mean() < clean.mean() - 3.0 and (adv < clean).float().mean() > 0.9
    # and it beats random sign noise of the same size
    torch.manual_seed(2)
    noise = (8 / 255) * torch.randint(0, 2, x.shape).float().mul(2).sub(1)
    x_rand = (x + noise).clamp(0, 1)
    assert adv.mean() < _frame_loss(model, x_rand, h_t).mean() - 2.0
    # the reference code's Adam update also works
    x_adam = attacks.targeted_attribution(model, x, eps=8, steps=20, update="adam")
    assert (_linf(x_adam, x) <= 8 / 255 + TOL).all()
    assert torch.equal(_pred(model, x_adam), _pred(model, x))
    assert _frame_loss(model, x_adam, h_t).mean() < clean.mean() - 3.0


def test_targeted_attribution_one_step_is_the_stated_update(digits_softplus):
    """steps=1: the result is x or x_1 = clip(x - alpha * sign(grad L(x))), L computed here in float64."""
    model, x = digits_softplus
    model = copy.deepcopy(model).double()
    x = x.double()
    alpha, w_p = 2 / 255, 0.1  # input units; the attack takes eps 4 and alpha 2 in 0-255 units
    pred = _pred(model, x)
    h_t = _frame(16, 3).double()
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (g,) = torch.autograd.grad(out.gather(1, pred.view(-1, 1)).sum(), xr, create_graph=True)
    a = g.abs().sum(1)
    a = a / a.flatten(1).amax(1).view(-1, 1, 1)
    loss = (a - h_t).pow(2).flatten(1).sum(1) + w_p * (out - out.detach()).pow(2).sum(1)
    (d,) = torch.autograd.grad(loss.sum(), xr)
    x1 = (x - alpha * d.sign()).clamp(0, 1)
    x_adv = attacks.targeted_attribution(model, x, eps=4, steps=1, alpha=2, w_p=w_p)
    is_x1 = (x_adv - x1).flatten(1).abs().amax(1) < 1e-12
    is_x = (x_adv - x).flatten(1).abs().amax(1) == 0
    assert (is_x1 | is_x).all() and is_x1.float().mean() > 0.8


def test_topk_reduces_topk_mass(digits_softplus):
    model, x = digits_softplus
    k = 26  # ~10% of 16x16
    x_adv = attacks.topk(model, x, eps=8, steps=20, k=k)
    clean = _topk_share(model, x, x, k)
    adv = _topk_share(model, x_adv, x, k)
    assert (adv <= clean + 1e-5).all()
    assert adv.mean() < clean.mean() - 0.05 and (adv < clean).float().mean() > 0.9
    pred = _pred(model, x)
    m0 = attributions.grad(model, x, pred).abs().sum(1)
    m1 = attributions.grad(model, x_adv, pred).abs().sum(1)
    assert metrics.topk_intersection(m1, m0, k).mean() < 0.9
    # k as a fraction: the same count
    assert torch.equal(attacks.topk(model, x[:4], eps=8, steps=3, k=26 / 256),
                       attacks.topk(model, x[:4], eps=8, steps=3, k=26))


def test_relu_model_via_softplus_copy_untouched(digits_relu):
    model, x = digits_relu
    before = copy.deepcopy(model.state_dict())
    h_t = _frame(16, 3)
    clean = _frame_loss(model, x, h_t)
    x_adv = attacks.targeted_attribution(model, x, eps=8, steps=15)
    x_top = attacks.topk(model, x, eps=8, steps=15, k=26)
    # the map of the ReLU model itself moves
    assert (_frame_loss(model, x_adv, h_t) <= clean + 1e-4).all()
    assert _frame_loss(model, x_adv, h_t).mean() < clean.mean() - 1.0
    assert _topk_share(model, x_top, x, 26).mean() < _topk_share(model, x, x, 26).mean() - 0.02
    # the original model is untouched: same weights, ReLU modules, no .grad
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, nn.Softplus) for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ATTRIBUTION_ATTACKS)
def test_attribution_attacks_determinism(name, digits_softplus):
    model, x = digits_softplus
    x = x[:8]
    atk = attacks.get(name, eps=8, steps=3, random_start=True, seed=4)
    a, b = atk(model, x), atk(model, x)
    c = attacks.get(name, eps=8, steps=3, random_start=True, seed=5)(model, x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    d = attacks.get(name, eps=8, steps=3)(model, x)
    torch.manual_seed(1)
    assert torch.equal(d, attacks.get(name, eps=8, steps=3)(model, x))  # no random start


def test_attribution_attacks_target_class_and_map(digits_softplus):
    model, x = digits_softplus
    x = x[:8]
    pred = _pred(model, x)
    kw = {"eps": 4, "steps": 3}
    assert torch.equal(attacks.targeted_attribution(model, x, pred, **kw),
                       attacks.targeted_attribution(model, x, None, **kw))
    frame = attacks.frame_target(16, 16)
    assert torch.equal(attacks.targeted_attribution(model, x, target_map=frame[0, 0], **kw),
                       attacks.targeted_attribution(model, x, **kw))
    other = (pred + 1) % 10  # the map of another class; the label check stays on the prediction
    x_adv = attacks.targeted_attribution(model, x, other, **kw)
    assert torch.equal(_pred(model, x_adv), pred)
    for attribution in ("input_x_grad", "guided_backprop"):
        x_adv = attacks.targeted_attribution(model, x, attribution=attribution, **kw)
        assert torch.equal(_pred(model, x_adv), pred) and (_linf(x_adv, x) <= 4 / 255 + TOL).all()


def test_attribution_attacks_bad_parameters(digits_softplus):
    model, x = digits_softplus
    x = x[:2]
    with pytest.raises(ValueError, match="attribution='deeplift'"):
        attacks.targeted_attribution(model, x, attribution="deeplift", steps=1)
    with pytest.raises(ValueError, match="update='sgd'"):
        attacks.get("targeted_attribution", update="sgd")(model, x)
    with pytest.raises(ValueError, match="target_map"):
        attacks.targeted_attribution(model, x, target_map=torch.ones(5, 5), steps=1)
    with pytest.raises(ValueError, match="w_p"):
        attacks.targeted_attribution(model, x, w_p=-1.0, steps=1)
    with pytest.raises(ValueError, match="k"):
        attacks.topk(model, x, k=0, steps=1)
    with pytest.raises(ValueError, match="k"):
        attacks.topk(model, x, k=1.5, steps=1)
    with pytest.raises(ValueError, match="eps"):
        attacks.get("topk", eps=-1.0)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        attacks.get("topk", w_h=1.0)


# ----------------------------------------------------------------------------- top-k, L2 (P3 B.6)
@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_topk_l2_ball_range_labels_and_share(activation, digits_softplus, digits_relu):
    """norm="l2" (P3 B.6): in the L2 eps-ball (input units) and [0, 1], labels kept, D not above clean."""
    model, x = digits_softplus if activation == "softplus" else digits_relu
    k, eps = 26, 1.0
    x_adv = attacks.topk(model, x, eps=eps, steps=8, k=k, norm="l2")
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (_l2(x_adv, x) <= eps + TOL).all() and (_l2(x_adv, x) > 0.5 * eps).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(_pred(model, x_adv), _pred(model, x))
    clean, adv = _topk_share(model, x, x, k), _topk_share(model, x_adv, x, k)
    assert (adv <= clean + 1e-5).all()
    assert adv.mean() < clean.mean() - 0.02 and (adv < clean).float().mean() > 0.8
    # a different attack from the default linf one
    assert not torch.equal(x_adv, attacks.topk(model, x, eps=8, steps=8, k=k))


@pytest.mark.parametrize("alpha", [0.2, 0.6])  # 0.6 > eps: the step is projected onto the ball
def test_topk_l2_one_step_is_the_stated_update(alpha):
    """steps=1: the result is x_1 = P(x - alpha * g / ||g||_2) (g = grad of D written out here,
    float64, P onto the L2 eps-ball and [0, 1]) where D(x_1) < D(x) and the label is kept, else x."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus(beta=3.0), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 3)).double().eval()
    x = torch.rand(6, 1, 6, 6, dtype=torch.float64) * 0.8 + 0.1
    eps, k = 0.4, 9  # 25% of the 36 pixels
    pred = _pred(model, x)

    def share(xx, idx, create_graph):
        xr = xx if xx.requires_grad else xx.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xr).gather(1, pred.view(-1, 1)).sum(), xr,
                                   create_graph=create_graph)
        m = g.abs().sum(1).flatten(1)
        return m.gather(1, idx).sum(1) / m.sum(1)

    with torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        (g0,) = torch.autograd.grad(model(xr).gather(1, pred.view(-1, 1)).sum(), xr)
        idx = g0.abs().sum(1).flatten(1).topk(k, dim=1).indices
        d0 = share(xr, idx, True)
        (g,) = torch.autograd.grad(d0.sum(), xr)
    delta = -alpha * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    size = delta.flatten(1).norm(dim=1)  # = alpha
    delta = delta * torch.where(size > eps, eps / size, torch.ones_like(size)).view(-1, 1, 1, 1)
    x1 = (x + delta).clamp(0, 1)
    better = (share(x1, idx, False) < d0.detach()) & (_pred(model, x1) == pred)
    expected = torch.where(better.view(-1, 1, 1, 1), x1, x)
    out = attacks.topk(model, x, eps=eps, steps=1, k=k, alpha=alpha, norm="l2")
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert better.all()  # the one step lowers D for every sample here
    assert (_l2(out, x) <= min(alpha, eps) + TOL).all() and (_l2(out, x) > 0.5 * min(alpha, eps)).all()


def test_topk_l2_random_start_registry_and_bad_parameters(digits_softplus):
    model, x = digits_softplus
    x = x[:8]
    atk = attacks.get("topk", norm="l2", eps=0.5, steps=2, k=0.4)  # P3 B.6: k = 40% of the pixels
    out = atk(model, x)
    assert (_l2(out, x) <= 0.5 + TOL).all() and torch.equal(_pred(model, out), _pred(model, x))
    a = attacks.topk(model, x, eps=0.5, steps=2, norm="l2", random_start=True, seed=4)
    b = attacks.topk(model, x, eps=0.5, steps=2, norm="l2", random_start=True, seed=4)
    c = attacks.topk(model, x, eps=0.5, steps=2, norm="l2", random_start=True, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, c) and (_l2(a, x) <= 0.5 + TOL).all()
    assert torch.equal(attacks.topk(model, x, eps=8, steps=2, norm="linf"),
                       attacks.topk(model, x, eps=8, steps=2))  # the default
    with pytest.raises(ValueError, match=r"eps=-1 .*input units"):
        attacks.get("topk", norm="l2", eps=-1)
    with pytest.raises(ValueError, match=r"norm='l1' is not known; accepted: \('linf', 'l2'\)"):
        attacks.get("topk", norm="l1", eps=0.5)
    with pytest.raises(ValueError, match=r"norm='l1' is not known; accepted: \('linf', 'l2'\)"):
        attacks.topk(model, x, norm="l1", steps=1)
