"""P3's one-step perturbations: each is the maximiser of delta^T g - R*(delta) for its penalty R
(checked against random feasible perturbations and a numeric optimiser on small vectors), the
group mode's per-group norms, the elastic closed form and Prop. 4 (weighted l2)."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from robust_saliency.adversarial_training import MODES, group_norms, one_step_perturbation

RNG = np.random.default_rng(0)


def _g(shape=(1, 2, 4, 4), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_l1_is_the_best_point_of_the_linf_box():
    g, eps = _g(), 0.1
    d = one_step_perturbation(g, "l1", eps)
    best = float((d * g).sum())
    assert best == pytest.approx(eps * float(g.abs().sum()))  # = R(g) = eps ||g||_1
    for _ in range(200):
        r = torch.from_numpy(RNG.uniform(-eps, eps, g.shape))
        assert float((r * g).sum()) <= best + 1e-12


def test_group_norms_are_eps_along_the_group_gradient():
    g, eps, s = _g((2, 3, 4, 6)), 0.3, 2
    d = one_step_perturbation(g, "group", eps, group_size=s)
    assert torch.allclose(group_norms(d, s), torch.full_like(d, eps))
    # inside each group d is parallel to g: cosine 1
    dg = (d * g).view(2, 3, 2, s, 3, s).sum((3, 5))
    gn = group_norms(g, s).view(2, 3, 2, s, 3, s)[:, :, :, 0, :, 0]
    assert torch.allclose(dg, eps * gn)
    best = float((d * g).sum())
    for _ in range(200):  # random points of the product of group balls never do better
        r = torch.from_numpy(RNG.normal(size=g.shape))
        r = r / group_norms(r, s) * eps * torch.from_numpy(RNG.uniform(0, 1, g.shape[:2] + (2, 1, 3, 1))) \
            .expand(2, 3, 2, s, 3, s).reshape(g.shape)
        assert float((r * g).sum()) <= best + 1e-12
    with pytest.raises(ValueError, match="group_size"):
        one_step_perturbation(g, "group", eps, group_size=4)  # 4 does not divide 6
    zero = one_step_perturbation(torch.zeros(1, 1, 2, 2), "group", eps, group_size=2)
    assert torch.equal(zero, torch.zeros(1, 1, 2, 2))


def _pq(z, e1, e2):
    """P3 Prop. 3: the conjugate of e1 |x| + e2 x^2, elementwise."""
    return np.where(np.abs(z) > e1, (np.abs(z) - e1) ** 2 / (4 * e2), 0.0)


def test_elastic_maximises_against_its_conjugate_numerically():
    g = _g((1, 6)).numpy()[0]
    e1, e2 = 0.2, 0.7
    d = one_step_perturbation(torch.from_numpy(g)[None], "elastic", e1, eps2=e2).numpy()[0]
    assert np.allclose(d, e1 * np.sign(g) + 2 * e2 * g)

    def neg(v):
        return -(v @ g - _pq(v, e1, e2).sum())

    res = minimize(neg, np.zeros_like(g), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000})
    assert np.allclose(res.x, d, atol=1e-4)
    # Fenchel-Young equality: the value at the maximiser is R(g) = e1 ||g||_1 + e2 ||g||^2
    assert -neg(d) == pytest.approx(e1 * np.abs(g).sum() + e2 * (g ** 2).sum())
    for _ in range(200):
        assert -neg(d + RNG.normal(scale=0.3, size=g.shape)) <= -neg(d) + 1e-12


def test_weighted_l2_is_prop4_with_p3s_weights():
    g = _g((2, 1, 3, 3))
    a = torch.rand((2, 1, 3, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 0.5
    d = one_step_perturbation(g, "weighted_l2", eps, attention=a)
    unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    amax = a.flatten(1).amax(1).view(-1, 1, 1, 1)
    assert torch.allclose(d, (eps - 2 * eps * a) * unit)  # cub_train.py's, the default
    text = one_step_perturbation(g, "weighted_l2", eps, attention=a, weighted_form="text")
    assert torch.allclose(text, (eps * amax - 2 * eps * a) * unit)
    # Prop. 4: for R(u) = sum_i w_i u_i^2 the maximiser of delta^T u - sum_i delta_i^2 / (4 w_i)
    # is 2 w u; P3's code uses w = eps (1 - 2 A) / 2 on the unit gradient u
    w = (eps * (1 - 2 * a) / 2)[0].flatten().numpy()
    u = unit[0].flatten().numpy()
    pos = w > 1e-3
    wp, up = w[pos], u[pos]
    res = minimize(lambda v: -(v @ up - (v ** 2 / (4 * wp)).sum()), np.zeros_like(up), method="BFGS",
                   options={"gtol": 1e-12})
    assert np.allclose(res.x, d[0].flatten().numpy()[pos], atol=1e-6)


def test_bad_arguments_name_themselves():
    g = _g()
    with pytest.raises(ValueError, match="mode"):
        one_step_perturbation(g, "linf", 0.1)
    with pytest.raises(ValueError, match="eps2"):
        one_step_perturbation(g, "elastic", 0.1)
    with pytest.raises(ValueError, match="attention"):
        one_step_perturbation(g, "weighted_l2", 0.1)
    with pytest.raises(ValueError, match="attention"):
        one_step_perturbation(g, "weighted_l2", 0.1, attention=torch.rand(3, 3))
    with pytest.raises(ValueError, match="eps"):
        one_step_perturbation(g, "l1", -1.0)
    assert MODES == ("l1", "l2", "group", "elastic", "weighted_l2")


def test_l2_is_the_best_point_of_the_l2_ball():
    g, eps = _g((3, 2, 4, 4)), 0.4
    d = one_step_perturbation(g, "l2", eps)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((3,), eps, dtype=torch.float64))
    best = (d * g).flatten(1).sum(1)
    assert torch.allclose(best, eps * g.flatten(1).norm(dim=1))  # = R(g) = eps ||g||_2
    for _ in range(200):
        r = torch.from_numpy(RNG.normal(size=g.shape))
        r = r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * float(RNG.uniform())
        assert ((r * g).flatten(1).sum(1) <= best + 1e-12).all()
    assert torch.equal(one_step_perturbation(torch.zeros(1, 3), "l2", eps), torch.zeros(1, 3))


# ---------------------------------------------------------------------------- the training method
import torch.nn as nn  # noqa: E402

from robust_saliency import methods, models  # noqa: E402


def _reference_x_adv(net, img, label, mode, training, eps, eps2, s):
    """P3's released imagenet_train.py (its perturbation block) transcribed for any image size,
    on a model that takes the perturbed space directly."""
    criterion = nn.CrossEntropyLoss()
    n, c, h, w = img.shape

    def gnorm(t):  # the code's reshape/permute for 14x14 groups on 224x224, with s x s on h x w
        sq = (t ** 2).reshape(-1, c, h // s, s, w // s, s).permute(0, 1, 2, 4, 3, 5).flatten(4, 5).sum(-1)
        sq = sq.unsqueeze(-1).unsqueeze(-1).repeat(1, 1, 1, 1, s, s)
        return torch.sqrt(sq).permute(0, 1, 2, 4, 3, 5).reshape(-1, c, h, w)

    if mode == "l1" and training == "fast":
        x_adv = img.detach().clone().requires_grad_(True)
        grad = torch.autograd.grad(criterion(net(x_adv), label) * n, x_adv)[0]
        return x_adv + eps * grad.sign()
    if mode == "l1":
        x_adv = img.detach().clone()
        for _ in range(7):
            x_adv = x_adv.detach().clone().requires_grad_(True)
            grad = torch.autograd.grad(criterion(net(x_adv), label) * n, x_adv)[0]
            x_adv = x_adv + 0.3 * eps * grad.sign()
            x_adv = img + (x_adv - img).clamp(-eps, eps)
        return x_adv
    if mode == "elastic" and training == "fast":
        x_adv = img.detach().clone().requires_grad_(True)
        grad = torch.autograd.grad(criterion(net(x_adv), label) * n, x_adv)[0]
        return img + eps * grad.sign() + 2 * eps2 * grad
    if mode == "elastic":
        x_adv = img.detach().clone()
        for _ in range(7):
            x_adv = x_adv.detach().clone().requires_grad_(True)
            loss = criterion(net(x_adv), label) * n
            loss = loss - 1 / (4 * eps2) * torch.square(torch.norm(torch.relu(torch.abs(x_adv - img) - eps), p=2))
            grad = torch.autograd.grad(loss, x_adv)[0]
            grad = grad / torch.linalg.norm(grad.detach().flatten(1), ord=2, dim=1)[:, None, None, None]
            x_adv = x_adv + 0.3 * grad
        return x_adv
    if training == "fast":
        org = img.detach().clone().requires_grad_(True)
        org_grad = torch.autograd.grad(criterion(net(org), label), org)[0]
        return img + eps * (org_grad / gnorm(org_grad))
    delta = torch.zeros_like(img)
    for _ in range(7):
        delta = delta.detach().requires_grad_(True)
        org_grad = torch.autograd.grad(criterion(net(img + delta), label), delta)[0]
        org_grad = org_grad / torch.linalg.norm(org_grad.detach().flatten(1), ord=2, dim=1)[:, None, None, None]
        delta = delta + org_grad
        norm = gnorm(delta)
        delta = delta.detach() * torch.where(norm > eps, eps / norm, torch.ones_like(norm))
    return img + delta


@pytest.mark.parametrize("mode", ["l1", "elastic", "group"])
@pytest.mark.parametrize("training", ["fast", "iterative"])
@pytest.mark.parametrize("clip", [False, True])
def test_matches_transcription_of_released_training_step(mode, training, clip):
    """The released step (no clip), on images near 0 and 1 where x + delta leaves [0, 1]: ours
    equals it by default and equals its clamp to [0, 1] with ``clip=True``."""
    torch.manual_seed(0)
    net = models.build("small_cnn", 3, (2, 4, 4), width=3).double().eval()  # no Normalize: z = x
    img = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    img = torch.where(img < 0.5, 0.01 * img, 1 - 0.01 * img)  # every entry within 0.005 of 0 or 1
    label = torch.tensor([0, 1, 2])
    eps, eps2 = 0.02, 0.005
    meth = methods.get("norm_regularized_at", mode=mode, training=training, eps=eps, eps2=eps2, group_size=2,
                       clip=clip)
    want = _reference_x_adv(net, img, label, mode, training, eps, eps2, 2)
    assert want.min() < 0 and want.max() > 1  # the clip binds here
    got = meth.attack(net, img, label)
    assert torch.allclose(got, want.clamp(0, 1) if clip else want, atol=1e-10)
    loss, _ = meth(net, img, label)
    assert torch.allclose(loss, nn.functional.cross_entropy(net(got), label))
    if not clip:
        assert torch.allclose(loss, nn.functional.cross_entropy(net(want), label))


def test_normalized_space_perturbs_z_and_clips_pixels_on_request():
    torch.manual_seed(0)
    std = [0.2, 0.4]
    net = models.build("small_cnn", 3, (2, 4, 4), width=3, mean=[0.5, 0.5], std=std).double().eval()
    x = 0.3 + 0.4 * torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    x_adv = methods.get("norm_regularized_at", mode="l1", eps=0.1).attack(net, x, y)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xr), y, reduction="sum"), xr)
    sigma = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    assert torch.allclose(x_adv - x, 0.1 * sigma * g.sign())  # eps 0.1 of z = 0.1 sigma of x
    pix = methods.get("norm_regularized_at", mode="l1", eps=0.1, space="pixel").attack(net, x, y)
    assert torch.allclose(pix - x, 0.1 * g.sign())
    big = methods.get("norm_regularized_at", mode="l1", eps=5.0, clip=True).attack(net, x, y)
    assert big.min() >= 0 and big.max() <= 1
    loose = methods.get("norm_regularized_at", mode="l1", eps=5.0).attack(net, x, y)  # the code's: no clip
    assert torch.allclose(loose - x, 5.0 * sigma * g.sign())
    with pytest.raises(ValueError, match="clip"):
        methods.get("norm_regularized_at", mode="l1", clip="yes")
    with pytest.raises(ValueError, match="mode"):
        methods.get("norm_regularized_at", mode="linf")
    with pytest.raises(ValueError, match="one-step only"):
        methods.get("norm_regularized_at", mode="weighted_l2", training="iterative")


def test_weighted_l2_matches_transcription_of_cub_train():
    """P3's cub_train.py step: img += 2 eps g / ||g|| * (0.5 - seg), g the gradient of the mean CE,
    seg the raw gaze map (ToTensor of the uint8 map: max below 1 for most images), no clip."""
    torch.manual_seed(0)
    net = models.build("small_cnn", 3, (2, 4, 4), width=3).double().eval()  # no Normalize: z = x
    img = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    label = torch.tensor([0, 1, 2])
    seg = 0.7 * torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert seg.flatten(1).amax(1).max() < 0.7  # a raw gaze map whose maximum is not 1
    eps = 2.0
    org = img.clone().requires_grad_(True)
    (org_grad,) = torch.autograd.grad(nn.functional.cross_entropy(net(org), label), org)
    org_grad = org_grad / torch.norm(org_grad, p=2, dim=[1, 2, 3], keepdim=True)
    want = img + 2 * eps * org_grad * (0.5 - seg)
    assert want.min() < 0 or want.max() > 1  # the code does not clip, nor do we by default
    meth = methods.get("norm_regularized_at", mode="weighted_l2", eps=eps, space="pixel")
    assert meth.extras == ("gaze",)
    got = meth.attack(net, img, label, seg)
    assert torch.allclose(got, want, atol=1e-12)
    as_uint8 = (seg * 255).round().to(torch.uint8)  # uint8 gaze maps are divided by 255
    assert torch.allclose(meth.attack(net, img, label, as_uint8), meth.attack(net, img, label, as_uint8 / 255.0))
    loss, _ = meth(net, img, label, gaze=seg)
    assert torch.allclose(loss, nn.functional.cross_entropy(net(want), label))
    # the supplement's form (eps max A - 2 eps A) differs unless max A = 1
    text = methods.get("norm_regularized_at", mode="weighted_l2", eps=eps, space="pixel", weighted_form="text")
    amax = seg.flatten(1).amax(1).view(-1, 1, 1, 1)
    assert torch.allclose(text.attack(net, img, label, seg) - img, (eps * amax - 2 * eps * seg) * org_grad)
    assert not torch.allclose(text.attack(net, img, label, seg), got)
    unit = seg / amax
    assert torch.allclose(text.attack(net, img, label, unit), meth.attack(net, img, label, unit))
    clipped = methods.get("norm_regularized_at", mode="weighted_l2", eps=eps, space="pixel", clip=True)
    assert torch.allclose(clipped.attack(net, img, label, seg), want.clamp(0, 1))
    with pytest.raises(ValueError, match="attention"):
        meth(net, img, label)
    with pytest.raises(ValueError, match="weighted_form"):
        methods.get("norm_regularized_at", mode="weighted_l2", weighted_form="paper")
    plain = methods.get("norm_regularized_at", mode="l2", eps=eps, space="pixel")
    assert plain.extras == ()
    assert torch.allclose(plain.attack(net, img, label) - img, eps * org_grad)


def test_training_loop_passes_each_batchs_extras():
    """The loop gives a method with ``extras`` the rows of the extra that belong to its batch."""
    from robust_saliency import data, training

    x = torch.rand(20, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    ds = data.ArrayDataset(x, torch.arange(20) % 3, num_classes=3, classes=("a", "b", "c"),
                           extras={"gaze": 2 * x[:, :1]})
    seen = []

    class Recorder(training.CE):
        name, extras = "recorder", ("gaze",)

        def __call__(self, model, x, y, gaze):
            seen.append(bool(torch.equal(gaze, 2 * x[:, :1])))
            return super().__call__(model, x, y)

    torch.manual_seed(0)
    net = models.build("small_cnn", 3, (2, 4, 4), width=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=6)
    training.train(net, Recorder(), loader, num_epochs=2, cache_dir=None, progress=False)
    assert len(seen) == 8 and all(seen)  # 4 batches x 2 epochs, shuffled, each with its own rows
    torch.manual_seed(0)
    wl2 = methods.get("norm_regularized_at", mode="weighted_l2", eps=0.1)
    training.train(models.build("small_cnn", 3, (2, 4, 4), width=3), wl2, loader, num_epochs=1,
                   cache_dir=None, progress=False)
    with pytest.raises(ValueError, match="extras"):
        training.train(net, methods.get("norm_regularized_at", mode="weighted_l2", attention_key="masks"),
                       loader, num_epochs=1, cache_dir=None, progress=False)
    with pytest.raises(ValueError, match="augment"):
        training.train(net, wl2, loader, num_epochs=1, cache_dir=None, progress=False, augment="crop_flip")


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = models.build("small_cnn", 3, (2, 4, 4), width=3).double().eval()
    x = 0.3 + 0.4 * torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return net, x, torch.tensor([0, 1, 2])


def _sum_ce_grad(net, x, y):
    xr = x.clone().requires_grad_(True)
    return torch.autograd.grad(nn.functional.cross_entropy(net(xr), y, reduction="sum"), xr)[0]


def test_mifgsm_variant_is_dong_2018_and_one_step_is_fgsm():
    net, x, y = _tiny()
    eps = 0.05
    one = methods.get("norm_regularized_at", mode="l1", training="mifgsm", mi_steps=1, eps=eps).attack(net, x, y)
    assert torch.allclose(one - x, eps * _sum_ce_grad(net, x, y).sign())
    got = methods.get("norm_regularized_at", mode="l1", training="mifgsm", mi_steps=3, decay=0.9, eps=eps).attack(net, x, y)
    d, mom = torch.zeros_like(x), torch.zeros_like(x)
    for _ in range(3):  # MI-FGSM, written out
        g = _sum_ce_grad(net, x + d, y)
        mom = 0.9 * mom + g / g.abs().sum((1, 2, 3), keepdim=True)
        d = (d + eps / 3 * mom.sign()).clamp(-eps, eps)
    assert torch.allclose(got, x + d)
    with pytest.raises(ValueError, match="mifgsm"):
        methods.get("norm_regularized_at", mode="group", training="mifgsm")


def test_iterative_from_the_one_step_solution():
    net, x, y = _tiny()
    warm = methods.get("norm_regularized_at", mode="l1", training="iterative", eps=0.03, init="one_step").attack(net, x, y)
    assert (warm - x).abs().max() <= 0.03 + 1e-12
    kw = {"mode": "elastic", "training": "iterative", "eps": 0.01, "eps2": 0.05}
    zero = methods.get("norm_regularized_at", **kw).attack(net, x, y)
    warm = methods.get("norm_regularized_at", init="one_step", **kw).attack(net, x, y)
    start = one_step_perturbation(_sum_ce_grad(net, x, y), "elastic", 0.01, eps2=0.05)
    assert not torch.allclose(zero, warm)
    # 7 unit-norm steps of 0.3 move at most 2.1 (L2) away from the start
    assert float((warm - x - start).flatten(1).norm(dim=1).max()) <= 2.1 + 1e-9


@pytest.mark.parametrize("mode", ["l1", "group"])
def test_free_training_moves_the_kept_perturbation_by_its_gradient(mode):
    net, x, y = _tiny()
    eps = 0.04
    meth = methods.get("norm_regularized_at", mode=mode, training="free", eps=eps, replays=3, group_size=2)
    assert meth.replays == 3 and methods.get("norm_regularized_at").replays == 1
    loss0, _ = meth(net, x, y)
    assert torch.allclose(loss0, nn.functional.cross_entropy(net(x), y))  # starts at delta = 0
    loss0.backward()
    g = meth._delta.grad.clone()
    loss1, _ = meth(net, x, y)
    want = one_step_perturbation(g, mode, eps, group_size=2)
    assert torch.allclose(meth._delta.detach(), want)  # one step from 0 stays in the ball
    assert torch.allclose(loss1, nn.functional.cross_entropy(net(x + want), y))
    loss1.backward()
    meth(net, x, y)
    if mode == "l1":
        assert meth._delta.abs().max() <= eps + 1e-12
    else:
        assert group_norms(meth._delta.detach(), 2).max() <= eps + 1e-12
    state = meth.state_dict()
    other = methods.get("norm_regularized_at", mode=mode, training="free", eps=eps, replays=3, group_size=2)
    other.load_state_dict(state)
    assert torch.equal(other.state_dict()["delta"], state["delta"])
    with pytest.raises(ValueError, match="free"):
        methods.get("norm_regularized_at", mode="elastic", training="free")


def test_gaussian_noise_augmentation():
    net, x, y = _tiny()
    torch.manual_seed(5)
    loss, _ = methods.get("gaussian_noise", sigma=16)(net, x, y)
    torch.manual_seed(5)
    noisy = (x + torch.randn_like(x) * 16 / 255).clamp(0, 1)
    assert torch.allclose(loss, nn.functional.cross_entropy(net(noisy), y))
    with pytest.raises(ValueError, match="sigma"):
        methods.get("gaussian_noise", sigma=300)
