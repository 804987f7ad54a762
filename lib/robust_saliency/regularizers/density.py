"""P4's marginal-density regularizer and its baselines: ``marginal_density`` (P4 Eq. 4-6),
``score_matching`` (Srinivas and Fleuret 2021), ``cure`` (Moosavi-Dezfooli 2019) and
``GroupDRO`` (Sagawa 2020; composed with another method by ``methods``), with the functional terms ``marginal_density_grad`` and
``hessian_trace_estimate``.  Per-sample input gradients are taken as the gradient of the sum
over the batch (exact when samples do not interact: eval mode, or no BatchNorm)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ._checks import _boolean, _choice, _nonneg, _p_norm, _pos, _pos_int
from .base import Regularized
from .terms import _TINY, _f, _logits_and_input_grad, _select

if TYPE_CHECKING:
    from ..training import Method

VARIANTS = ("basic", "stable", "efficient", "basic_max", "random_class")


def _leaf(x):
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _check_classes(classes, n, c):
    if not (torch.is_tensor(classes) and classes.dtype == torch.long and classes.shape == (n,)
            and bool(((classes >= 0) & (classes < c)).all())):
        got = tuple(classes.shape) if torch.is_tensor(classes) else type(classes).__name__
        raise ValueError(f"classes={got} is not accepted; expected a ({n},) LongTensor of class "
                         f"indices in [0, {c})")
    return classes


def _density_grad(model, x, variant, create_graph, classes):
    """(logits, grad_x log sum_i exp g_i(x)) from one forward pass (see ``marginal_density_grad``)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; accepted: {list(VARIANTS)}")
    with torch.enable_grad():
        x = _leaf(x)
        logits = model(x)
        grad = lambda out: torch.autograd.grad(out, x, create_graph=create_graph,  # noqa: E731
                                               retain_graph=True)[0]
        if variant == "basic":  # Eq. 4 as written: overflows once a logit exceeds ~88 (float32)
            num = grad(logits.exp().sum())
            return logits, num / logits.exp().sum(1).view((-1,) + (1,) * (x.dim() - 1))
        if variant == "basic_max":  # Eq. 4 with the usual max-subtraction (exact: eta cancels)
            shifted = (logits - logits.detach().amax(1, keepdim=True)).exp()
            num = grad(shifted.sum())
            return logits, num / shifted.sum(1).view((-1,) + (1,) * (x.dim() - 1))
        n, c = logits.shape
        i = torch.randint(0, c, (n,), device=logits.device) if classes is None else \
            _check_classes(classes, n, c).to(logits.device)
        if variant == "random_class":  # Eq. 5 with log_softmax_i detached: grad g_i alone
            return logits, grad(_select(logits, i))
        log_sm = F.log_softmax(logits, dim=1)
        if variant == "stable":  # Eq. 5: two gradients, then their difference
            return logits, grad(_select(logits, i)) - grad(_select(log_sm, i))
        return logits, grad(_select(logits - log_sm, i))  # Eq. 6: one gradient of the difference


def marginal_density_grad(model: torch.nn.Module, x: torch.Tensor, variant: str = "stable",
                          create_graph: bool = False, classes: torch.Tensor | None = None) -> torch.Tensor:
    """P4 Eq. 4-6: per-sample grad_x log sum_i exp g_i(x) (the log marginal density), shape of x.

    ``variant``: ``"basic"`` (Eq. 4 literally, (sum_i grad exp g_i) / sum_i exp g_i: inf/nan
    once the logits overflow exp), ``"stable"`` (Eq. 5, grad g_i - grad log_softmax_i, two
    gradients) or ``"efficient"`` (Eq. 6, grad (g_i - log_softmax_i), one gradient), with i a
    class per sample drawn uniformly (global torch RNG) unless ``classes`` ((N,) long) is
    given.  g_i - log_softmax_i = logsumexp(g) exactly, so stable and efficient are the exact
    gradient of logsumexp for every i, not approximations.  ``"basic_max"``: Eq. 4 with the
    usual max-subtraction (the "basic implementation with numerical stability" of P4 Fig. 2b),
    (sum_i grad exp(g_i - eta)) / sum_i exp(g_i - eta) with eta = max_i g_i(x) per sample,
    detached (the ratio does not depend on eta, so this is exact), one gradient: the exact
    gradient of logsumexp, finite where basic overflows.

    ``"random_class"`` is NOT the gradient of the marginal density: it is Eq. 5 with a
    stop-gradient on the log_softmax term, i.e. grad_x g_i(x) for the random class i (drawn,
    or fixed by ``classes``, as for stable and efficient): a "random-class InputGrad", a
    labelled sensitivity variant for the only reading of P4 under which the random class
    would matter.  ``create_graph=True`` keeps the result differentiable w.r.t. the weights;
    ``x`` is used as is if it requires grad, else a detached leaf is made.
    """
    return _density_grad(model, x, variant, create_graph, classes)[1]


def _check_noise(v, x, n_noise):
    """``v`` checked for ``n_noise`` draws: shape (n_noise, *x.shape), or x's shape when n_noise is 1."""
    shape = tuple(x.shape)
    stacked = (n_noise,) + shape
    accepted = (shape, stacked) if n_noise == 1 else (stacked,)
    if not torch.is_tensor(v) or tuple(v.shape) not in accepted:
        got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
        expected = " or ".join(str(a) for a in accepted)
        raise ValueError(f"v={got} is not accepted; expected a tensor of shape {expected} "
                         f"((n_noise, *x.shape) with n_noise={n_noise})")
    return v


def _trace_estimate(g0, model, x, y, sigma, v, n_noise=1):
    """(2 / sigma^2) (g_y(x + v) - g_y(x)) per sample, g0 = g_y(x) already computed; for
    ``n_noise`` > 1 the mean over the draws v[j] ((n_noise, *x.shape)), in one forward pass."""
    if v is not None:
        v = _check_noise(v, x, n_noise)
    if n_noise == 1:
        if v is None:
            v = sigma * torch.randn_like(x)
        elif v.dim() == x.dim() + 1:
            v = v[0]
        g1 = model(x + v).gather(1, y.view(-1, 1))[:, 0]
        return 2.0 / sigma ** 2 * (g1 - g0)
    if v is None:
        v = sigma * torch.randn((n_noise,) + tuple(x.shape), dtype=x.dtype, device=x.device)
    g1 = model((x.unsqueeze(0) + v).flatten(0, 1)).gather(1, y.repeat(n_noise).view(-1, 1))[:, 0]
    return (2.0 / sigma ** 2 * (g1.view(n_noise, -1) - g0)).mean(0)


def hessian_trace_estimate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float,
                           v: torch.Tensor | None = None) -> torch.Tensor:
    """Srinivas and Fleuret 2021: tr(H_{g_y}(x)) ~ (2/sigma^2)(g_y(x+v) - g_y(x)), v ~ N(0, sigma^2 I).

    Per sample, shape (N,); one draw of ``v`` per sample (global torch RNG) unless ``v`` (the
    shape of ``x``, the noise itself, not divided by sigma) is given.  ``sigma`` in input units.
    Unbiased up to O(sigma^2) since E[v] = 0 and E[v^T H v] = sigma^2 tr(H); its variance is
    about 4 ||grad g_y||^2 / sigma^2 per draw.  Differentiable w.r.t. the weights.
    """
    if _pos(sigma) is None:
        raise ValueError(f"sigma={sigma!r} is not accepted; expected a finite number > 0 (input units)")
    g0 = model(x).gather(1, y.view(-1, 1))[:, 0]
    return _trace_estimate(g0, model, x, y, float(sigma), v)


class MarginalDensity(Regularized):
    """P4 Eq. 4: CE + lam * mean ||grad_x log sum_i exp g_i(x)||_p (Eq. 5 ``stable``, Eq. 6 ``efficient``).

    The gradient is ``marginal_density_grad`` with ``variant`` (the draw ``classes`` fixes the
    random class of stable, efficient and random_class; basic and basic_max ignore it); the CE
    reuses its forward pass.  basic (Eq. 4 literally), basic_max (Eq. 4 max-subtracted),
    stable and efficient all penalize the gradient of logsumexp(g).  ``variant="random_class"``
    does NOT: it penalizes ||grad_x g_i(x)||_p for a random class i (Eq. 5 with the log_softmax
    term detached, a "random-class InputGrad"), a labelled sensitivity variant, not P4's
    regularizer.
    """

    name = "marginal_density"
    params = {"lam": (0.1, _nonneg), "p": (2.0, _p_norm), "variant": ("stable", _choice(*VARIANTS))}
    draws = ("classes",)

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        logits, g = _density_grad(model, x, self.hparams["variant"], True, classes)
        ce = F.cross_entropy(logits, y)
        norm = torch.linalg.vector_norm(g.flatten(1), ord=self.hparams["p"], dim=1).mean()
        penalty = self.hparams["lam"] * norm
        return ce, penalty, {"ce": _f(ce), "density_grad_norm": _f(norm), "penalty": _f(penalty)}


class ScoreMatching(Regularized):
    """Srinivas and Fleuret 2021 (P4 baseline): CE + lam * mean [tr H + 0.5 ||grad g_y||^2 + tau (tr H)^2].

    H the input Hessian of g_y at x; tr H by ``hessian_trace_estimate``'s finite difference,
    averaged over ``n_noise`` independent draws v ~ N(0, sigma^2 I) per sample and call
    (``sigma`` in input units; Srinivas and Fleuret's reference code uses 10, the default 1 is
    one draw, as before).  The (tr H)^2 term squares that averaged estimate (fewer draws: more
    of its variance enters the square).  The draw ``v`` is the noise itself: the shape of x
    (n_noise 1) or (n_noise, *x.shape).  With n_noise > 1 the noisy copies go through the model
    in one forward pass of n_noise * N samples (BatchNorm in train mode: batch statistics over
    all of them).
    """

    name = "score_matching"
    params = {"lam": (1e-5, _nonneg), "sigma": (0.01, _pos), "tau": (1e-3, _nonneg),
              "n_noise": (1, _pos_int)}
    draws = ("v",)

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        hp = self.hparams
        logits, g = _logits_and_input_grad(model, x, y, create_graph=True)
        ce = F.cross_entropy(logits, y)
        trace = _trace_estimate(logits.gather(1, y.view(-1, 1))[:, 0], model, x.detach(), y,
                                hp["sigma"], v, hp["n_noise"])
        grad_sq = g.pow(2).flatten(1).sum(1)
        score = (trace + 0.5 * grad_sq + hp["tau"] * trace.pow(2)).mean()
        penalty = hp["lam"] * score
        return ce, penalty, {"ce": _f(ce), "trace": _f(trace.mean()), "grad_sq": _f(grad_sq.mean()),
                             "penalty": _f(penalty)}


def _loss_grad(model, x, y):
    """(logits, per-sample CE, grad_x CE) at a fresh leaf x, the gradient with create_graph."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    return logits, loss, g


class Cure(Regularized):
    """Moosavi-Dezfooli 2019 (CURE, its curvature regularizer): CE + lam * mean ||grad l(x+z) - grad l(x)||_2.

    l = per-sample CE, z = h sign(grad l(x)) / ||sign(grad l(x))||_2 (a constant direction,
    ||z||_2 = h).  ``h`` is an L2 norm in input units, so it scales with sqrt(d): the reference
    h = 3 is for CIFAR (3x32x32, d = 3072; 3 / sqrt(3072) = 0.054 per pixel); use about
    3 sqrt(d / 3072) elsewhere.  ``squared=True`` is the paper's squared norm (its released code
    uses the plain norm, as the default here).  Both gradients keep their graph (the model's
    mode is left as is; the released code computes the regularizer in eval mode).
    """

    name = "cure"
    params = {"lam": (4.0, _nonneg), "h": (3.0, _nonneg), "squared": (False, _boolean)}

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """z = h sign(g) / ||sign(g)||_2 per sample (zero where g is zero)."""
        s = g.detach().sign()
        norm = torch.linalg.vector_norm(s.flatten(1), dim=1).clamp_min(_TINY)
        return self.hparams["h"] * s / norm.view((-1,) + (1,) * (g.dim() - 1))

    def terms(self, model: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        logits, loss, g0 = _loss_grad(model, x, y)
        ce = loss.mean()
        _, _, g1 = _loss_grad(model, x.detach() + self.direction(g0), y)
        diff = (g1 - g0).flatten(1)
        curv = diff.pow(2).sum(1) if self.hparams["squared"] else torch.linalg.vector_norm(diff, dim=1)
        curv = curv.mean()
        penalty = self.hparams["lam"] * curv
        return ce, penalty, {"ce": _f(ce), "curvature": _f(curv), "penalty": _f(penalty)}


class GroupDRO(Regularized):
    """Sagawa 2020 (group DRO, Algorithm 1; P4 Table 2): sum_g q_g L_g, L_g the mean per-sample CE
    of group g, composed with an ``inner`` training method.

    CE_g is the mean CE of group g in the batch (``groups``, a training-set extra of group ids
    in [0, n_groups), passed by the training loop).  ``mode="online"`` (Algorithm 1): each call
    sets q_g <- q_g exp(eta CE_g) (detached), renormalized, then uses sum_g q_g CE_g; groups
    absent from the batch have CE_g = 0 (q_g unchanged before renormalization, no
    contribution), as Sagawa's code.  q (float64) is state across steps, kept on the device of
    the losses, so a step makes no host round trip (``state_dict`` / ``load_state_dict`` and
    ``q`` give CPU copies), uniform at construction.  ``mode="balanced"``
    (P4 A.8: "each batch re-weighted to have the same number of samples in each group"): the
    mean over the present groups of CE_g; q is not used.

    ``inner``: None or a built ``Method`` (``methods.get("group_dro", regularizer=name,
    reg_kw=...)`` builds it by name from every training method, adversarial training included).
    The per-sample CE is taken at the inner method's training input: its ``attack`` where it has
    one (adversarial training, IGA), else the clean batch; the inner ``penalty`` (zero for
    adversarial training; its own CE is not added) joins the loss, and its draws can be fixed
    through this method.  ``hparams["regularizer"]`` is the inner method's name and
    ``hparams["reg_kw"]`` its full hparams (defaults included, keys sorted), so equal settings
    share a cache key; both None without one.
    """

    name = "group_dro"
    params = {"n_groups": (4, _pos_int), "eta": (0.01, _nonneg),
              "mode": ("online", _choice("online", "balanced"))}

    def __init__(self, inner: Method | None = None, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {unknown}; accepted: "
                             f"{sorted([*self.params, 'inner'])}")
        super().__init__(**hparams)
        if inner is not None and (not callable(getattr(inner, "terms", None))
                                  or getattr(inner, "name", None) in (None, self.name)):
            raise ValueError(f"group_dro: inner={inner!r} is not accepted; expected None or a "
                             f"training method other than group_dro (methods.get(name, ...))")
        if inner is not None and inner.hparams.get("training") == "free":
            raise ValueError("group_dro: inner norm_regularized_at with training='free' is not "
                             "accepted (its replays carry state across steps); expected 'fast', "
                             "'iterative' or 'mifgsm'")
        self.inner = inner
        self.hparams["regularizer"] = None if inner is None else inner.name
        self.hparams["reg_kw"] = None if inner is None else dict(sorted(inner.hparams.items()))
        k = self.hparams["n_groups"]
        self._q = torch.full((k,), 1.0 / k, dtype=torch.float64)

    @property
    def extras(self) -> tuple[str, ...]:
        """``("groups",)`` and the inner regularizer's extras."""
        return ("groups",) + (tuple(self.inner.extras) if self.inner is not None else ())

    @property
    def draws(self) -> tuple[str, ...]:
        """The inner regularizer's fixable draws."""
        return tuple(self.inner.draws) if self.inner is not None else ()

    @property
    def q(self) -> torch.Tensor:
        """The current group weights (a copy, on the CPU)."""
        return self._q.detach().cpu().clone()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"q": self._q.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        q = torch.as_tensor(state["q"], dtype=torch.float64).detach().cpu().clone()
        if q.shape != self._q.shape:
            raise ValueError(f"group_dro: state q of shape {tuple(q.shape)} is not accepted; expected "
                             f"({self.hparams['n_groups']},)")
        self._q = q

    def group_losses(self, loss: torch.Tensor,
                     groups: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-group mean of ``loss`` (0 where absent), present mask) for (N,) ``groups``.

        No host synchronisation on a GPU: the counts are an ``index_add`` (``bincount`` reads its
        input's range back to the host), and the ids' range is checked on CPU tensors only (on a
        GPU, an id outside [0, n_groups) fails in ``index_add``'s own bounds check)."""
        k = self.hparams["n_groups"]
        if groups is None:
            raise ValueError("group_dro: groups=None is not accepted; expected the (N,) group ids "
                             "(the training set's extra 'groups', passed by the training loop)")
        groups = torch.as_tensor(groups, device=loss.device)
        if groups.shape != loss.shape or groups.dtype.is_floating_point or groups.dtype == torch.bool \
                or groups.numel() and groups.device.type == "cpu" \
                and not bool(((groups >= 0) & (groups < k)).all()):
            got = f"{groups.dtype} {tuple(groups.shape)}" + (
                f" in [{groups.min().item()}, {groups.max().item()}]" if groups.numel() else "")
            raise ValueError(f"group_dro: groups ({got}) is not accepted; expected "
                             f"{tuple(loss.shape)} integer group ids in [0, {k})")
        groups = groups.long()
        counts = loss.new_zeros(k).index_add(0, groups, torch.ones_like(loss))  # exact integers
        sums = loss.new_zeros(k).index_add(0, groups, loss)
        return sums / counts.clamp_min(1), counts > 0

    def _inner_penalty(self, model, x, y, extra, draws):
        if self.inner is None:
            return x.new_zeros(())
        return self.inner.penalty(model, x, y, **{k: extra[k] for k in self.inner.extras}, **draws)

    def penalty(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                groups: torch.Tensor | None = None, **draws: torch.Tensor) -> torch.Tensor:
        """The inner regularizer's weighted penalty (zero without one); q is not updated."""
        self._check_draws(draws)
        extra = {k: draws.pop(k) for k in self.extras[1:] if k in draws}
        return self._inner_penalty(model, x, y, extra, draws)

    def _inputs(self, model, x, y, extra):
        """The batch the per-sample CE is taken at: the inner method's ``attack`` if it has one."""
        attack = getattr(self.inner, "attack", None)
        if attack is None:
            return x
        return attack(model, x, y, *(extra[k] for k in self.inner.extras))

    def terms(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              groups: torch.Tensor | None = None,
              **draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        extra = {k: draws.pop(k) for k in self.extras[1:] if k in draws}
        logits = model(self._inputs(model, x, y, extra))
        loss = F.cross_entropy(logits, y, reduction="none")
        loss_g, present = self.group_losses(loss, groups)
        if self.hparams["mode"] == "online":
            step = self.hparams["eta"] * loss_g.detach().double()
            self._q = torch.softmax(self._q.to(step.device).log() + step, 0)  # q exp(eta CE_g), renormalized
            weights = self._q
        else:
            weights = present.double() / present.sum()
        dro = (weights.to(loss.dtype) * loss_g).sum()
        penalty = self._inner_penalty(model, x, y, extra, draws)
        logs = {"ce": _f(loss.mean()), "dro_loss": _f(dro), "worst_group_loss": _f(loss_g[present].max()),
                "penalty": _f(penalty), **{f"q{g}": w for g, w in enumerate(weights.tolist())}}
        return dro, penalty, logs
