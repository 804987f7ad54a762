"""Metrics (SPEC section 8): map similarities, sparsity, perturbation games, accuracies.

Conventions
-----------
* Similarity functions (``cosine``, ``pcc``, ``ssim``, ``spearman``, ``topk_intersection``)
  take two batches of maps (first dimension = batch) and return one value per pair, shape
  ``(N,)``.  ``cosine``, ``pcc``, ``spearman``, ``topk_intersection``, ``gini`` and
  ``top_mass`` work on each map flattened *as given*: pass channel-reduced maps (e.g. the sum
  of ``|map|`` over channels) when the paper's quantity is per pixel.
* Perturbation games (``insertion_*``, ``deletion_*``, ``preservation_*``) rank *pixels*: a
  ``(N, C, H, W)`` map is reduced to ``sum_c |map|`` (``signed=True``: ``sum_c map``), a
  ``(N, H, W)`` or ``(N, 1, H, W)`` map is used as given (``|.|`` unless ``signed``); a
  non-image input ``(N, D...)`` is ranked element-wise.  A fraction ``gamma`` of the ``P``
  positions means ``k = round(gamma * P)`` positions; ties are broken by position (stable
  sort), so exactly ``k`` positions are kept / removed.  All channels of a pixel move together.
  The masked copies for all (sample, fraction) pairs are stacked into one batch and fed to the
  model in chunks of ``batch_size``.  Probabilities are ``softmax(model(.))[y]`` under
  ``torch.no_grad()``; the model's train/eval mode is left as it is (call ``model.eval()``).
* ``eps`` of ``rps`` is in 0-255 pixel units (``units.linf``: checked to lie in [0, 255],
  divided by 255 here), as SPEC sections 7 and 8.
* What attacks a model (``saliency_report``, ``attribution_scores``) lives a layer above, in
  ``evaluation``; this module only scores maps and models it is given (``rps`` computes maps
  with the attribution it is passed).
* Degenerate inputs (zero or constant maps) give 0 instead of NaN for ``cosine``, ``pcc``,
  ``spearman``, ``gini``, ``top_mass`` and ``object_share``.

``get(name)`` returns the function, ``NAMES`` lists them, ``HIGHER_IS_BETTER[name]`` says which
direction is better.
"""
import torch
import torch.nn.functional as F

from . import attributions as _attributions
from . import units
from .common import resolve_k

_TINY = 1e-12


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


# --------------------------------------------------------------------------------------------
# Similarities between batches of maps
# --------------------------------------------------------------------------------------------

def cosine(a, b):
    """Cosine similarity per pair of flattened maps (P1 RPS with S = cosine; 0 for a zero map)."""
    _check_pair(a, b)
    a, b = _flat(a).to(_work_dtype(a)), _flat(b).to(_work_dtype(a))
    return _safe_div((a * b).sum(1), a.norm(dim=1) * b.norm(dim=1))


def pcc(a, b):
    """Pearson correlation per pair of flattened maps (P1 RPS, Dombrowski 2022; 0 if constant)."""
    _check_pair(a, b)
    a, b = _flat(a).to(_work_dtype(a)), _flat(b).to(_work_dtype(a))
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return _safe_div((a * b).sum(1), a.norm(dim=1) * b.norm(dim=1))


def _gaussian_kernel1d(sigma, truncate, dtype, device):
    r = int(truncate * sigma + 0.5)  # radius as scipy.ndimage.gaussian_filter
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def ssim(a, b, data_range=None, sigma=1.5, K1=0.01, K2=0.03):
    """SSIM per pair (Wang 2004; P1 RPS): gaussian window sigma 1.5, 11 taps, population cov.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)`` (with ``channel_axis=0`` per sample for
    ``(N, C, H, W)`` maps: the mean over channels).  Maps are ``(N, H, W)`` or ``(N, C, H, W)``,
    each side >= 11.  ``data_range``: a number or an ``(N,)`` tensor; ``None`` uses the joint
    range of each pair, ``max(a_i, b_i) - min(a_i, b_i)`` (symmetric in a and b; 1 if 0).
    """
    _check_pair(a, b)
    if a.dim() == 3:
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if a.dim() != 4:
        raise ValueError(f"ssim maps must be (N, H, W) or (N, C, H, W); got shape={tuple(a.shape)}")
    dtype = _work_dtype(a)
    a, b = a.to(dtype), b.to(dtype)
    n, c, h, w = a.shape
    g = _gaussian_kernel1d(sigma, 3.5, dtype, a.device)
    win = g.numel()
    if h < win or w < win:
        raise ValueError(f"ssim maps must be at least {win}x{win}; got H, W = {h}, {w}")
    if data_range is None:
        fa, fb = _flat(a), _flat(b)
        rng = torch.maximum(fa.amax(1), fb.amax(1)) - torch.minimum(fa.amin(1), fb.amin(1))
        rng = torch.where(rng > 0, rng, torch.ones_like(rng))
    else:
        rng = torch.as_tensor(data_range, dtype=dtype, device=a.device).expand(n)
        if (rng <= 0).any():
            raise ValueError(f"data_range must be > 0; got data_range={data_range}")
    # SSIM is invariant to scaling a, b and the range together: work on a / range, b / range
    # with range 1, so that maps of tiny magnitude (e.g. LRP of a collapsed model, ~1e-20)
    # do not underflow the variances into 0 / 0.
    a, b = a / rng.view(n, 1, 1, 1), b / rng.view(n, 1, 1, 1)
    C1, C2 = K1 ** 2, K2 ** 2
    # Valid (unpadded) separable filtering == skimage's filter + crop of the radius strip.
    stack = torch.cat([a, b, a * a, b * b, a * b], 0).reshape(5 * n * c, 1, h, w)
    stack = F.conv2d(stack, g.view(1, 1, win, 1))
    stack = F.conv2d(stack, g.view(1, 1, 1, win))
    ux, uy, uxx, uyy, uxy = stack.reshape(5, n, c, h - win + 1, w - win + 1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    s = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux ** 2 + uy ** 2 + C1) * (vx + vy + C2))
    return s.mean(dim=(2, 3)).mean(1)


def _average_ranks(a):
    """1-based ranks per row, ties get their average rank (as scipy.stats.rankdata)."""
    s = a.sort(dim=1).values.contiguous()
    a = a.contiguous()
    lo = torch.searchsorted(s, a, right=False)
    hi = torch.searchsorted(s, a, right=True)
    return (lo + hi + 1).to(_work_dtype(a)) / 2


def spearman(a, b):
    """Spearman rank correlation per pair, ties by average rank (Spearman 1904; P2, P3)."""
    _check_pair(a, b)
    return pcc(_average_ranks(_flat(a)), _average_ranks(_flat(b)))


def topk_intersection(a, b, k):
    """Share of the top-k positions of a that are among the top-k of b (Ghorbani 2019; P2, P3).

    ``k``: an int count of positions or a float fraction of them (``round(k * P)``, >= 1).
    Ranks the flattened values as given (largest first).
    """
    _check_pair(a, b)
    a, b = _flat(a), _flat(b)
    k = resolve_k(k, a.shape[1])
    top_a = a.topk(k, dim=1).indices
    in_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return in_b.gather(1, top_a).sum(1).to(_work_dtype(a)) / k


def gini(a):
    """Gini index of |a| per sample (Hurley & Rickard 2009; P3 sparsity), 0 for a zero map.

    With c_(1) <= ... <= c_(n) the sorted |a|: G = 1 - 2 sum_k c_(k)/||c||_1 (n - k + 1/2)/n.
    """
    c = _flat(a).abs().to(_work_dtype(a)).sort(dim=1).values
    n = c.shape[1]
    k = torch.arange(1, n + 1, dtype=c.dtype, device=c.device)
    w = (n - k + 0.5) / n
    total = c.sum(1)
    return torch.where(total > 0, 1 - 2 * _safe_div((c * w).sum(1), total), torch.zeros_like(total))


def top_mass(a, frac=0.05):
    """Share of the |a| mass in the top-frac positions per sample (P3 sparsity), 0 if zero map."""
    c = _flat(a).abs().to(_work_dtype(a))
    k = resolve_k(float(frac), c.shape[1], "frac")
    return _safe_div(c.topk(k, dim=1).values.sum(1), c.sum(1))


# --------------------------------------------------------------------------------------------
# Random perturbation similarity (P1)
# --------------------------------------------------------------------------------------------

def _abs_max(h):
    """P1's h: sum of |map| over channels, divided by the per-image max."""
    if h.dim() == 4:
        h = h.abs().sum(1)
    else:
        h = h.abs()
    mx = _flat(h).amax(1).view(-1, *([1] * (h.dim() - 1)))
    return h / (mx + 1e-8)


_POSTPROCESS = {"abs_max": _abs_max}
_SIMILARITIES = {"cosine": cosine, "pcc": pcc, "ssim": ssim, "spearman": spearman}


def _generator(seed, device):
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def _similarity_fns(similarity):
    """{name: fn} for a similarity name, a callable, or a list/tuple of them."""
    items = list(similarity) if isinstance(similarity, (list, tuple)) else [similarity]
    if not items:
        raise ValueError("similarity=[] is not valid; accepted: a name in "
                         f"{sorted(_SIMILARITIES)}, a callable, or a non-empty list of them")
    fns = {}
    for s in items:
        if isinstance(s, str):
            if s not in _SIMILARITIES:
                raise ValueError(f"similarity={s!r} is not known; accepted: "
                                 f"{sorted(_SIMILARITIES)} or a callable")
            fns[s] = _SIMILARITIES[s]
        elif callable(s):
            fns[getattr(s, "__name__", repr(s))] = s
        else:
            raise ValueError(f"similarity={s!r} is not valid; accepted: a name in "
                             f"{sorted(_SIMILARITIES)} or a callable")
    return fns


def _postprocess_fn(postprocess):
    if postprocess is None:
        return lambda h: h
    if isinstance(postprocess, str):
        if postprocess not in _POSTPROCESS:
            raise ValueError(f"postprocess={postprocess!r} is not known; accepted: None, "
                             f"{sorted(_POSTPROCESS)} or a callable")
        return _POSTPROCESS[postprocess]
    return postprocess


def rps(model, x, y, attribution, eps, n=10, similarity="cosine", postprocess=None, seed=0):
    """Random perturbation similarity per sample (P1 "RPS", after Dombrowski 2022).

    rps_i = 1/n sum_j S(h(x_i + delta_ij), h(x_i)), delta_ij ~ U[-eps/255, eps/255]^d (``eps``
    in 0-255 pixel units, in [0, 255]), with
    x + delta clamped to the valid range [0, 1] (P1's code clamps to the data range).
    The attribution targets the label ``y`` (as P1's code).  ``attribution``: a name for
    ``attributions.get`` or a fn ``(model, x, target) -> map``.  ``similarity``: 'cosine',
    'pcc', 'ssim', 'spearman' or a fn ``(a, b) -> (N,)``; a list of them scores the same noise
    draws with each and returns ``{name: (N,)}`` (a callable is named by its ``__name__``).
    ``postprocess`` maps the raw map to h: None (raw map), 'abs_max' (P1's code: sum_c |map| /
    per-image max; needed for SSIM) or a fn.  ``seed``: the noise draws use their own
    generator (None: the global RNG).  Returns a tensor (N,) (a dict for a list of
    similarities); P1 reports its mean over the test set.
    """
    radius = units.linf(eps)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int; got n={n}")
    if isinstance(attribution, str):
        attribution = _attributions.get(attribution)
    fns = _similarity_fns(similarity)
    post = _postprocess_fn(postprocess)
    gen = _generator(seed, x.device)
    x = x.detach()
    h0 = post(attribution(model, x, y).detach())
    total = {k: torch.zeros(x.shape[0], dtype=_work_dtype(x), device=x.device) for k in fns}
    for _ in range(int(n)):  # loop over noise draws only; each draw is batched over samples
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        x_r = (x + (2 * u - 1) * radius).clamp(0.0, 1.0)
        h_r = post(attribution(model, x_r, y).detach())
        for k, fn in fns.items():
            total[k] = total[k] + fn(h_r, h0)
    out = {k: v / int(n) for k, v in total.items()}
    return out if isinstance(similarity, (list, tuple)) else next(iter(out.values()))


# --------------------------------------------------------------------------------------------
# Perturbation games: insertion (P1), adv-insertion (P1), deletion / preservation (P2)
# --------------------------------------------------------------------------------------------

def _default_fractions(fractions, dtype, device):
    if fractions is None:
        return torch.linspace(0, 1, 21, dtype=torch.float64).to(device=device, dtype=dtype)
    fr = torch.as_tensor(fractions, dtype=torch.float64).flatten()
    if fr.numel() == 0 or (fr < 0).any() or (fr > 1).any():
        raise ValueError(f"fractions must be a non-empty sequence in [0, 1]; got {fractions}")
    return fr.to(device=device, dtype=dtype)


def _position_scores(x, maps, signed):
    """Per-position ranking scores (N, P) and the shape a keep-mask (N, P) takes against x."""
    n = x.shape[0]
    if x.dim() == 4:
        _, c, h, w = x.shape
        if maps.shape == x.shape:
            s = maps.sum(1) if signed else maps.abs().sum(1)
        elif maps.shape in ((n, h, w), (n, 1, h, w)):
            s = maps.reshape(n, h, w)
            s = s if signed else s.abs()
        else:
            raise ValueError(f"maps.shape={tuple(maps.shape)} does not fit x.shape={tuple(x.shape)};"
                             f" accepted: {(n, c, h, w)}, {(n, h, w)} or {(n, 1, h, w)}")
        return s.reshape(n, h * w), (1, h, w)
    if maps.shape != x.shape:
        raise ValueError(f"maps.shape={tuple(maps.shape)} must equal x.shape={tuple(x.shape)}")
    s = maps if signed else maps.abs()
    return s.reshape(n, -1), tuple(x.shape[1:])


def _baseline(x, baseline):
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x)
        if baseline == "mean":
            dims = tuple(range(2, x.dim())) if x.dim() > 2 else (1,)
            return x.mean(dim=dims, keepdim=True).expand_as(x)
        raise ValueError(f"baseline={baseline!r} is not known; accepted: 'zero', 'mean' or a tensor")
    try:
        return torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    except RuntimeError:
        raise ValueError(f"baseline tensor of shape {tuple(torch.as_tensor(baseline).shape)} does "
                         f"not broadcast to x.shape={tuple(x.shape)}") from None


def _ranks(x, maps, fractions, signed):
    """(rank (N, P) of every position by its score, 0 = most relevant; k per fraction; the
    shape a keep-mask takes against x).  k = round(gamma * P); ties broken by position."""
    n = x.shape[0]
    scores, mask_shape = _position_scores(x, maps, signed)
    p = scores.shape[1]
    fr = _default_fractions(fractions, torch.float64, "cpu")
    ks = torch.round(fr * p).long().to(x.device)
    order = scores.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(p, device=x.device).expand(n, p))
    return rank, ks, mask_shape


def _game_curve(model, x, y, maps, fractions, baseline, mode, signed, batch_size):
    """p_y of the masked copies for every (sample, fraction); mode in keep_top/drop_top/drop_bottom."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got batch_size={batch_size}")
    x, maps = x.detach(), maps.detach()
    n = x.shape[0]
    rank, ks, mask_shape = _ranks(x, maps, fractions, signed)
    p, nf = rank.shape[1], ks.numel()
    base = _baseline(x, baseline)
    out = torch.empty(n * nf, dtype=_work_dtype(x), device=x.device)
    with torch.no_grad():
        for t0 in range(0, n * nf, int(batch_size)):
            t = torch.arange(t0, min(t0 + int(batch_size), n * nf), device=x.device)
            i, f = t // nf, t % nf
            r, k = rank[i], ks[f].unsqueeze(1)
            if mode == "keep_top":
                keep = r < k
            elif mode == "drop_top":
                keep = r >= k
            else:  # drop_bottom
                keep = r < p - k
            keep = keep.view(-1, *mask_shape)
            xb = torch.where(keep, x[i], base[i])
            prob = model(xb).softmax(1).gather(1, y[i].view(-1, 1)).squeeze(1)
            out[t0:t0 + len(t)] = prob.to(out.dtype)
    return out.view(n, nf)


def insertion_images(x, maps, fractions=None, baseline="zero", signed=False):
    """The inputs of P1's Insertion game: x with only its top-gamma pixels by ``maps`` kept.

    Returns (N, len(fractions), *x.shape[1:]): ``out[i, f]`` is what ``insertion_curve``
    feeds the model for sample i and fraction f (P1 Fig. 2b shows them).
    """
    x, maps = x.detach(), maps.detach()
    rank, ks, mask_shape = _ranks(x, maps, fractions, signed)
    keep = (rank[:, None, :] < ks[None, :, None]).view(x.shape[0], len(ks), *mask_shape)
    return torch.where(keep, x[:, None], _baseline(x, baseline)[:, None])


def insertion_curve(model, x, y, maps, fractions=None, baseline="zero", signed=False,
                    batch_size=256):
    """P1 Insertion curve (Petsiuk 2018): p_y of x with only the top-gamma pixels by maps kept.

    x_gamma = x * m_gamma + x_o * (1 - m_gamma), m_gamma = the top round(gamma*P) pixels by
    sum_c |maps| (P1's code ranks the |.|-summed, max-normalized map; normalization does not
    change the order), x_o = ``baseline``: 'zero' (default, P1's "zero-valued image"),
    'mean' (each image's channel means) or a tensor broadcastable to x (e.g. the dataset
    channel mean: P1's code zeroes the *normalized* input, which is the dataset mean in [0, 1]
    pixels).  ``fractions`` default 0, 0.05, ..., 1.  Returns (N, len(fractions)).
    """
    return _game_curve(model, x, y, maps, fractions, baseline, "keep_top", signed, batch_size)


def insertion_score(model, x, y, maps, fractions=None, baseline="zero", signed=False,
                    batch_size=256):
    """P1 Insertion score per sample: mean of the insertion curve over gamma (higher better)."""
    return insertion_curve(model, x, y, maps, fractions, baseline, signed, batch_size).mean(1)


def adv_insertion_curve(model, x, y, maps_adv, fractions=None, baseline="zero", signed=False,
                        batch_size=256):
    """P1 Adv-Insertion curve: insert the *clean* x in the order of the map h(x_adv).

    ``maps_adv`` is the attribution at x_adv (from the targeted AAM attack), ``x`` the clean
    image whose pixels are inserted (P1's text and code); labels ``y`` are the true labels.
    """
    return _game_curve(model, x, y, maps_adv, fractions, baseline, "keep_top", signed, batch_size)


def adv_insertion_score(model, x, y, maps_adv, fractions=None, baseline="zero", signed=False,
                        batch_size=256):
    """P1 Adv-Insertion score per sample: mean over gamma of ``adv_insertion_curve``."""
    return adv_insertion_curve(model, x, y, maps_adv, fractions, baseline, signed,
                               batch_size).mean(1)


def deletion_curve(model, x, y, maps, fractions=None, baseline="zero", least_first=False,
                   signed=False, batch_size=256):
    """P2 deletion (pixel flipping) curve: p_y with the most-relevant fraction set to baseline.

    ``least_first=True`` removes the least relevant first (P2 preservation).  Ranking, ``k``,
    ``baseline`` and ``fractions`` as ``insertion_curve``.  Returns (N, len(fractions)).
    """
    mode = "drop_bottom" if least_first else "drop_top"
    return _game_curve(model, x, y, maps, fractions, baseline, mode, signed, batch_size)


def preservation_curve(model, x, y, maps, fractions=None, baseline="zero", signed=False,
                       batch_size=256):
    """P2 preservation curve: p_y with the least-relevant fraction set to baseline."""
    return deletion_curve(model, x, y, maps, fractions, baseline, True, signed, batch_size)


def _auc(curve, fractions):
    fr = _default_fractions(fractions, curve.dtype, curve.device)
    if fr.numel() < 2:
        raise ValueError(f"the AUC needs at least two fractions; got fractions={fractions}")
    return torch.trapezoid(curve, x=fr, dim=1)


def deletion_score(model, x, y, maps, fractions=None, baseline="zero", signed=False,
                   batch_size=256):
    """P2 deletion score per sample: trapezoid AUC of the deletion curve (lower is better)."""
    curve = deletion_curve(model, x, y, maps, fractions, baseline, False, signed, batch_size)
    return _auc(curve, fractions)


def preservation_score(model, x, y, maps, fractions=None, baseline="zero", signed=False,
                       batch_size=256):
    """P2 preservation score per sample: trapezoid AUC of the preservation curve (higher better)."""
    curve = deletion_curve(model, x, y, maps, fractions, baseline, True, signed, batch_size)
    return _auc(curve, fractions)


# --------------------------------------------------------------------------------------------
# Accuracies and localisation
# --------------------------------------------------------------------------------------------

def _predict(model, x, batch_size=512):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model, data, device=None, batch_size=512):
    """Top-1 accuracy (float) of model on a loader of (x, y) batches or on a tuple (x, y)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        batches = [data]
    else:
        batches = data
    correct, total = 0, 0
    for batch in batches:
        x, y = batch[0], batch[1]
        if device is not None:
            x, y = x.to(device), y.to(device)
        correct += (_predict(model, x, batch_size) == y).sum().item()
        total += len(y)
    if total == 0:
        raise ValueError("accuracy: data holds no samples")
    return correct / total


def adversarial_accuracy(model, x, y, attack):
    """Accuracy (float) on attack(model, x, y) (P2, P4 robust accuracy); attack from attacks.get."""
    x_adv = attack(model, x, y).detach()
    return (_predict(model, x_adv) == y).float().mean().item()


def object_share(maps, masks):
    """Share of |attribution| inside the ground-truth object mask per sample (SPEC 8, shapes).

    ``maps`` (N, C, H, W) are reduced to sum_c |maps|, (N, H, W) to |maps|; ``masks`` (N, H, W)
    or (N, 1|C, H, W), nonzero = object (a pixel counts if any channel is set).
    """
    s = maps.abs().sum(1) if maps.dim() == 4 else maps.abs()
    m = masks.ne(0)
    if m.dim() == 4:
        m = m.any(1)
    if m.shape != s.shape:
        raise ValueError(f"masks.shape={tuple(masks.shape)} does not fit maps.shape={tuple(maps.shape)}")
    s = _flat(s).to(_work_dtype(s))
    return _safe_div((s * _flat(m)).sum(1), s.sum(1))


def worst_group_accuracy(preds, y, groups, per_group=False):
    """Minimum accuracy over groups (P4, Sagawa 2020); preds are labels (N,) or logits (N, K).

    ``per_group=True`` returns ``(worst, {group: accuracy})``.
    """
    if preds.dim() == 2:
        preds = preds.argmax(1)
    correct = (preds == y).double()
    ids, inv = torch.unique(groups, return_inverse=True)
    hits = torch.zeros(len(ids), dtype=torch.float64, device=correct.device).index_add_(0, inv, correct)
    counts = torch.bincount(inv, minlength=len(ids)).double()
    acc = hits / counts
    worst = acc.min().item()
    if per_group:
        return worst, {g.item(): a.item() for g, a in zip(ids, acc)}
    return worst


# --------------------------------------------------------------------------------------------
# Registry.  Later issues add: retrieval_rate (P2), feature_leakage (P4 Eq. 9), diff_roar and
# aopc_mofr (P3), cascading/data randomization (P3), ood_auroc, pixel_perturbation,
# relative_gradient_change / relative_density_change (P4).
# --------------------------------------------------------------------------------------------

_REGISTRY = {
    "cosine": cosine,
    "pcc": pcc,
    "ssim": ssim,
    "spearman": spearman,
    "topk_intersection": topk_intersection,
    "gini": gini,
    "top_mass": top_mass,
    "rps": rps,
    "insertion": insertion_score,
    "adv_insertion": adv_insertion_score,
    "deletion": deletion_score,
    "preservation": preservation_score,
    "accuracy": accuracy,
    "adversarial_accuracy": adversarial_accuracy,
    "object_share": object_share,
    "worst_group_accuracy": worst_group_accuracy,
}
NAMES = tuple(_REGISTRY)

HIGHER_IS_BETTER = {name: True for name in NAMES}
HIGHER_IS_BETTER["deletion"] = False


def get(name):
    """The metric function registered under ``name`` (see ``NAMES``, ``HIGHER_IS_BETTER``)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"metric={name!r} is not known; accepted: {sorted(_REGISTRY)}") from None
