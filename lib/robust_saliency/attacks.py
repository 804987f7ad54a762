"""Adversarial attacks (SPEC section 7): ``get(name, **kw) -> fn(model, x, y) -> x_adv``.

Conventions: ``x`` in [0, 1]; ``eps`` and ``alpha`` are in input units (e.g. ``8/255``), as in
``get("pgd", norm="linf", eps=8/255, steps=20)``.  The loss is the cross-entropy of the label
``y`` (``y=None``: the model's prediction on x), maximised.  Gradients are taken with
``torch.autograd.grad`` w.r.t. the input only, so the parameters' ``.grad`` are untouched; the
model's train/eval mode is left as it is (evaluate in eval mode).  Every iterate is projected
onto the eps-ball around x and onto [0, 1].  The result is detached.
"""
import inspect

import torch
import torch.nn.functional as F

_NORMS = ("linf", "l2")


def _labels(model, x, y):
    if y is not None:
        return y
    with torch.no_grad():
        return model(x).argmax(1)


def _loss_grad(model, x_adv, y):
    """d/dx of sum_i CE(model(x_i), y_i), without touching any parameter's .grad."""
    with torch.enable_grad():
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
    return g


def _per_sample(v, x):
    return v.view(-1, *([1] * (x.dim() - 1)))


def _l2(v):
    return v.flatten(1).norm(dim=1)


def _project(x_adv, x, eps, norm):
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        scale = (eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _per_sample(scale, x)
    return (x + delta).clamp(0.0, 1.0)


def _generator(seed, device):
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def _check(eps, steps=None, norm=None):
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0 (input units, e.g. 8/255); got eps={eps}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a positive int; got steps={steps}")
    if norm is not None and norm not in _NORMS:
        raise ValueError(f"norm={norm!r} is not known; accepted: {_NORMS}")


def fgsm(model, x, y, eps):
    """FGSM (Goodfellow 2015): x_adv = clip_[0,1](x + eps * sign(grad_x CE(f(x), y)))."""
    _check(eps)
    x = x.detach()
    y = _labels(model, x, y)
    return (x + eps * _loss_grad(model, x, y).sign()).clamp(0.0, 1.0).detach()


def pgd(model, x, y, eps, alpha=None, steps=20, norm="linf", random_start=True, seed=None):
    """PGD (Madry 2018) maximising CE over the eps-ball; P1, P2, P4 robust accuracy.

    Update: linf: x_{t+1} = P(x_t + alpha * sign(grad_x CE(f(x_t), y)));
    l2: x_{t+1} = P(x_t + alpha * g / ||g||_2), g = grad_x CE per sample;
    P projects onto {||x' - x||_p <= eps} then clips to [0, 1].  ``alpha`` defaults to
    2.5 * eps / steps.  Random start: x_0 = P(x + delta), delta uniform in the linf cube, or
    uniform in the l2 ball (gaussian direction, radius eps * U^(1/d)); the draw uses its own
    generator when ``seed`` is given (else the global RNG).
    """
    _check(eps, steps, norm)
    if alpha is None:
        alpha = 2.5 * eps / steps
    elif not alpha > 0:
        raise ValueError(f"alpha must be > 0; got alpha={alpha}")
    x = x.detach()
    y = _labels(model, x, y)
    x_adv = x.clone()
    if random_start and eps > 0:
        gen = _generator(seed, x.device)
        if norm == "linf":
            u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
            delta = (2 * u - 1) * eps
        else:
            d = x[0].numel()
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
            r = torch.rand(x.shape[0], generator=gen, dtype=x.dtype, device=x.device) ** (1.0 / d)
            delta = z / _per_sample(_l2(z).clamp_min(1e-12), x) * _per_sample(eps * r, x)
        x_adv = _project(x + delta, x, eps, norm)
    for _ in range(int(steps)):
        g = _loss_grad(model, x_adv, y)
        if norm == "linf":
            step = g.sign()
        else:
            step = g / _per_sample(_l2(g).clamp_min(1e-12), x)
        x_adv = _project(x_adv + alpha * step, x, eps, norm)
    return x_adv.detach()


def mifgsm(model, x, y, eps, alpha=None, steps=10, decay=1.0):
    """MI-FGSM (Dong 2018): momentum iterative FGSM maximising CE in the linf eps-ball.

    Update: g_{t+1} = mu * g_t + grad_x CE(f(x_t), y) / ||grad_x CE(f(x_t), y)||_1 (per sample),
    x_{t+1} = P(x_t + alpha * sign(g_{t+1})); ``decay`` is mu (1.0), ``alpha`` defaults to eps / steps; P projects onto the linf eps-ball
    around x and clips to [0, 1].  No random start.
    """
    _check(eps, steps)
    if alpha is None:
        alpha = eps / steps
    x = x.detach()
    y = _labels(model, x, y)
    x_adv = x.clone()
    momentum = torch.zeros_like(x)
    for _ in range(int(steps)):
        g = _loss_grad(model, x_adv, y)
        l1 = g.abs().flatten(1).sum(1).clamp_min(1e-12)
        momentum = decay * momentum + g / _per_sample(l1, x)
        x_adv = _project(x_adv + alpha * momentum.sign(), x, eps, "linf")
    return x_adv.detach()


# Registry.  Later issues add here: targeted_attribution (P1 AAM, Dombrowski 2019),
# structured (P2), topk (Ghorbani 2019; P2, P3), untargeted_pgd (P2, 40 iterations).
_REGISTRY = {"pgd": pgd, "fgsm": fgsm, "mifgsm": mifgsm}
NAMES = tuple(_REGISTRY)


def get(name, **kw):
    """``fn(model, x, y) -> x_adv`` for attack ``name`` with hyperparameters ``kw`` bound."""
    if name not in _REGISTRY:
        raise ValueError(f"attack={name!r} is not known; accepted: {sorted(_REGISTRY)}")
    fn = _REGISTRY[name]
    params = dict(list(inspect.signature(fn).parameters.items())[3:])
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise ValueError(f"attack {name!r} got unknown hyperparameters {unknown}; "
                         f"accepted: {sorted(params)}")
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in kw]
    if missing:
        raise ValueError(f"attack {name!r} needs hyperparameters {missing}")
    if "norm" in kw or "eps" in kw or "steps" in kw:
        _check(kw.get("eps", 0.0), kw.get("steps"), kw.get("norm"))

    def attack(model, x, y=None):
        return fn(model, x, y, **kw)

    attack.__name__ = name
    attack.__doc__ = fn.__doc__
    attack.name, attack.kwargs = name, dict(kw)
    return attack
