"""Tests of robust_saliency.training: the shared loop, its cache, resume and determinism."""
import dataclasses
import math
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from robust_saliency import cache as C
from robust_saliency import training as T

N, D, K = 50, 12, 3  # samples, features, classes; batch 16 -> batches of 16, 16, 16, 2


def make_data(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 3, 4, generator=g)
    y = (x.flatten(1)[:, :K].argmax(1)).long()  # learnable labels
    return TensorDataset(x, y)


def make_loader(ds=None, batch_size=16, **kw):
    return DataLoader(make_data() if ds is None else ds, batch_size=batch_size, **kw)


def make_model(seed=0, hidden=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(D, hidden), nn.Softplus(), nn.Linear(hidden, K))


def base_cfg(**kw):
    cfg = dict(num_epochs=2, lr=0.05, optimizer="sgd", momentum=0.9, schedule="multistep",
               milestones=(1,), progress=False, seed=0)
    cfg.update(kw)
    return cfg


class Counting(T.Method):
    """CE on a randomly perturbed input (uses the global torch RNG), counting calls."""

    name = "counting_test"

    def __init__(self, fail_at=None, noise=0.05, **hp):
        super().__init__(noise=noise, **hp)
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, model, x, y):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        logits = model(x)
        xn = x + self.hparams["noise"] * torch.rand_like(x)
        loss = F.cross_entropy(logits, y) + F.cross_entropy(model(xn), y)
        return loss, {"ce": F.cross_entropy(logits, y), "const": 2.0}  # a tensor log too


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_equal_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_different_weights(a, b):
    assert any(not torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------
# Methods registry and config
# ----------------------------------------------------------------------------------------------

def test_train_takes_a_method_instance_not_a_name():
    with pytest.raises(ValueError, match=r"method='ce' is a name.*methods\.get\('ce'"):
        T.train(make_model(), "ce", make_loader(), base_cfg(num_epochs=1))
    with pytest.raises(ValueError, match="method=.*accepted: a Method instance"):
        T.train(make_model(), object(), make_loader(), base_cfg(num_epochs=1))


@pytest.mark.parametrize("field,value,match", [
    ("num_epochs", 0, "num_epochs=0"), ("num_epochs", 1.5, "num_epochs=1.5"),
    ("lr", -1.0, "lr=-1.0"), ("optimizer", "rmsprop", "optimizer='rmsprop'.*adam"),
    ("schedule", "linear", "schedule='linear'.*cosine"), ("milestones", (3, 2), "milestones"),
    ("grad_clip", 0.0, "grad_clip=0.0"), ("seed", -1, "seed=-1"), ("momentum", 1.0, "momentum"),
    ("progress", "yes", "progress='yes'"), ("weight_decay", -0.1, "weight_decay"),
])
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        T.TrainConfig(**{field: value})


def test_config_from_dict_and_overrides():
    cfg = T.TrainConfig.make({"num_epochs": 3, "milestones": [1, 2]}, lr=0.5)
    assert cfg == T.TrainConfig(num_epochs=3, milestones=(1, 2), lr=0.5)
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epochs'\]"):
        T.TrainConfig.make({"epochs": 3})
    with pytest.raises(ValueError, match="schedule='multistep'"):
        T.TrainConfig(schedule="multistep")


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

def test_train_history_and_logs(tmp_path):
    model = make_model()
    method = Counting()
    out = T.train(model, method, make_loader(), base_cfg(num_epochs=5, lr=0.05, optimizer="adam", schedule="none"))
    assert out is model and not model.training
    assert method.calls == 5 * 4
    hist = model.train_history
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    for h in hist:
        assert 0.0 <= h["accuracy"] <= 1.0 and h["step_time"] > 0 and h["epoch_time"] > 0
        assert h["mem_measure"] == "cpu_maxrss" and h["peak_mem_mb"] > 0
        assert h["const"] == pytest.approx(2.0)  # method logs, sample-weighted mean
        assert h["ce"] < h["loss"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert model.train_info["from_cache"] is False and model.train_info["path"] is None


def test_loss_and_accuracy_are_sample_weighted_and_from_clean_batch():
    # lr so small that the weights do not move: accuracy/loss must equal the initial model's
    ds = make_data()
    for method in (T.CE(), Counting(noise=0.0)):
        model = make_model(seed=3)
        with torch.no_grad():
            logits = model(ds.tensors[0])
        acc = (logits.argmax(1) == ds.tensors[1]).double().mean().item()
        ce = F.cross_entropy(logits, ds.tensors[1]).item()
        T.train(model, method, make_loader(ds), base_cfg(num_epochs=1, lr=1e-30, schedule="none"))
        h = model.train_history[0]
        assert h["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert h["ce"] == pytest.approx(ce, rel=1e-5)


def test_accuracy_fallback_when_method_never_sees_clean_x():
    class NoisyOnly(T.Method):
        name = "noisy_only_test"

        def __call__(self, model, x, y):
            return F.cross_entropy(model(x + 1e-3), y), {}

    ds = make_data()
    model = make_model(seed=4)
    with torch.no_grad():
        acc = (model(ds.tensors[0]).argmax(1) == ds.tensors[1]).double().mean().item()
    T.train(model, NoisyOnly(), make_loader(ds), base_cfg(num_epochs=1, lr=1e-30, schedule="none"))
    assert model.train_history[0]["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_replays_repeat_each_batch():
    method = Counting()
    method.replays = 3
    T.train(make_model(), method, make_loader(), base_cfg(num_epochs=1))
    assert method.calls == 3 * 4


def test_non_finite_loss_raises():
    class Bad(T.Method):
        name = "bad_test"

        def __call__(self, model, x, y):
            return model(x).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="non-finite loss"):
        T.train(make_model(), Bad(), make_loader(), base_cfg())


def test_progress_bar_goes_to_stderr_only_when_asked(capsys):
    T.train(make_model(), T.CE(), make_loader(), base_cfg(num_epochs=1, progress=False))
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == ""
    T.train(make_model(), T.CE(), make_loader(), base_cfg(num_epochs=1, progress=True))
    cap = capsys.readouterr()
    assert "train ce" in cap.err and "loss=" in cap.err and cap.out == ""


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------

def test_same_seed_same_weights_regardless_of_global_rng():
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(weights(T.train(make_model(), Counting(), make_loader(shuffle=True),
                                    base_cfg())))
    assert_equal_weights(runs[0], runs[1])
    other = weights(T.train(make_model(), Counting(), make_loader(), base_cfg(seed=1)))
    assert_different_weights(runs[0], other)


def test_shuffle_order_depends_on_seed_and_epoch():
    ds = TensorDataset(torch.arange(20.0).reshape(20, 1), torch.zeros(20, dtype=torch.long))
    cfg0, cfg1 = T.TrainConfig(seed=0), T.TrainConfig(seed=1)
    order = lambda cfg, e: torch.cat([b[0] for b in T._epoch_loader(DataLoader(ds, 5), cfg, e)])
    assert torch.equal(order(cfg0, 0), order(cfg0, 0))
    assert not torch.equal(order(cfg0, 0), order(cfg0, 1))
    assert not torch.equal(order(cfg0, 0), order(cfg1, 0))
    assert sorted(order(cfg0, 0).flatten().tolist()) == list(range(20))


def test_global_rng_and_determinism_flags_restored():
    seen = {}

    class Probe(T.Method):
        name = "probe_test"

        def __call__(self, model, x, y):
            seen["det"] = torch.are_deterministic_algorithms_enabled()
            return F.cross_entropy(model(x), y), {}

    model = make_model()  # seeds the global RNG itself
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    T.train(model, Probe(), make_loader(), base_cfg(num_epochs=1, deterministic=True))
    assert seen["det"] is True and torch.are_deterministic_algorithms_enabled() is False
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------------------------
# Optimizer, clipping, schedule
# ----------------------------------------------------------------------------------------------

class Huge(T.Method):
    name = "huge_test"

    def __call__(self, model, x, y):
        return 1e4 * F.cross_entropy(model(x), y), {}


def _manual_step(model, ds, lr, clip):
    x, y = ds.tensors
    model.zero_grad()
    (1e4 * F.cross_entropy(model(x), y)).backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    scale = min(1.0, clip / (float(norm) + 1e-6)) if clip is not None else 1.0
    with torch.no_grad():
        new = [p - lr * scale * g for p, g in zip(model.parameters(), grads)]
    return new, float(norm)


@pytest.mark.parametrize("clip", [0.5, None])
def test_grad_clip_matches_manual(clip):
    ds = make_data()
    model = make_model(seed=5)
    reference = make_model(seed=5)
    expected, norm = _manual_step(reference, ds, lr=0.1, clip=clip)
    assert norm > 100 * 0.5  # the clip is active
    T.train(model, Huge(), make_loader(ds, batch_size=N),
            base_cfg(num_epochs=1, lr=0.1, momentum=0.0, schedule="none", grad_clip=clip))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-4, atol=1e-6)
    step = torch.sqrt(sum(((p.detach() - q.detach()) ** 2).sum()
                          for p, q in zip(model.parameters(), make_model(seed=5).parameters())))
    if clip is not None:
        assert float(step) == pytest.approx(0.1 * clip, rel=1e-3)
        assert model.train_history[0]["grad_norm"] == pytest.approx(norm, rel=1e-4)
    else:
        assert float(step) > 10 * 0.1 * 0.5


@pytest.mark.parametrize("schedule,kw,factors", [
    ("none", {}, [1, 1, 1, 1]),
    ("step", {"step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5]),
    ("multistep", {"milestones": (1, 3), "gamma": 0.1}, [1, 0.1, 0.1, 0.01]),
    ("cosine", {}, [(1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]),
])
def test_schedule_sets_lr_per_epoch(schedule, kw, factors):
    model = make_model()
    T.train(model, T.CE(), make_loader(batch_size=N),
            base_cfg(num_epochs=4, lr=0.2, optimizer="adam", schedule=schedule,
                     **{"milestones": (), **kw}))
    lrs = [h["lr"] for h in model.train_history]
    assert lrs == pytest.approx([0.2 * f for f in factors], rel=1e-9)


def test_sgd_weight_decay_and_optimizer_choice():
    ds = make_data()
    x, y = ds.tensors
    ref = make_model(seed=6)
    F.cross_entropy(ref(x), y).backward()
    expected = [p.detach() - 0.1 * (p.grad + 0.01 * p.detach()) for p in ref.parameters()]
    model = T.train(make_model(seed=6), T.CE(), make_loader(ds, batch_size=N),
                    base_cfg(num_epochs=1, lr=0.1, schedule="none", weight_decay=0.01))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7)
    results = [weights(T.train(make_model(), T.CE(), make_loader(),
                               base_cfg(optimizer=o, weight_decay=0.1))) for o in T.OPTIMIZERS]
    assert_different_weights(results[0], results[1])  # adam vs adamw differ with decay
    assert_different_weights(results[0], results[2])


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------

def test_cache_hit_returns_identical_weights_without_training(tmp_path):
    cfg = base_cfg(cache_dir=str(tmp_path))
    first = Counting()
    trained = weights(T.train(make_model(), first, make_loader(), cfg))
    assert first.calls == 8
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt")  # checkpoint removed
    second = Counting()
    model = T.train(make_model(), second, make_loader(), cfg)
    assert second.calls == 0 and model.train_info["from_cache"] is True
    assert_equal_weights(trained, weights(model))
    assert len(model.train_history) == 2 and not model.training


def test_threads_apply_to_the_call_only():
    seen = []

    class Spy(T.CE):
        def __call__(self, model, x, y):
            seen.append(torch.get_num_threads())
            return super().__call__(model, x, y)

    before = torch.get_num_threads()
    T.train(make_model(), Spy(), make_loader(), base_cfg(num_epochs=1, threads=before + 1))
    assert set(seen) == {before + 1} and torch.get_num_threads() == before


def test_cache_key_covers_configuration():
    loader = make_loader()
    cfg = T.TrainConfig(**base_cfg())
    key = T.train_key(make_model(), Counting(), loader, cfg)
    assert key == T.train_key(make_model(), Counting(), loader, dataclasses.asdict(cfg))
    changed = {"num_epochs": 3, "lr": 0.01, "optimizer": "adam", "weight_decay": 1e-4,
               "momentum": 0.5, "schedule": "cosine", "milestones": (2,), "gamma": 0.5,
               "step_size": 3, "grad_clip": 1.0, "seed": 1, "deterministic": False,
               "shuffle": False, "augment": "crop_flip", "crop_padding": 2,
               "threads": torch.get_num_threads() + 1}  # 1 and 2 threads give different weights
    excluded = {"progress": True, "cache_dir": "/elsewhere", "device": "cpu", "checkpoint": False,
                "threads": torch.get_num_threads()}  # None means the count in effect
    fields = {f.name for f in dataclasses.fields(T.TrainConfig)}
    assert set(changed) | set(excluded) == fields  # every field is covered by this test
    keys = {key}
    for field, value in changed.items():
        keys.add(T.train_key(make_model(), Counting(), loader, cfg, **{field: value}))
    assert len(keys) == len(changed) + 1
    for field, value in excluded.items():
        assert T.train_key(make_model(), Counting(), loader, cfg, **{field: value}) == key
    others = [
        T.train_key(make_model(seed=1), Counting(), loader, cfg),            # model init
        T.train_key(make_model(hidden=9), Counting(), loader, cfg),          # architecture
        T.train_key(make_model(), Counting(noise=0.1), loader, cfg),         # method hparam
        T.train_key(make_model(), T.CE(), loader, cfg),                      # method name
        T.train_key(make_model(), Counting(), make_loader(make_data(1)), cfg),   # data
        T.train_key(make_model(), Counting(), make_loader(make_data(n=49)), cfg),  # length
        T.train_key(make_model(), Counting(), make_loader(batch_size=8), cfg),   # batch size
        T.train_key(make_model(), Counting(), make_loader(drop_last=True), cfg),
    ]
    assert len(set(others) | {key}) == len(others) + 1
    ds = make_data()
    ds.tensors[0][-1, 0, 0, 0] += 0.5  # last sample changed
    assert T.train_key(make_model(), Counting(), make_loader(ds), cfg) != key


def test_cache_key_uses_dataset_fingerprint():
    class Fingerprinted(Dataset):
        def __init__(self, fingerprint):
            self.fingerprint, self.ds = fingerprint, make_data()

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            raise AssertionError("the key must not read samples when there is a fingerprint")

    cfg = base_cfg()
    k1 = T.train_key(make_model(), T.CE(), make_loader(Fingerprinted("a")), cfg)
    k2 = T.train_key(make_model(), T.CE(), make_loader(Fingerprinted("b")), cfg)
    assert k1 != k2 and k1 == T.train_key(make_model(), T.CE(), make_loader(Fingerprinted("a")), cfg)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_file_retrains(tmp_path, damage):
    cfg = base_cfg(cache_dir=str(tmp_path))
    trained = weights(T.train(make_model(), Counting(), make_loader(), cfg))
    (path,) = list((tmp_path / "models").iterdir())
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    again = Counting()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        model = T.train(make_model(), again, make_loader(), cfg)
    assert again.calls == 8 and model.train_info["from_cache"] is False
    assert_equal_weights(trained, weights(model))
    # the file was rewritten: a third call is a clean hit
    third = Counting()
    T.train(make_model(), third, make_loader(), cfg)
    assert third.calls == 0


# ----------------------------------------------------------------------------------------------
# Resume after a kill
# ----------------------------------------------------------------------------------------------

def _uninterrupted(cfg):
    return weights(T.train(make_model(), Counting(), make_loader(), {**cfg, "cache_dir": None}))


def test_resume_after_exception_in_callback_is_bitwise_identical(tmp_path):
    cfg = base_cfg(num_epochs=3, cache_dir=str(tmp_path), grad_clip=1.0)
    reference = _uninterrupted(cfg)

    def kill_after_first(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        T.train(make_model(), Counting(), make_loader(), cfg, callback=kill_after_first)
    ckpt = [p for p in (tmp_path / "models").iterdir() if p.suffix == ".ckpt"]
    assert len(ckpt) == 1 and C.load_verified(ckpt[0])["epoch"] == 1
    method = Counting()
    torch.manual_seed(999)  # the global RNG state must not matter
    model = T.train(make_model(), method, make_loader(), cfg)
    assert method.calls == 2 * 4 and model.train_info["resumed_from_epoch"] == 1
    assert_equal_weights(reference, weights(model))
    assert [h["epoch"] for h in model.train_history] == [1, 2, 3]
    assert sorted(p.suffix for p in (tmp_path / "models").iterdir()) == [".pt"]


def test_resume_after_kill_mid_epoch_is_bitwise_identical(tmp_path):
    cfg = base_cfg(num_epochs=2, cache_dir=str(tmp_path))
    reference = _uninterrupted(cfg)
    with pytest.raises(KeyboardInterrupt):
        T.train(make_model(), Counting(fail_at=6), make_loader(), cfg)  # step 2 of epoch 2
    method = Counting()
    model = T.train(make_model(), method, make_loader(), cfg)
    assert method.calls == 4 and model.train_info["resumed_from_epoch"] == 1
    assert_equal_weights(reference, weights(model))


def test_corrupt_checkpoint_restarts_from_scratch(tmp_path):
    cfg = base_cfg(num_epochs=2, cache_dir=str(tmp_path))
    reference = _uninterrupted(cfg)
    with pytest.raises(KeyboardInterrupt):
        T.train(make_model(), Counting(fail_at=6), make_loader(), cfg)
    (ckpt,) = list((tmp_path / "models").iterdir())
    ckpt.write_bytes(ckpt.read_bytes()[:50])
    method = Counting()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        model = T.train(make_model(), method, make_loader(), cfg)
    assert method.calls == 8 and model.train_info["resumed_from_epoch"] == 0
    assert_equal_weights(reference, weights(model))


def test_resume_after_hard_kill_of_the_process(tmp_path):
    """os._exit after epoch 1 (no finally blocks run), then a rerun in this process."""
    import subprocess
    import textwrap

    # the thread count enters the key: the child must compute with this process's count
    cfg = base_cfg(num_epochs=2, cache_dir=str(tmp_path), threads=torch.get_num_threads())
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        import test_training as t
        from robust_saliency import training as T
        T.train(t.make_model(), t.Counting(), t.make_loader(), {cfg!r},
                callback=lambda epoch, record: os._exit(3))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    method = Counting()
    model = T.train(make_model(), method, make_loader(), cfg)
    assert method.calls == 4 and model.train_info["resumed_from_epoch"] == 1
    assert_equal_weights(_uninterrupted(cfg), weights(model))


def test_cache_key_reads_every_sample_of_a_plain_dataset():
    class Plain(Dataset):  # no fingerprint, not a TensorDataset: every item must be hashed
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            return self.ds[i]

    cfg = base_cfg()
    key = T.train_key(make_model(), T.CE(), make_loader(Plain(make_data())), cfg)
    assert key == T.train_key(make_model(), T.CE(), make_loader(Plain(make_data())), cfg)
    middle = make_data()
    middle.tensors[0][N // 2, 0, 1, 1] += 0.25      # neither in the first nor the last batch
    assert T.train_key(make_model(), T.CE(), make_loader(Plain(middle)), cfg) != key
    label = make_data()
    label.tensors[1][N // 2] = (label.tensors[1][N // 2] + 1) % K
    assert T.train_key(make_model(), T.CE(), make_loader(Plain(label)), cfg) != key


def test_cache_key_of_a_subset_covers_its_indices():
    cfg = base_cfg()
    ds = make_data()
    a = T.train_key(make_model(), T.CE(), make_loader(Subset(ds, list(range(0, 30)))), cfg)
    b = T.train_key(make_model(), T.CE(), make_loader(Subset(ds, [0] + list(range(21, 50)))), cfg)
    c = T.train_key(make_model(), T.CE(), make_loader(Subset(make_data(), list(range(0, 30)))), cfg)
    assert a != b and a == c
    assert T.dataset_identity(Subset(ds, [2, 3]))["subset_of"] == T.dataset_identity(ds)


# ----------------------------------------------------------------------------- augmentation
def test_crop_flip_matches_a_per_sample_transcription():
    """Each output is the H x W window at the drawn offset of the zero-padded image, flipped when
    drawn (checked against numpy slicing with the same draws), and all offsets/flips occur."""
    import numpy as np

    x = torch.rand(64, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    out = T.crop_flip(x, 2, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    i, j = torch.randint(0, 5, (64,), generator=g), torch.randint(0, 5, (64,), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    for n in range(64):
        want = xp[n, :, i[n]:i[n] + 5, j[n]:j[n] + 6]
        want = want[:, :, ::-1] if flip[n] else want
        np.testing.assert_array_equal(out[n].numpy(), want)
    assert 0 < int(flip.sum()) < 64 and len(set(i.tolist())) == 5
    torch.testing.assert_close(T.crop_flip(x, 0, torch.Generator().manual_seed(1)).sum((1, 2, 3)), x.sum((1, 2, 3)))
    with pytest.raises(ValueError, match="crop_flip"):
        T.crop_flip(torch.rand(4, 12), 2)


def test_augmented_training_repeats_and_differs_from_plain():
    ds = TensorDataset(torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(3)),
                       torch.arange(40) % 3)

    def run(**kw):
        torch.manual_seed(123)  # the global RNG must not matter
        model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
        return T.train(model, T.CE(), make_loader(ds), base_cfg(**kw))

    a, b = run(augment="crop_flip"), run(augment="crop_flip")
    plain = run()
    for pa, pb, pp in zip(a.parameters(), b.parameters(), plain.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pp) for pa, pp in zip(a.parameters(), plain.parameters()))
    key = T.train_key(make_model(), T.CE(), make_loader(ds), base_cfg(augment="crop_flip"))
    assert key != T.train_key(make_model(), T.CE(), make_loader(ds), base_cfg())
    assert key != T.train_key(make_model(), T.CE(), make_loader(ds), base_cfg(augment="crop_flip", crop_padding=2))
    with pytest.raises(ValueError, match=r"augment='flip' is not valid; accepted: \('none', 'crop_flip', 'p3_imagenette', 'p3_cub', 'block_order'\)"):
        T.TrainConfig(augment="flip")
