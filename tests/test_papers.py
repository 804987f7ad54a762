"""Tests of robust_saliency.papers: each paper's facts (reported numbers, reference settings)
and protocol, and the notebooks' settings files."""

import pytest

from robust_saliency import methods, profiles
from robust_saliency.papers import p1


def test_p1_reference_numbers_are_transcribed_consistently():
    t1 = p1.TABLE1_CIFAR10_LENET
    assert list(t1) == ["ce", "atex", "iga", "hessian", "l2", "l2_cosd"]
    for row in t1.values():
        assert len(row) == 1 + 4 * 3 and all(0 < v < 1 for v in row.values())
    # spot checks against P1's Table 1 text, and its own reading: l2_cosd has the best Grad RPS
    assert t1["ce"]["Accuracy"] == 0.868 and t1["l2_cosd"]["grad A-Ins"] == 0.358
    assert max(t1, key=lambda m: t1[m]["grad RPS"]) == "l2_cosd"
    assert p1.TABLE2_CIFAR10_LENET["l2_cosd"] == (2.75, 2.64)


def test_p1_reference_settings_construct_their_methods_and_fill_the_grid():
    for name, hp in p1.REFERENCE_HPARAMS.items():
        if name != "atex":
            methods.get(name, **hp)
    params = {"methods": ["ce", "l2", "hessian", "iga"], "grid": {"l2": [{"eps": 4, "lam": 0.1}]}}
    g = p1.grid(params)
    assert g == {"l2": [{"eps": 4, "lam": 0.1}], "hessian": [{"lam": 1e-3}], "iga": [{}]}
    g["hessian"][0]["lam"] = 5.0                     # a copy: the reference is not edited
    assert p1.REFERENCE_HPARAMS["hessian"] == {"lam": 1e-3}
    # the paper profile of notebook 01 trains P1's reference settings only
    paper = profiles.profile_params("paper", notebook="01_local_gradient_alignment",
                                    methods=["ce", "l2", "l2_cosd", "hessian", "iga", "atex"])
    assert p1.grid(paper) == {m: [hp] for m, hp in p1.REFERENCE_HPARAMS.items() if m != "ce"}


# The cpu and smoke settings of notebook 01 as they were written in Python before they moved to
# notebooks/01_local_gradient_alignment.yaml: the committed numbers rest on them.
NB01_CPU_GRID = {
    "l2": [{"eps": 4, "lam": v} for v in (0.01, 0.1)],
    "l2_cosd": [{"eps": 4, "lam_l2": a, "lam_cos": b} for a, b in ((0.01, 1.0), (0.01, 10.0), (0.1, 1.0))],
    "hessian": [{"lam": v} for v in (1e-5, 1e-4, 1e-3)],
    "iga": [{"steps": 1, "lam": v} for v in (0.5, 0.05)],
    "atex": [{"n_shifts": 3, "n_orth": 2, "smooth_n": 2}],
}


def test_notebook_01_settings_file_holds_the_committed_settings():
    s = profiles.notebook_settings("01_local_gradient_alignment")
    assert s["cpu"]["grid"] == NB01_CPU_GRID
    assert {k: s["cpu"][k] for k in ("size", "n_train", "n_test", "num_epochs", "lr", "rps_n")} == \
        {"size": 16, "n_train": 4000, "n_test": 1000, "num_epochs": 4, "lr": 2e-3, "rps_n": 5}
    assert s["cpu"]["model_kw"] == {"width": 16, "hidden": 128}
    assert all(isinstance(hp["lam"], float) for hp in s["cpu"]["grid"]["hessian"])


@pytest.mark.parametrize("text,match", [
    ("cpu: [1, 2]\n", "'cpu' must map parameter names"),
    ("gpu: {lr: 0.1}\n", "key 'gpu' is not a profile"),
    ("cpu: {lr: -1}\n", "profile 'cpu': lr=-1"),
    ("cpu: {model: lenett}\n", "profile 'cpu': model='lenett'"),
    ("cpu: {lr: [\n", "not valid YAML"),
])
def test_a_bad_settings_file_is_named_with_its_key(tmp_path, monkeypatch, text, match):
    monkeypatch.setenv("ROBUST_SALIENCY_ROOT", str(tmp_path))
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "07_x.yaml").write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        profiles.profile_params("cpu", notebook="07_x")
    assert "07_x.yaml" in str(err.value)
