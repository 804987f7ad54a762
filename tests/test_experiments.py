"""Tests of robust_saliency.experiments: profiles, parameter validation, provenance, results."""
import json
import os
import time

import numpy as np
import pytest

from robust_saliency import data, profiles
from robust_saliency import experiments as E
from robust_saliency import training as T


@pytest.fixture
def registries():
    """The accepted names of every registry (the real modules: a broken one fails here)."""
    return {kind: E.accepted_names(kind) for kind in
            ("dataset", "model", "method", "attribution", "metric", "attack")}


def _real_and_embedded():
    return data.REAL[0], data.EMBEDDED[0]


# ----------------------------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------------------------

def test_profiles_and_overrides():
    assert set(E.PROFILES) == {"smoke", "cpu", "paper"}
    for name, prof in E.PROFILES.items():
        assert {"dataset", "model", "num_epochs", "seeds", "eval_subset", "n_train"} <= set(prof)
    smoke, cpu = E.PROFILES["smoke"], E.PROFILES["cpu"]
    assert smoke["n_train"] <= 2000 and len(smoke["seeds"]) == 1
    assert len(cpu["seeds"]) == 3 and cpu["n_train"] > smoke["n_train"]
    p = E.profile_params("smoke", num_epochs=5, seeds=[3], extra_knob="x", model=None)
    assert p["num_epochs"] == 5 and p["seeds"] == [3] and p["extra_knob"] == "x"
    assert p["model"] == smoke["model"]  # None = take the profile's value
    assert p["profile"] == "smoke"
    p["seeds"].append(4)  # a fresh copy: the profile itself is untouched
    assert E.PROFILES["smoke"]["seeds"] == [0]
    with pytest.raises(ValueError, match=r"profile='laptop'.*accepted.*'smoke', 'cpu', 'paper'"):
        E.profile_params("laptop")


def test_every_embedded_profile_validates(registries):
    for name in ("smoke", "cpu"):
        params = E.profile_params(name)
        assert E.validate(**params) == params


def test_paper_profile_needs_data_root(registries, tmp_path):
    params = E.profile_params("paper")
    with pytest.raises(ValueError, match=r"data_root=None.*real dataset"):
        E.validate(**params)
    E.validate(**{**params, "data_root": str(tmp_path)})


def test_train_config_from_params(cache_dir):
    cfg = E.train_config(E.profile_params("smoke"), seed=2)
    assert isinstance(cfg, T.TrainConfig)
    assert cfg.num_epochs == E.PROFILES["smoke"]["num_epochs"] and cfg.seed == 2
    assert cfg.cache_dir == str(cache_dir) and cfg.device == "cpu"


# ----------------------------------------------------------------------------------------------
# Validation: each bad parameter is named, with its value and the accepted values
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,kind,notebook", [
    ("dataset", "dataset", None), ("datasets", "dataset", "00_tour"),
    ("ood_datasets", "dataset", "04_marginal_density"), ("model", "model", None),
    ("methods", "method", "01_local_gradient_alignment"), ("attributions", "attribution", "02_relex"),
    ("block_model", "model", "04_marginal_density"),
])
def test_unknown_registry_names(registries, key, kind, notebook):
    good = registries[kind][0]
    value = "nonexistent_xyz" if not key.endswith("s") else [good, "nonexistent_xyz"]
    for nb in (notebook, None):  # the notebook's declaration, and any notebook's
        with pytest.raises(ValueError) as err:
            E.validate(notebook=nb, **{key: value})
        msg = str(err.value)
        assert msg.startswith(f"{key}=") and "'nonexistent_xyz'" in msg
        assert f"not a known {kind}" in msg and "accepted" in msg and repr(good) in msg
    E.validate(notebook=notebook, **{key: [good] if key.endswith("s") else good})  # the valid one passes


def test_methods_may_be_a_dict_of_hparams(registries):
    E.validate(methods={"ce": {}})
    with pytest.raises(ValueError, match=r"methods=.*'l3_cosd'.*not a known method"):
        E.validate(methods={"ce": {}, "l3_cosd": {"eps": 4}})
    with pytest.raises(ValueError, match=r"methods=3 is not valid"):
        E.validate(methods=3)


def test_unknown_profile(registries):
    with pytest.raises(ValueError, match=r"profile='fast' is not known; accepted: \('smoke'"):
        E.validate(profile="fast")


def test_a_notebook_rejects_a_parameter_it_does_not_declare():
    with pytest.raises(ValueError, match=r"pgd_epss=\[4\]: 'pgd_epss' is not a parameter of 02_relex; "
                                         r"accepted: \[.*'pgd_eps'"):
        E.validate(notebook="02_relex", pgd_epss=[4])
    E.validate(pgd_epss=[4], note="x")  # without a notebook, undeclared names are not checked
    with pytest.raises(ValueError, match="notebook='05_nope' has no declared parameters"):
        E.validate(notebook="05_nope", seeds=[0])


def test_every_settings_file_key_is_declared():
    import yaml

    from robust_saliency import settings

    for notebook in settings.NOTEBOOKS:
        path = profiles.notebooks_dir() / f"{notebook}.yaml"
        if not path.exists():
            continue
        doc = yaml.safe_load(path.read_text())
        undeclared = {k for values in doc.values() for k in values} - set(settings.schema(notebook))
        assert not undeclared, f"{path.name}: {sorted(undeclared)}"


def test_describe_states_type_and_unit():
    from robust_saliency import settings

    table = settings.describe("04_marginal_density")
    assert table.loc["shapes_l2_eps", "unit"] == "input units (L2 norm)"
    assert table.loc["block_pgd_linf_eps", "unit"] == "0-255 pixel units"
    assert table.loc["block_num_epochs", "type"] == "an int >= 1" and table.loc["block_num_epochs", "unit"] == "epochs"
    assert set(table.index) == set(settings.schema("04_marginal_density"))


@pytest.mark.parametrize("key,value", [
    ("eps_grid", [4, -8]), ("eps_grid", [4, "8"]), ("attack_eps", -0.5), ("eps_grid", [4, None]),
    ("attack_eps", 300), ("rps_eps_grid", [4, 8, 256]), ("rps_eps", float("nan")), ("rps_eps", True),
    ("rps_eps", "4"),
])
def test_bad_eps(key, value):
    with pytest.raises(ValueError, match=rf"^{key}=.*accepted: a number in \[0, 255\].*\(0-255 pixel units\)"):
        E.validate(**{key: value})


def test_budgets_are_checked_in_their_declared_unit_not_by_name():
    nb = "04_marginal_density"
    E.validate(notebook=nb, shapes_l2_eps=[0.5, 300.0], block_pgd_l2_eps=2.0)  # L2: input units, no 255 cap
    with pytest.raises(ValueError, match=r"^shapes_l2_eps=-1.*input units"):
        E.validate(notebook=nb, shapes_l2_eps=-1)
    with pytest.raises(ValueError, match=r"^block_pgd_linf_eps=300.*0-255 pixel units"):
        E.validate(notebook=nb, block_pgd_linf_eps=300)
    E.validate(l2_eps=-1)  # a name that only looks like a budget is no longer checked as one


def test_good_eps():
    E.validate(eps_grid=[2, 4.0, np.float32(8)], attack_eps=16, rps_eps=255, rps_eps_grid=[0])


@pytest.mark.parametrize("key,value,match", [
    ("num_epochs", 0, r"num_epochs=0 is not valid; accepted: an int >= 1 \(epochs\)"),
    ("num_epochs", -3, r"num_epochs=-3"), ("num_epochs", 2.0, r"num_epochs=2.0"),
    ("num_epochs", "10", r"num_epochs='10'"),
    ("seeds", [0, 1.5], r"seeds=\[0, 1.5\] is not valid; accepted: a non-empty list of ints"),
    ("seeds", ["0"], r"seeds=\['0'\]"), ("seeds", [], r"seeds=\[\]"), ("seeds", 0, r"seeds=0"),
    ("seeds", [-1], r"seeds=\[-1\]"),
    ("n_train", 0, r"n_train=0 is not valid; accepted: an int >= 1 \(images\) or None"),
    ("eval_subset", -2, r"eval_subset=-2"), ("batch_size", 1.5, r"batch_size=1.5"),
    ("lr", 0, r"lr=0 is not valid"), ("device", "gpu0", r"device='gpu0' is not valid"),
])
def test_bad_numbers_and_seeds(key, value, match):
    with pytest.raises(ValueError, match=match):
        E.validate(**{key: value})


def test_good_numbers():
    E.validate(num_epochs=np.int64(3), seeds=(0, 1, 2), n_train=None, n_test=5, lr=1e-3, device="cpu")


def test_cuda_device_unavailable(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda' is not available"):
        E.validate(device="cuda")


def test_real_dataset_needs_existing_data_root(registries, tmp_path):
    real, embedded = _real_and_embedded()
    with pytest.raises(ValueError, match=rf"data_root=None is not valid for dataset='{real}'"):
        E.validate(dataset=real)
    with pytest.raises(ValueError, match=rf"data_root=None.*ood_datasets='{real}'"):
        E.validate(dataset=embedded, ood_datasets=[embedded, real])
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"data_root='.*nope' is not an existing folder"):
        E.validate(dataset=real, data_root=str(missing))
    E.validate(dataset=real, data_root=str(tmp_path))
    E.validate(dataset=embedded, data_root=None)


def test_validation_happens_before_training(registries):
    """validate raises on the first bad parameter without touching other modules' code paths."""
    params = E.profile_params("smoke", model="nope")
    with pytest.raises(ValueError, match="model='nope'"):
        E.validate(**params)


# ----------------------------------------------------------------------------------------------
# Paths, provenance, results
# ----------------------------------------------------------------------------------------------

def test_repo_root_and_cache_dir(monkeypatch, tmp_path):
    root = E.repo_root()
    assert (root / "lib" / "robust_saliency" / "experiments.py").is_file()
    monkeypatch.delenv("ROBUST_SALIENCY_CACHE", raising=False)
    assert E.default_cache_dir() == root / "cache"
    monkeypatch.setenv("ROBUST_SALIENCY_CACHE", str(tmp_path / "c"))
    assert E.default_cache_dir() == tmp_path / "c"


def test_provenance_fields():
    t0 = time.time() - 2.0
    info = E.provenance({"profile": "smoke"}, [0, 1], t0)
    assert info["profile"] == "smoke" and info["seeds"] == [0, 1]
    assert 2.0 <= info["wall_time_s"] < 60
    assert set(info["versions"]) >= {"torch", "torchvision", "numpy", "captum", "zennit",
                                     "scipy", "sklearn", "skimage", "python"}
    import torch

    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or \
        torch.__version__.startswith(info["versions"]["torch"])
    assert info["commit"] == "unknown" or len(info["commit"]) == 40
    json.dumps(info)


def test_provenance_outside_git(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUST_SALIENCY_ROOT", str(tmp_path))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    info = E.provenance({}, None, None)
    assert info["commit"] == "unknown" and info["dirty"] is None and info["wall_time_s"] is None


def _git_repo(root):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                       check=True, capture_output=True)

    for rel in ("lib/robust_saliency/x.py", "notebooks/01_a.ipynb", "notebooks/sanitize.cfg",
                "results/01_a_cpu.json", "figures/01_a/f.png", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("v1\n")
    (root / ".gitignore").write_text("/cache/\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    return git


def test_provenance_pins_the_code_not_the_outputs(monkeypatch, tmp_path):
    """Executing notebooks rewrites them and their figures/results: that is not a dirty tree."""
    git = _git_repo(tmp_path)
    monkeypatch.setenv("ROBUST_SALIENCY_ROOT", str(tmp_path))
    for rel in ("notebooks/01_a.ipynb", "results/01_a_cpu.json", "figures/01_a/f.png"):
        (tmp_path / rel).write_text("v2\n")
    (tmp_path / "figures/01_a/g.pdf").write_text("new\n")
    (tmp_path / "results/01_a_smoke.json").write_text("new\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/m.pt").write_text("ignored\n")
    info = E.provenance({}, [0], None)
    assert len(info["commit"]) == 40 and info["dirty"] is False and info["code_changes"] == []
    # code that differs from the commit: modified, untracked, deleted, renamed
    (tmp_path / "lib/robust_saliency/x.py").write_text("v2\n")
    (tmp_path / "lib/robust_saliency/new.py").write_text("new\n")
    (tmp_path / "notebooks/sanitize.cfg").write_text("v2\n")
    git("mv", "README.md", "README.txt")
    info = E.provenance({}, [0], None)
    assert info["dirty"] is True
    assert info["code_changes"] == ["README.md", "README.txt", "lib/robust_saliency/new.py",
                                    "lib/robust_saliency/x.py", "notebooks/sanitize.cfg"]


def test_write_results(tmp_path):
    import torch

    results = {"rps": np.float64(0.75), "curve": torch.tensor([0.5, 0.25]), "bad": float("nan")}
    params = E.profile_params("smoke")
    path = E.write_results("01_local_gradient_alignment.ipynb", "smoke", results, params,
                           t_start=time.time(), results_dir=tmp_path)
    assert path == tmp_path / "01_local_gradient_alignment_smoke.json"
    doc = json.loads(path.read_text())
    assert doc["results"] == {"rps": 0.75, "curve": [0.5, 0.25], "bad": None}
    assert doc["params"]["n_train"] == params["n_train"] and doc["seeds"] == [0]
    assert doc["provenance"]["profile"] == "smoke" and doc["provenance"]["seeds"] == [0]
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp file left behind
    with pytest.raises(ValueError, match=r"profile='../x' is not valid"):
        E.write_results("nb", "../x", {}, {}, results_dir=tmp_path)


def test_mean_std_table():
    records = [{"m": "a", "s": "x", "v": 1.0}, {"m": "a", "s": "x", "v": 3.0},
               {"m": "b", "s": "x", "v": 2.0}, {"m": "a", "s": "z", "v": 5.0}]
    t = E.mean_std(records, index="m", columns="s", values="v", fmt="{:.2f}")
    assert list(t.index) == ["a", "b"] and list(t.columns) == ["x", "z"]
    assert t.loc["a", "x"] == f"2.00 ± {np.std([1.0, 3.0], ddof=1):.2f}"
    assert t.loc["b", "x"] == "2.00 ± n/a"


def test_fit_is_cached_and_seeded(tmp_path):
    import torch

    params = E.profile_params("smoke", n_train=64, num_epochs=1, batch_size=32)
    train = E.load_data(params, "digits", "train")
    assert len(train) == 64 and E.load_data(params, "digits", "test").x.shape[0] == 200
    a = E.fit(params, train, seed=0, cache_dir=str(tmp_path))
    b = E.fit(params, train, seed=0, cache_dir=str(tmp_path))
    c = E.fit(params, train, seed=1, cache_dir=str(tmp_path))
    assert not a.train_info["from_cache"] and b.train_info["from_cache"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    # initial weights depend on the seed only, not on the global RNG
    torch.manual_seed(123)
    m0 = E.build_model(params, train, seed=0)
    torch.manual_seed(456)
    m1 = E.build_model(params, train, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(m0.state_dict().values(), m1.state_dict().values()))


def test_notebook_profiles_layer_between_profile_and_overrides():
    nb = "01_local_gradient_alignment"
    cpu = E.profile_params("cpu", notebook=nb)
    assert cpu["size"] == E.notebook_settings(nb)["cpu"]["size"]
    assert cpu["seeds"] == E.PROFILES["cpu"]["seeds"]  # generic value kept where not overridden
    assert E.profile_params("cpu", notebook=nb, size=24, seeds=None)["size"] == 24
    # a fresh copy each time: editing one does not leak into the next
    cpu["grid"]["l2"].append({"lam": 5.0})
    assert {"lam": 5.0} not in E.profile_params("cpu", notebook=nb)["grid"]["l2"]
    with pytest.raises(ValueError, match="notebook='99_nope'"):
        E.profile_params("cpu", notebook="99_nope")
    for prof in E.PROFILES:  # every notebook grid constructs its methods
        p = E.profile_params(prof, notebook=nb)
        if "grid" in p:
            E.check_grid(p["grid"])


def test_build_model_normalizes_with_the_train_statistics():
    import torch

    from robust_saliency import models

    params = E.profile_params("smoke", normalize=True, model="lenet",
                              model_kw={"width": 4, "hidden": 8})
    train = E.load_data(params, "shapes", "train", size=16, n=40)
    net = E.build_model(params, train, seed=0)
    assert isinstance(net[0], models.Normalize)
    mean = train.x.mean((0, 2, 3))
    assert torch.allclose(net[0].mean, mean, atol=1e-6)
    assert torch.allclose(net[0].std, train.x.std((0, 2, 3)), atol=1e-6)
    assert net[1].out_channels == 4  # model_kw reached the builder
    other = E.build_model(params, train, model="small_cnn", seed=0)  # model_kw is lenet's only
    assert isinstance(other[0], models.Normalize)
    plain = E.build_model({**params, "normalize": False}, train, seed=0)
    assert not isinstance(plain[0], models.Normalize)


def test_fit_init_from_copies_the_weights_and_changes_the_key(tmp_path):
    import torch

    params = E.profile_params("smoke", n_train=32, num_epochs=1, batch_size=32, lr=1e-12)
    train = E.load_data(params, "digits", "train")
    teacher = E.fit(params, train, seed=0, cache_dir=str(tmp_path))
    student = E.fit(params, train, seed=1, init_from=teacher, cache_dir=str(tmp_path))
    # lr ~ 0: one Adam step moves each weight by at most ~lr, so the student is the teacher
    for p, q in zip(teacher.state_dict().values(), student.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-9)
    scratch = E.fit(params, train, seed=1, cache_dir=str(tmp_path))
    assert scratch.train_info["key"] != student.train_info["key"]
    other = E.build_model(params, E.load_data(params, "shapes", "train", size=16, n=32), seed=0)
    with pytest.raises(ValueError, match="init_from"):
        E.fit(params, train, seed=0, init_from=other, cache_dir=str(tmp_path))


def test_check_grid():
    grid = {"l2": [{"eps": 4, "lam": 0.1}], "atex": [{"n_shifts": 2}]}
    assert E.check_grid(grid) is grid
    with pytest.raises(ValueError, match="grid key 'nope'"):
        E.check_grid({"nope": [{}]})
    with pytest.raises(ValueError, match="grid key 'l2'"):
        E.check_grid(grid, methods=["ce", "atex"])
    with pytest.raises(ValueError, match="lam=-1"):
        E.check_grid({"l2": [{"lam": -1}]})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        E.check_grid({"hessian": [{"lamda": 1e-3}]})
    with pytest.raises(ValueError, match="grid="):
        E.check_grid({"l2": []})


def test_select_hparams_follows_p1_rule():
    rows = [{"score": 0.95, "accuracy": 0.80}, {"score": 0.90, "accuracy": 0.865},
            {"score": 0.92, "accuracy": 0.861}, {"score": 0.80, "accuracy": 0.90}]
    # within 1% of 0.87: rows 1, 2 and 3; the highest score among them is row 2
    assert E.select_hparams(rows, 0.87) == (2, "highest score within tolerance")
    # a wider tolerance admits row 0, which has the highest score overall
    assert E.select_hparams(rows, 0.87, tol=0.1)[0] == 0
    # none within tolerance: the most accurate
    assert E.select_hparams(rows, 0.99) == (3, "none within tolerance: most accurate")
    # equal scores: the more accurate wins
    tie = [{"score": 0.9, "accuracy": 0.85}, {"score": 0.9, "accuracy": 0.86}]
    assert E.select_hparams(tie, 0.86)[0] == 1
    with pytest.raises(ValueError, match="rows"):
        E.select_hparams([], 0.5)


def test_cached_eval(tmp_path):
    import torch

    params = E.profile_params("smoke", n_train=32, num_epochs=1, batch_size=32)
    train = E.load_data(params, "digits", "train")
    net = E.fit(params, train, seed=0, cache_dir=str(tmp_path))
    calls = []

    def fn(p):
        calls.append(1)
        return {"acc": torch.tensor([0.5, 0.25]) * p["n"]}

    code = ("robust_saliency.metrics",)
    a = E.cached_eval("acc", net, {"n": 2}, fn, code=code, cache_dir=tmp_path)
    b = E.cached_eval("acc", net, {"n": 2}, fn, code=code, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(a["acc"], b["acc"])
    E.cached_eval("acc", net, {"n": 3}, fn, code=code, cache_dir=tmp_path)  # another config: computed
    assert len(calls) == 2
    bare = torch.nn.Linear(2, 2)  # no training key: never cached
    E.cached_eval("acc", bare, {"n": 2}, fn, code=code, cache_dir=tmp_path)
    E.cached_eval("acc", bare, {"n": 2}, fn, code=code, cache_dir=tmp_path)
    assert len(calls) == 4


def test_batch_of_tensor_and_item_datasets():
    import torch

    params = E.profile_params("smoke")
    ds = E.load_data(params, "digits", "test")
    x, y = E.batch(ds, 5)
    assert torch.equal(x, ds.x[:5]) and torch.equal(y, ds.y[:5])

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((1, 2, 2), float(i)), i

    xi, yi = E.batch(Items())
    assert xi.shape == (3, 1, 2, 2) and yi.tolist() == [0, 1, 2] and xi[2].eq(2).all()


def test_fit_method_atex_fine_tunes_the_seed_teacher(cache_dir):
    params = E.profile_params("smoke", n_train=32, num_epochs=2, batch_size=32, atex_epochs=1)
    train = E.load_data(params, "digits", "train")
    teacher = E.fit_method(params, train, "ce", seed=0)
    student = E.fit_method(params, train, "atex", seed=0,
                           hparams={"n_shifts": 1, "n_orth": 1, "smooth_n": 1})
    assert len(teacher.train_history) == 2 and len(student.train_history) == 1
    again = E.fit_method(params, train, "atex", seed=0,
                         hparams={"n_shifts": 1, "n_orth": 1, "smooth_n": 1})
    assert again.train_info["from_cache"] and again.train_info["key"] == student.train_info["key"]
    other_seed = E.fit_method(params, train, "atex", seed=1,
                              hparams={"n_shifts": 1, "n_orth": 1, "smooth_n": 1})
    assert other_seed.train_info["key"] != student.train_info["key"]


def test_evaluate_saliency_is_cached(cache_dir):
    import torch

    params = E.profile_params("smoke", n_train=32, num_epochs=1, batch_size=32, rps_n=1,
                              attributions=["grad"], rps_eps=16, rps_eps_grid=[4, 16],
                              attack_eps=4, attack_steps=1)
    train = E.load_data(params, "digits", "train")
    test = E.load_data(params, "digits", "test")
    net = E.fit(params, train, seed=0)
    x, y = E.batch(test, 4)
    a = E.evaluate_saliency(params, net, test, x, y)
    with torch.no_grad():  # the accuracy on the whole test set, not on the evaluated batch
        acc = (net.eval()(test.x).argmax(1) == test.y).double().mean().item()
    assert a["accuracy"] == pytest.approx(acc, abs=1e-12) and set(a["report"]) == {"grad"}
    r = a["report"]["grad"]
    assert set(r["rps"]) == {"cosine", "pcc", "ssim", "ssim_p1"} and set(r["rps"]["ssim_p1"]) == {4, 16}
    assert (r["x_adv"] - x).abs().max() <= 4 / 255 + 1e-6
    files = list((cache_dir / "eval").glob("saliency-*.pt"))
    assert len(files) == 1
    b = E.evaluate_saliency(params, net, test, x, y)
    assert b["accuracy"] == a["accuracy"] and len(list((cache_dir / "eval").glob("*.pt"))) == 1
    E.evaluate_saliency({**params, "attack_steps": 2}, net, test, x, y)
    assert len(list((cache_dir / "eval").glob("*.pt"))) == 2


def test_evaluate_saliency_without_attack_is_a_cheap_subset(cache_dir):
    params = E.profile_params("smoke", n_train=32, num_epochs=1, batch_size=32, rps_n=1,
                              attributions=["grad", "lrp"], rps_eps=16, rps_eps_grid=[4, 16],
                              attack_eps=4, attack_steps=1)
    train = E.load_data(params, "digits", "train")
    test = E.load_data(params, "digits", "test")
    net = E.fit(params, train, seed=0)
    x, y = E.batch(test, 4)
    cheap = E.evaluate_saliency(params, net, test, x, y, attributions=["grad"], rps_eps=[16],
                                attack=None)
    full = E.evaluate_saliency(params, net, test, x, y)
    assert set(cheap["report"]) == {"grad"} and "x_adv" not in cheap["report"]["grad"]
    assert set(cheap["report"]["grad"]["rps"]["cosine"]) == {16}
    # same draws (seed 0, first chunk): the cheap RPS equals the full one at that eps
    assert torch_equal(cheap["report"]["grad"]["rps"]["cosine"][16],
                       full["report"]["grad"]["rps"]["cosine"][16])
    assert cheap["accuracy"] == full["accuracy"]


def torch_equal(a, b):
    import torch

    return bool(torch.allclose(a, b, atol=1e-6))


def test_validate_names_a_list_passed_as_a_string():
    with pytest.raises(ValueError, match=r"seeds='\[0, 1\]' is a string.*-y \"seeds: \[0, 1\]\""):
        E.validate(seeds="[0, 1]")
    with pytest.raises(ValueError, match="grid="):
        E.validate(grid="{l2: [{lam: 0.1}]}")
    assert E.validate(dataset="shapes", note="a plain string")["note"] == "a plain string"


def test_progress_follows_the_environment(monkeypatch):
    monkeypatch.delenv("ROBUST_SALIENCY_PROGRESS", raising=False)
    assert E.profile_params("cpu")["progress"] is True
    monkeypatch.setenv("ROBUST_SALIENCY_PROGRESS", "0")
    assert E.profile_params("cpu")["progress"] is False
    assert E.profile_params("cpu", progress=True)["progress"] is True  # explicit wins
    monkeypatch.setenv("ROBUST_SALIENCY_PROGRESS", "1")
    assert E.profile_params("smoke")["progress"] is True
    monkeypatch.setenv("ROBUST_SALIENCY_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="ROBUST_SALIENCY_PROGRESS='maybe'.*accepted: 0 or 1"):
        E.profile_params("cpu")


def test_hp_text_shows_a_grid_point():
    from robust_saliency.runs import hp_text

    assert hp_text({"lam": 0.1, "h": 1.5, "mode": "l1", "steps": 3}) == "lam=0.1, h=1.5, mode=l1, steps=3"
    assert hp_text({"lam": 1e-05}) == "lam=1e-05" and hp_text({}) == hp_text(None) == "–"
