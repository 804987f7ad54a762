"""Devices: one decision (``profiles.resolve_device``, stored in the params), inputs moved to the
model's device at every entry point (``common.to_device_of``), cached results on the CPU whatever
computed them, and no device hard-coded anywhere else in the library.

Each behaviour runs on every device this machine has: ``cpu`` always, ``cuda`` when torch sees
one (skipped otherwise).  The model sits on the device; the data stay where the datasets keep
them, on the CPU."""
import ast
import re
from pathlib import Path

import pytest
import torch

from robust_saliency import attacks, attributions, cache, common, metrics, models, profiles, runs, settings, training
from robust_saliency import methods as methods_
from robust_saliency.regularizers.density import GroupDRO

pytestmark = pytest.mark.usefixtures("one_thread")

PKG = Path(__file__).resolve().parents[1] / "lib" / "robust_saliency"
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                    reason="no CUDA device"))]


def _tol(device):
    """CPU against CPU is exact up to float rounding; a GPU's kernels (TF32 convolutions on recent
    cards) round differently."""
    return {"atol": 1e-5, "rtol": 1e-4} if device == "cpu" else {"atol": 2e-3, "rtol": 2e-2}


def _net(device, seed=0):
    torch.manual_seed(seed)
    return models.build("small_cnn", 3, (3, 8, 8), activation="softplus", width=2).eval().to(device)


def _data(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


# ----------------------------------------------------------------------------------------------
# Entry points: a model on the device, inputs on the CPU
# ----------------------------------------------------------------------------------------------

def test_device_of_and_to_device_of():
    net = _net("cpu")
    x, y = _data()
    assert common.device_of(net) == torch.device("cpu")
    assert common.device_of(torch.nn.ReLU()) is None and common.device_of(lambda t: t) is None
    assert common.device_of(torch.nn.ReLU(), default="cpu") == torch.device("cpu")
    leaf = x.clone().requires_grad_(True)
    out = common.to_device_of(net, leaf, y, None, 3, "zero")
    assert out[0] is leaf and out[1] is y and out[2:] == (None, 3, "zero")  # already there: the same objects
    assert common.to_device_of(torch.nn.ReLU(), x) == (x,)  # nothing tells where it runs: left alone
    meta = torch.nn.Linear(2, 2, device="meta")
    moved = common.to_device_of(meta, x)[0]
    assert moved.device.type == "meta" and moved.shape == x.shape


@pytest.mark.parametrize("device", DEVICES)
def test_accuracy_attack_and_maps_take_cpu_inputs_to_the_models_device(device):
    net, (x, y) = _net(device), _data()
    ref, xd, yd = _net("cpu"), x.to(device), y.to(device)
    # accuracy: a tuple and a loader of CPU batches
    with torch.no_grad():
        want = float((ref(x).argmax(1) == y).float().mean())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    assert metrics.accuracy(net, (x, y)) == pytest.approx(want) == metrics.accuracy(net, loader)
    # an attack: the adversarial inputs on the model's device, equal to attacking device inputs
    pgd = attacks.get("pgd", eps=8, steps=2, seed=0)
    x_adv = pgd(net, x, y)
    assert x_adv.device == xd.device
    if device == "cpu":  # the same computation (a GPU's gradients need not repeat bitwise)
        assert torch.equal(x_adv, pgd(net, xd, yd))
    assert (x_adv - xd).abs().max() <= 8 / 255 + 1e-6
    assert 0 <= metrics.adversarial_accuracy(net, x, y, pgd) <= 1
    # attributions: autograd and captum, maps on the model's device, the CPU model's numbers
    for name in ("grad", "input_x_grad", "integrated_gradients"):
        explain = attributions.get(name)
        h = explain(net, x, y)
        assert h.device == xd.device and h.shape == x.shape, name
        assert torch.allclose(h.cpu(), explain(ref, x, y), **_tol(device)), name
    # scores that take a model and maps: insertion, RPS
    maps = attributions.grad(net, x, y)
    curve = metrics.insertion_curve(net, x, y, maps.cpu())
    assert curve.device == xd.device and torch.allclose(curve.cpu(), metrics.insertion_curve(ref, x, y, maps.cpu()),
                                                        **_tol(device))
    assert metrics.rps(net, x, y, "grad", 8, n=2, seed=0).device == xd.device


def _keyed(model, key="k" * 64):
    model.train_info = {"key": key}  # what fit() attaches: cached_eval caches models that have one
    return model


@pytest.mark.parametrize("device", DEVICES)
def test_cached_eval_stores_and_returns_cpu_tensors_on_a_miss_and_a_hit(device, tmp_path):
    net, (x, y) = _keyed(_net(device)), _data()
    calls = []

    def fn(p):
        calls.append(1)
        maps = attributions.get("grad")(net, x, y)  # computed on the model's device
        return {"maps": maps, "per_eps": {p["eps"]: metrics.rps(net, x, y, "grad", p["eps"], n=2)}, "rows": [1.0]}

    def ev():
        return runs.cached_eval("dev", net, {"eps": 8}, fn, inputs={"x": x, "y": y},
                                code=("robust_saliency.metrics",), cache_dir=tmp_path)

    miss, hit = ev(), ev()
    assert len(calls) == 1  # the second call loaded the file
    for out in (miss, hit):
        assert out["maps"].device.type == "cpu" and out["per_eps"][8].device.type == "cpu"
        assert not out["maps"].requires_grad
    assert torch.equal(miss["maps"], hit["maps"]) and torch.equal(miss["per_eps"][8], hit["per_eps"][8])
    assert torch.allclose(miss["maps"], attributions.grad(_net("cpu"), x, y), **_tol(device))
    # a model without a training key is evaluated without caching: the value on the CPU too
    net.train_info = {}
    assert runs.cached_eval("dev", net, {"eps": 8}, fn, code=("robust_saliency.metrics",),
                            cache_dir=tmp_path)["maps"].device.type == "cpu"


def test_the_evaluation_key_holds_the_models_device_type(tmp_path):
    """The draws of an evaluation are made on its model's device (a CUDA generator gives other
    numbers than a CPU one): another device type is another key (a meta model stands in here)."""
    calls = []

    def fn(p):
        calls.append(1)
        return {"v": torch.ones(2)}

    for net in (_keyed(torch.nn.Linear(2, 2)), _keyed(torch.nn.Linear(2, 2)),
                _keyed(torch.nn.Linear(2, 2, device="meta"))):
        runs.cached_eval("devkey", net, {}, fn, code=("robust_saliency.units",), cache_dir=tmp_path)
    assert len(calls) == 2  # cpu: a miss then a hit; meta: a miss
    keys = {cache.load_verified(p, weights_only=False)["key"] for p in (tmp_path / "eval").glob("devkey-*.pt")}
    assert len(keys) == 2


def test_cache_cached_returns_cpu_tensors_on_a_miss_and_a_hit(tmp_path):
    x = torch.ones(3, requires_grad=True) * 2
    miss = cache.cached("k", lambda: {"a": [x, (x, 1)]}, tmp_path)
    hit = cache.cached("k", lambda: None, tmp_path)
    for out in (miss, hit):
        assert out["a"][0].device.type == "cpu" and not out["a"][0].requires_grad and out["a"][1][1] == 1
        assert torch.equal(out["a"][1][0], torch.full((3,), 2.0))


# ----------------------------------------------------------------------------------------------
# One decision, stored in the params
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cuda", [False, True], ids=["no-cuda", "cuda"])
def test_the_resolved_device_is_stored_in_the_params_and_the_settings(cuda, monkeypatch, tmp_path, cache_dir):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    want = "cuda" if cuda else "cpu"
    assert profiles.PROFILES["paper"]["device"] is None  # the profile says "auto"
    params = profiles.profile_params("paper", data_root=str(tmp_path))
    assert params["device"] == want and profiles.resolve_device(None) == want
    assert profiles.validate(device=None)["device"] == want
    valid = profiles.validate(notebook="00_tour", **params)
    s = settings.build("00_tour", valid)
    assert s.device == want and s["device"] == want and dict(s)["device"] == want  # what provenance reads
    assert profiles.train_config(valid).device == want
    assert profiles.profile_params("paper", device="cpu")["device"] == "cpu"  # an explicit device wins
    assert profiles.profile_params("smoke")["device"] == "cpu"


def test_a_paper_modules_settings_hold_the_device(monkeypatch):
    from robust_saliency.papers import p1

    methods = ["ce", "l2"]
    params, _ = p1.settings("smoke", methods=methods, device=None)
    assert params.device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    params, _ = p1.settings("smoke", methods=methods, device="cuda")
    assert params.device == "cuda" and params["device"] == "cuda"


def test_train_resolves_none_to_the_models_device_only():
    """``TrainConfig.device`` None keeps "the model's current device" (documented there); it is
    not a second policy: it never moves a CPU model to a GPU."""
    net = torch.nn.Linear(2, 2)
    cfg = training.TrainConfig.make(device=None)
    assert training._resolve_device(net, cfg) == torch.device("cpu")
    assert training._resolve_device(torch.nn.ReLU(), cfg) == torch.device("cpu")
    assert training._resolve_device(net, training.TrainConfig.make(device="cpu")) == torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# The DataLoader's workers: from the profile, not in the training key
# ----------------------------------------------------------------------------------------------

def test_loader_settings_come_from_the_profile_and_are_declared():
    for name, prof in profiles.PROFILES.items():
        assert isinstance(prof["num_workers"], int) and isinstance(prof["pin_memory"], bool), name
        profiles.validate(notebook="00_tour", **{k: v for k, v in prof.items() if k not in ("dataset", "data_root")})
    assert (profiles.PROFILES["smoke"]["num_workers"], profiles.PROFILES["smoke"]["pin_memory"]) == (0, False)
    assert (profiles.PROFILES["cpu"]["num_workers"], profiles.PROFILES["cpu"]["pin_memory"]) == (0, False)
    assert profiles.PROFILES["paper"]["num_workers"] > 0 and profiles.PROFILES["paper"]["pin_memory"] is True
    for key in ("num_workers", "pin_memory"):
        assert key in settings.GENERIC and all(key in settings.schema(nb) for nb in settings.NOTEBOOKS)
        assert key not in {f.name for f in __import__("dataclasses").fields(training.TrainConfig)}
    with pytest.raises(ValueError, match="num_workers=-1"):
        profiles.validate(num_workers=-1)
    with pytest.raises(ValueError, match="pin_memory=1"):
        profiles.validate(pin_memory=1)


def test_loader_workers_change_neither_the_training_key_nor_the_weights(cache_dir):
    from robust_saliency.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(torch.rand(24, 3, 8, 8, generator=g), torch.randint(0, 3, (24,), generator=g), num_classes=3,
                      classes=("a", "b", "c"), name="tiny", split="train")
    base = {**profiles.profile_params("smoke"), "model": "small_cnn", "model_kw": {"width": 2}, "num_epochs": 2,
            "batch_size": 8, "normalize": False}
    nets = [runs.fit({**base, "num_workers": w, "pin_memory": False}, ds, "ce", seed=0) for w in (0, 2)]
    assert nets[0].train_info["key"] == nets[1].train_info["key"]
    assert not nets[0].train_info["from_cache"] and nets[1].train_info["from_cache"]
    fresh = runs.fit({**base, "num_workers": 2}, ds, "ce", seed=0, num_epochs=1)  # a new key: trained with workers
    again = runs.fit({**base, "num_workers": 0}, ds, "ce", seed=0, num_epochs=1, cache_dir=None)  # no cache
    assert not fresh.train_info["from_cache"]
    for a, b in zip(fresh.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# No host round trip per step in group DRO
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["online", "balanced"])
def test_group_dro_makes_no_cpu_copy_or_item_call_per_step(mode, monkeypatch):
    net, (x, y) = _net("cpu"), _data(8)
    groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    m = methods_.get("group_dro", mode=mode)
    assert isinstance(m, GroupDRO)
    m(net, x, y, groups=groups)  # q moves to the loss's device once
    for name in ("cpu", "item"):
        def refuse(self, *a, _name=name, **k):
            raise AssertionError(f"Tensor.{_name}() in a training step")
        monkeypatch.setattr(torch.Tensor, name, refuse)
    loss, logs = m(net, x, y, groups=groups)
    monkeypatch.undo()
    assert torch.isfinite(loss) and {f"q{g}" for g in range(4)} <= set(logs)
    assert all(isinstance(v, float) for v in logs.values())


# ----------------------------------------------------------------------------------------------
# No hard-coded device outside profiles.py
# ----------------------------------------------------------------------------------------------

ACCELERATOR = re.compile(r"(?:cuda|mps|xpu)(?::\d+)?", re.IGNORECASE)
# (module under lib/robust_saliency, enclosing function): why it may name a device.
ALLOWED = {
    ("compare.py", "_numerics_view"): "('platform', 'cuda'): the path of a field in an older provenance record",
}


def _device_literals(tree):
    """``[(line, function, what)]``: the places of ``tree`` that choose a device by hand."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def where(node):
        inside = [f for f in funcs if f.lineno <= node.lineno <= f.end_lineno]
        return max(inside, key=lambda f: f.lineno).name if inside else None

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ACCELERATOR.fullmatch(node.value):
            parent = parents.get(node)
            if isinstance(parent, ast.Compare):
                continue  # device.type == "cuda": a check, not a choice
            if isinstance(parent, ast.Subscript) and parent.slice is node:
                continue  # state["cuda"]: a record's field
            if isinstance(parent, ast.Dict) and any(k is node for k in parent.keys):
                continue  # {"cuda": ...}: a record's field
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) \
                    and parent.func.attr in ("get", "pop", "setdefault") and parent.args[:1] == [node]:
                continue  # plat.get("cuda"): a record's field
            out.append((node.lineno, where(node), f"the literal {node.value!r}"))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("cuda", "mps"):
                out.append((node.lineno, where(node), f".{func.attr}()"))
            if isinstance(func, ast.Attribute) and func.attr == "device" and isinstance(func.value, ast.Name) \
                    and func.value.id == "torch" and any(isinstance(a, ast.Constant) for a in node.args):
                out.append((node.lineno, where(node), "torch.device(<literal>)"))
            for kw in node.keywords:
                if kw.arg == "device" and isinstance(kw.value, ast.Constant) and kw.value.value is not None:
                    out.append((node.lineno, where(node), f"device={kw.value.value!r}"))
    return out


def test_no_module_but_profiles_hard_codes_a_device():
    """The rule: outside ``profiles.py`` (which decides the device), no module of the library
    chooses one by hand.  Flagged: a string literal naming an accelerator (``"cuda"``,
    ``"cuda:0"``, ``"mps"``, ``"xpu"``) used as a value -- an argument, a default, an assignment,
    a result; ``.cuda()`` / ``.mps()`` calls; ``torch.device("<literal>")``; a ``device="<literal>"``
    keyword.  Not flagged: such a literal as an operand of a comparison (``device.type ==
    "cuda"``: training's memory measurement and RNG state, settings' availability check -- checks,
    not choices), as a subscript or dict key (``state["cuda"]``: a record's field), docstrings and
    messages (a longer text), the key of ``.get`` / ``.pop`` / ``.setdefault``, and the CPU (``.cpu()``, ``.to("cpu")``, ``map_location="cpu"``:
    bringing results to the host is not a device choice).  Exceptions are listed in ``ALLOWED``
    with their reason, by (module, function)."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "profiles.py":
            continue
        for line, func, what in _device_literals(ast.parse(path.read_text(), filename=rel)):
            if (rel, func) not in ALLOWED:
                found.setdefault(rel, []).append(f"line {line} ({func or 'module level'}): {what}")
    assert not found, f"devices hard-coded outside profiles.py: {found}"


@pytest.mark.parametrize("src,n", [
    ("x.to('cuda')", 1), ("x.cuda()", 1), ("torch.device('cpu')", 1), ("torch.zeros(2, device='cuda:0')", 2),
    ("def f(d='mps'): pass", 1), ("ok = dev.type == 'cuda'", 0), ("s['cuda'] = 1", 0), ("d = {'cuda': 1}", 0),
    ("'cuda' in state", 0), ("x.to('cpu'); x.cpu(); torch.device(name)", 0), ('"""uses cuda if available"""', 0),
    ("p.get('cuda')", 0), ("p.get(k, 'cuda')", 1),
])
def test_the_scan_flags_choices_and_not_checks(src, n):
    assert len(_device_literals(ast.parse(src))) == n
