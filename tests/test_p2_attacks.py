"""``attacks.topk`` and ``attacks.structured`` in their "as P2's released code" settings, against an
independent transcription of the released code of P2 (RelEx, github.com/JBNU-VL/RelEx):
``models/adversarial/targeted/unstructured.py`` (the top-k attack) and ``.../structured.py``
(the structured attack), with P2's ``SimpleGradient`` as the saliency method.

The transcriptions below follow the released code line by line, one image at a time (batch of
one), with the normalization aside: they work on [0, 1] pixels, so the image bounds are [0, 1] and
the budgets / steps are ours (0-255 units) divided by 255.  Every model is float64, so that the
batched (ours) and one-image-at-a-time (transcription) computations agree to rounding, and the
tests check that no comparison hinges on a near tie (top-k boundaries, best-share ranking).
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_saliency import attacks, models

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (conftest.py)

ATOL = 1e-6
K = 26  # 10% of the 256 pixels of a 16x16 image
TOPK_STEPS = 20  # P2's code: 100; reduced, the transcription runs as many
STRUCTURED_STEPS = 20  # P2's code: 1500; likewise


# ----------------------------------------------------------------------------- the released code
def _replace_children(model, kinds, make):
    """Every child module of one of ``kinds`` -> ``make()``, in place, recursively (the released
    ``util.replace_activation2*`` functions)."""
    for name, child in model.named_children():
        if isinstance(child, kinds):
            setattr(model, name, make())
        else:
            _replace_children(child, kinds, make)


def _to_softplus(model, beta):
    """``util.replace_activation2softplus``: every nn.ReLU / nn.Softplus child -> nn.Softplus(beta)."""
    _replace_children(model, (nn.ReLU, nn.Softplus), lambda: nn.Softplus(beta=beta))


def _to_relu(model):
    """``util.replace_activation2relu``: every nn.Softplus child -> nn.ReLU."""
    _replace_children(model, nn.Softplus, nn.ReLU)


def _simple_gradient(net, x, target_cls=None, sec_ord=False):
    """P2's ``SimpleGradient.forward``: (d net(x)[:, c] / dx, softmax(net(x))), c the class the
    (current) net predicts at x when not given."""
    if target_cls is None:
        target_cls = net(x).max(1)[1].item()
    if not sec_ord:
        x.requires_grad_(True)
    outputs = net(x)
    sal = torch.autograd.grad(outputs[:, target_cls].sum(), x, create_graph=sec_ord)[0]
    return sal, F.softmax(net(x), 1)


def _topk_gap(v, k):
    """The gap between the k-th and (k+1)-th largest entries of v (no tie at the top-k boundary)."""
    top = torch.topk(v.flatten(), k + 1).values
    return (top[k - 1] - top[k]).item() / top[0].item()


def _released_topk(model, x, eps, k, num_iters, alpha, beta=30.0):
    """``unstructured.py``'s top-k attack (measurement 'intersection', beta_growth False) on one
    image x (1, C, H, W); eps and alpha in [0, 1] pixel units.  Returns a dict: ``adv`` (what
    forward returns), ``min_criterion``, ``iterates`` (every _adv_x), ``criteria``, ``kept``
    (label of each iterate == target_cls), ``share`` (the mass share on the clean top-k of each
    iterate's ReLU map), ``share0`` (that of x), ``gap`` (the smallest relative top-k gap seen)."""
    sal_method = copy.deepcopy(model)  # replace_* work in place: keep the caller's model intact

    def normalize(sal):
        sal_norm = torch.abs(sal).sum(dim=1, keepdim=True)
        return sal_norm / sal_norm.sum()

    sal, orig_accu = _simple_gradient(sal_method, x.detach().clone())
    sal = normalize(sal).detach()
    orig_sal = sal = sal.flatten()
    target_cls = orig_accu.max(1)[1].detach()
    _to_softplus(sal_method, beta)
    topk_mask = torch.zeros_like(sal).flatten()
    _, topk_indices = torch.topk(sal, k)
    topk_mask[topk_indices] = 1.0
    gaps = [_topk_gap(orig_sal, k)]
    out = {"share0": (orig_sal * topk_mask).sum().item(), "iterates": [], "criteria": [], "kept": [],
           "share": []}

    def check_measure(adv_x):
        _to_relu(sal_method)
        adv_sal, adv_accu = _simple_gradient(sal_method, adv_x, target_cls)
        adv_sal = normalize(adv_sal)
        kept = bool(adv_accu.max(1)[1] == target_cls)
        out["kept"].append(kept)
        out["share"].append((adv_sal.flatten() * topk_mask).sum().item())
        if kept:
            gaps.append(_topk_gap(adv_sal.detach(), k))
            _, top_indices = torch.topk(adv_sal.flatten(), k)
            _, orig_top_indices = torch.topk(orig_sal, k)
            return float(len(np.intersect1d(top_indices.cpu().numpy(),
                                            orig_top_indices.cpu().numpy()))) / k
        return 1.0

    min_criterion = 1.0
    upper, lower = x + eps, x - eps  # inf_norm_bounds
    _adv_x = x.detach().clone().requires_grad_(True)
    adv_x = None
    for _ in range(num_iters):
        _to_softplus(sal_method, beta)  # perturb(..., beta=30.)
        adv_sal = _simple_gradient(sal_method, _adv_x, target_cls, sec_ord=True)[0]
        loss = (torch.flatten(normalize(adv_sal)) * topk_mask.clone().detach()).sum()
        perturbation = torch.sign(-torch.autograd.grad(loss, _adv_x)[0])
        step = _adv_x.data + alpha * perturbation  # _step
        _adv_x.data = torch.min(torch.max(step, lower), upper).clamp(0.0, 1.0)
        out["iterates"].append(_adv_x.detach().clone())
        criterion = check_measure(_adv_x.detach())
        out["criteria"].append(criterion)
        if criterion < min_criterion:
            min_criterion = criterion
            adv_x = _adv_x.clone().detach()
            if min_criterion == 0:
                break
    if min_criterion == 1.0:
        adv_x = _adv_x.detach().clone()
    out.update(adv=adv_x, min_criterion=min_criterion, gap=min(gaps))
    return out


def _released_structured(model, orig_x, target_x, lr, num_iters, beta_range=(10.0, 100.0),
                         factors=(1e11, 1e6), ours_target=False, ours_p0=False, ours_class=False):
    """``structured.py``'s ``forward`` on one image (1, C, H, W); ``lr`` in [0, 1] pixel units.
    Returns (adv_x (detached), the class explained at each iteration, the clean class of
    ``model``).  The ``ours_*`` switches replace one step of the released code by what
    ``attacks.structured`` does instead: the target map on ``model`` itself (not the softplus-1000
    net), p(x) on ``model`` itself, and the map of the clean class of ``model`` at every iteration
    (not of the class the current softplus net predicts at adv_x)."""
    sal_method = copy.deepcopy(model)

    def normalize(sal):
        sal_norm = torch.abs(sal).sum(dim=1)
        return sal_norm / sal_norm.sum()

    _to_softplus(sal_method, 1000.0)
    target_sal, _ = _simple_gradient(model if ours_target else sal_method, target_x.detach().clone())
    target_sal_norm = normalize(target_sal).detach()
    _, orig_accu = _simple_gradient(model if ours_p0 else sal_method, orig_x.detach().clone())
    orig_accu = orig_accu.detach()
    with torch.no_grad():
        clean_cls = model(orig_x).argmax(1).item()
    adv_x = orig_x.detach().clone().requires_grad_(True)  # _reset
    optimizer = torch.optim.Adam([adv_x], lr=lr)
    classes = []
    for i in range(num_iters):
        current_beta = beta_range[0] * (beta_range[1] / beta_range[0]) ** (i / num_iters)
        _to_softplus(sal_method, current_beta)
        with torch.no_grad():
            classes.append(sal_method(adv_x).max(1)[1].item())
        adv_sal, adv_accu = _simple_gradient(sal_method, adv_x, clean_cls if ours_class else None,
                                             sec_ord=True)
        loss = (factors[0] * F.mse_loss(normalize(adv_sal), target_sal_norm)
                + factors[1] * F.mse_loss(adv_accu, orig_accu))
        loss.backward(retain_graph=True)
        optimizer.step()
        optimizer.zero_grad()
        # image_clamp(adv_x.data, bounds): its clamped copy is discarded -- nothing to do
    _to_relu(sal_method)
    return adv_x.detach(), classes, clean_cls


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def relu_net():
    torch.manual_seed(0)
    return models.build("small_cnn", 10, (3, 16, 16), activation="relu").double().eval()


@pytest.fixture(scope="module")
def elu_net(relu_net):
    """The same net with nn.ELU activations: neither the released code's replace_activation2softplus
    (ReLU / Softplus only) nor our ``_smooth_model`` (ReLU only) touches it."""
    net = copy.deepcopy(relu_net)
    _replace_children(net, nn.ReLU, nn.ELU)
    assert not any(isinstance(m, (nn.ReLU, nn.Softplus)) for m in net.modules())
    return net


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return (torch.rand(6, 3, 16, 16, generator=g, dtype=torch.float64),
            torch.rand(6, 3, 16, 16, generator=g, dtype=torch.float64))


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.fixture(scope="module")
def boundary_images(relu_net, images):
    """Images just on their clean class's side of a decision boundary (bisection on the segment
    between two images of different predicted classes, backed off by 1e-4 of the segment), so
    that small perturbations change the label."""
    x, _ = images
    pred = _pred(relu_net, x)
    pairs = [(i, j) for i in range(len(x)) for j in range(len(x)) if pred[i] != pred[j]][:6]
    assert len(pairs) >= 4
    out = []
    for i, j in pairs:
        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2
            if _pred(relu_net, (x[i] + mid * (x[j] - x[i]))[None]).item() == pred[i]:
                lo = mid
            else:
                hi = mid
        out.append(x[i] + (lo - 1e-4) * (x[j] - x[i]))
    xb = torch.stack(out)
    with torch.no_grad():
        top2 = relu_net(xb).topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1] > 1e-8).all()  # the clean label itself is not a rounding tie
    return xb


def _topk_ours(model, x, eps, steps=TOPK_STEPS, **kw):
    call = dict(eps=eps, steps=steps, k=K, attribution="grad", alpha=attacks.P2_TOPK_STEP,
                softplus_beta=30, select="intersection", keep="best_or_last")
    return attacks.topk(model, x, **{**call, **kw})


def _topk_ref(model, x, eps, steps=TOPK_STEPS):
    refs = [_released_topk(model, x[i:i + 1], eps / 255, K, steps, attacks.P2_TOPK_STEP / 255)
            for i in range(len(x))]
    for r in refs:  # no top-k boundary within rounding of a tie: the comparison is well posed
        assert r["gap"] > 1e-9
    return refs


# ----------------------------------------------------------------------------- top-k
@pytest.mark.parametrize("eps", [2, 8])
def test_topk_matches_the_released_code(relu_net, images, eps):
    """Batched ``topk(..., select="intersection", keep="best_or_last")`` == the released top-k
    attack run one image at a time, per image (atol 1e-6)."""
    x, _ = images
    ours = _topk_ours(relu_net, x, eps)
    refs = _topk_ref(relu_net, x, eps)
    for i, r in enumerate(refs):
        torch.testing.assert_close(ours[i:i + 1], r["adv"], atol=ATOL, rtol=0)
    assert any(r["min_criterion"] < 1 for r in refs)  # not trivial: iterates did beat x
    assert (ours - x).abs().amax() <= eps / 255 + 1e-12 and ours.min() >= 0 and ours.max() <= 1
    # the same call with the default select/keep, on one image: the per-image result is batch-independent
    torch.testing.assert_close(_topk_ours(relu_net, x[3:4], eps), ours[3:4], atol=ATOL, rtol=0)


def test_topk_share_best_differs_from_the_released_rule(relu_net, images):
    """``select="share", keep="best"`` returns, per image, the label-kept iterate with the lowest
    top-k mass share (on the ReLU model) -- or x -- which differs from the released code's
    smallest-intersection iterate on some images."""
    x, _ = images
    eps = 2
    ours_share = _topk_ours(relu_net, x, eps, select="share", keep="best")
    refs = _topk_ref(relu_net, x, eps)
    differ = 0
    for i, r in enumerate(refs):
        best, best_share = x[i:i + 1], r["share0"]
        for it, share, kept in zip(r["iterates"], r["share"], r["kept"]):
            if kept and share < best_share:
                best, best_share = it, share
        values = [s for s, kept in zip(r["share"], r["kept"]) if kept] + [r["share0"]]
        distinct = sorted({round(s, 14) for s in values})
        assert len(distinct) < 2 or distinct[1] - distinct[0] > 1e-10  # no near tie for the best
        torch.testing.assert_close(ours_share[i:i + 1], best, atol=ATOL, rtol=0)
        differ += not torch.allclose(ours_share[i:i + 1], r["adv"], atol=ATOL, rtol=0)
    assert differ >= 1


def test_topk_best_or_last_returns_the_last_iterate_when_nothing_beats_x(relu_net, images, boundary_images):
    """Where no iterate beats x (criterion 1 at every iterate), ``keep="best_or_last"`` returns
    the last iterate as the released code does -- whatever its label -- and ``keep="best"`` x."""
    cases = [(images[0], 0.1, 3),        # a tiny budget: the top-k set never changes
             (boundary_images, 2, 5)]   # near a decision boundary: the label flips at every iterate
    flipped = 0
    for x, eps, steps in cases:
        ours = _topk_ours(relu_net, x, eps, steps=steps)
        best = _topk_ours(relu_net, x, eps, steps=steps, keep="best")
        refs = _topk_ref(relu_net, x, eps, steps=steps)
        stuck = [i for i, r in enumerate(refs) if r["min_criterion"] == 1.0]
        assert stuck, "the case must contain an image where no iterate beats x"
        for i, r in enumerate(refs):
            torch.testing.assert_close(ours[i:i + 1], r["adv"], atol=ATOL, rtol=0)
        for i in stuck:
            last = refs[i]["iterates"][-1]
            assert len(refs[i]["iterates"]) == steps
            torch.testing.assert_close(ours[i:i + 1], last, atol=ATOL, rtol=0)
            assert (last - x[i:i + 1]).abs().amax() > 0.5 * eps / 255  # the last iterate is not x
            assert torch.equal(best[i:i + 1], x[i:i + 1])
            flipped += int(_pred(relu_net, ours[i:i + 1]).item() != _pred(relu_net, x[i:i + 1]).item())
    assert flipped >= 1  # some returned last iterate does not keep the label (as the released code)


# ----------------------------------------------------------------------------- structured
def _structured_ours(model, x, xt, alpha, steps=STRUCTURED_STEPS, **kw):
    call = dict(target_x=xt, steps=steps, alpha=alpha, attribution="grad", keep="last", clip=False)
    return attacks.structured(model, x, **{**call, **kw})


@pytest.mark.parametrize("alpha", [attacks.P2_STRUCTURED_LR, 2.0])
def test_structured_matches_the_released_code_where_the_differences_cannot_matter(elu_net, images, alpha):
    """On a net with neither ReLU nor Softplus modules (ELU): the released code's activation
    swaps are no-ops and ours differentiates the model itself, so the target map, p(x) and the
    (absent) beta schedule coincide; the class explained coincides as long as the prediction at
    adv_x stays the clean one (checked).  Then ``structured(..., keep="last", clip=False)`` ==
    the released code, per image (atol 1e-6)."""
    x, xt = images
    ours = _structured_ours(elu_net, x[:4], xt[:4], alpha)
    for i in range(4):
        ref, classes, clean = _released_structured(elu_net, x[i:i + 1], xt[i:i + 1], alpha / 255,
                                                   STRUCTURED_STEPS)
        assert set(classes) == {clean}
        torch.testing.assert_close(ours[i:i + 1], ref, atol=ATOL, rtol=0)
    assert (ours - x[:4]).abs().amax() > 0.5 * STRUCTURED_STEPS * alpha / 255  # Adam moved the images


def test_structured_explains_the_clean_class_not_the_current_prediction(elu_net, images):
    """The released code explains, at each iteration, the class the current net predicts at adv_x;
    ours the clean prediction.  Where the prediction changes during the iterations the results
    differ; switching that one step of the transcription to ours restores equality."""
    x, xt = images
    alpha = 8.0
    ours = _structured_ours(elu_net, x[:4], xt[:4], alpha)
    changed = 0
    for i in range(4):
        ref, classes, clean = _released_structured(elu_net, x[i:i + 1], xt[i:i + 1], alpha / 255,
                                                   STRUCTURED_STEPS)
        fixed, _, _ = _released_structured(elu_net, x[i:i + 1], xt[i:i + 1], alpha / 255,
                                           STRUCTURED_STEPS, ours_class=True)
        torch.testing.assert_close(ours[i:i + 1], fixed, atol=ATOL, rtol=0)
        if set(classes) != {clean}:
            changed += 1
            assert (ours[i:i + 1] - ref).abs().amax() > 1e-3
        else:
            torch.testing.assert_close(ours[i:i + 1], ref, atol=ATOL, rtol=0)
    assert changed >= 1


@pytest.mark.parametrize("alpha", [attacks.P2_STRUCTURED_LR, 8.0])
def test_structured_relu_equals_the_released_code_up_to_the_listed_differences(relu_net, images, alpha):
    """On a ReLU net, ``structured(..., keep="last", clip=False)`` == the transcription with three
    steps switched to ours (target map on the ReLU model, p(x) on the ReLU model, the clean class
    explained), per image (atol 1e-6): the softplus copy, the beta schedule 10 -> 100, the loss,
    Adam and the last-iterate rule are the released code's.  At P2's learning rate, the target map
    is the difference that matters: the transcription with only that step switched stays within
    1e-5 of ours (p(x) on ReLU vs softplus-1000 moves the result by ~1e-7 here), while the
    released code itself differs by more."""
    x, xt = images
    ours = _structured_ours(relu_net, x[:4], xt[:4], alpha)
    lr = alpha / 255
    for i in range(4):
        xi, ti = x[i:i + 1], xt[i:i + 1]
        mod, _, _ = _released_structured(relu_net, xi, ti, lr, STRUCTURED_STEPS, ours_target=True,
                                         ours_p0=True, ours_class=True)
        torch.testing.assert_close(ours[i:i + 1], mod, atol=ATOL, rtol=0)
        if alpha == attacks.P2_STRUCTURED_LR:
            ref, classes, clean = _released_structured(relu_net, xi, ti, lr, STRUCTURED_STEPS)
            assert set(classes) == {clean}
            target_only, _, _ = _released_structured(relu_net, xi, ti, lr, STRUCTURED_STEPS,
                                                     ours_target=True)
            assert (ours[i:i + 1] - target_only).abs().amax() < 1e-5
            assert (ours[i:i + 1] - ref).abs().amax() > 1e-5


@pytest.mark.parametrize("alpha", [attacks.P2_STRUCTURED_LR, 8.0])
def test_structured_with_the_released_reference_and_class_equals_the_released_code(relu_net, images, alpha):
    """With ``reference_beta=1000`` (target map and p(x) from the softplus-1000 copy) and
    ``map_class="current"`` (each iteration explains what the softplus net predicts at adv_x),
    ``structured(..., keep="last", clip=False)`` == the released code itself on a ReLU net, per
    image (atol 1e-6), the images whose prediction moves during the iterations included."""
    x, xt = images
    ours = _structured_ours(relu_net, x[:4], xt[:4], alpha, reference_beta=1000.0, map_class="current")
    for i in range(4):
        ref, _, _ = _released_structured(relu_net, x[i:i + 1], xt[i:i + 1], alpha / 255, STRUCTURED_STEPS)
        torch.testing.assert_close(ours[i:i + 1], ref, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="map_class"):
        _structured_ours(relu_net, x[:1], xt[:1], alpha, map_class="target")


def test_structured_last_unclipped_vs_the_defaults(relu_net, images, boundary_images):
    """``keep="last", clip=False`` returns the last Adam iterate (== the transcription, and the
    schedule depends on ``steps``: steps S and S + 1 give different results), which leaves [0, 1]
    and may change the label; the defaults (``keep="best"``, ``clip=True``, eps 255) return an
    iterate in [0, 1] with the clean label."""
    xb = boundary_images
    _, xt = images
    xt = xt[:len(xb)]
    alpha = 8.0
    last = _structured_ours(relu_net, xb, xt, alpha)
    for i in range(len(xb)):
        mod, _, _ = _released_structured(relu_net, xb[i:i + 1], xt[i:i + 1], alpha / 255,
                                         STRUCTURED_STEPS, ours_target=True, ours_p0=True,
                                         ours_class=True)
        torch.testing.assert_close(last[i:i + 1], mod, atol=ATOL, rtol=0)
    assert last.min() < 0 and last.max() > 1
    pred0 = _pred(relu_net, xb)
    assert (_pred(relu_net, last) != pred0).any()
    defaults = attacks.structured(relu_net, xb, target_x=xt, steps=STRUCTURED_STEPS, alpha=alpha)
    assert defaults.min() >= 0 and defaults.max() <= 1
    assert torch.equal(_pred(relu_net, defaults), pred0)
    assert (defaults - xb).abs().amax() > 0  # it did move
    longer = _structured_ours(relu_net, xb[:1], xt[:1], alpha, steps=STRUCTURED_STEPS + 1)
    assert not torch.allclose(longer, last[:1], atol=ATOL, rtol=0)
    # keep="last" with the projection: the last iterate projected at every step, in [0, 1]
    clipped = _structured_ours(relu_net, xb, xt, alpha, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


# ----------------------------------------------------------------------------- validation
def test_invalid_select_and_keep_are_rejected(relu_net, images):
    x, xt = images
    x, xt = x[:1], xt[:1]
    with pytest.raises(ValueError, match="select"):
        attacks.topk(relu_net, x, eps=2, steps=1, k=K, select="bad")
    with pytest.raises(ValueError, match="keep"):
        attacks.topk(relu_net, x, eps=2, steps=1, k=K, keep="last")
    with pytest.raises(ValueError, match="keep"):
        attacks.structured(relu_net, x, target_x=xt, steps=1, keep="best_or_last")
