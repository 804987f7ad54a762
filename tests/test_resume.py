"""Resume is exact for every training method: a run stopped at an epoch boundary (the callback
raising after epoch 2) and re-run from its checkpoint ends with bitwise the same weights as an
uninterrupted run, for every method of ``methods.METHODS`` (and each of P3's training modes,
group DRO's online weights and a group DRO wrapping an adversarial method)."""
import pytest
import torch
import torch.nn as nn

from robust_saliency import methods, training
from robust_saliency.data import ArrayDataset

N, K = 24, 3


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 6, 6, generator=g)
    y = x.flatten(1)[:, :K].argmax(1)
    return ArrayDataset(x, y, num_classes=K, classes=[str(k) for k in range(K)], name="toy",
                        split="train", extras={"groups": torch.arange(N) % 4,
                                               "gaze": torch.rand(N, 1, 6, 6, generator=g) * 255})


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 10), nn.Softplus(), nn.Linear(10, K))


def _teacher():
    return training.train(_model(1), training.CE(), torch.utils.data.DataLoader(_data(), batch_size=8),
                          num_epochs=1, progress=False)


_VARIANTS = {"norm_regularized_at": [{"training": t} for t in ("fast", "iterative", "mifgsm", "free")]
             + [{"mode": "weighted_l2"}],
             "group_dro": [{}, {"mode": "online", "regularizer": "at_pgd", "reg_kw": {"steps": 2}}],
             "iga": [{"steps": 2}], "at_pgd": [{"steps": 2}]}
CASES = [(name, kw) for name in methods.NAMES for kw in _VARIANTS.get(name, [{}])]


def _build(name, kw):
    return methods.get(name, teacher=_teacher(), **kw) if name == "atex" else methods.get(name, **kw)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}{kw or ''}" for n, kw in CASES])
def test_resume_at_an_epoch_boundary_is_bitwise_identical(name, kw, tmp_path):
    cfg = dict(num_epochs=3, lr=0.05, optimizer="sgd", schedule="multistep", milestones=(2,),
               seed=3, progress=False)
    loader = torch.utils.data.DataLoader(_data(), batch_size=8)
    reference = _weights(training.train(_model(), _build(name, kw), loader, cfg))

    def stop(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt("stopped after epoch 2")

    cached = {**cfg, "cache_dir": str(tmp_path)}
    with pytest.raises(KeyboardInterrupt):
        training.train(_model(), _build(name, kw), loader, cached, callback=stop)
    torch.manual_seed(12345)  # the caller's RNG state must not matter
    resumed = training.train(_model(), _build(name, kw), loader, cached)
    assert resumed.train_info["resumed_from_epoch"] == 2
    for k, v in reference.items():
        assert torch.equal(v, resumed.state_dict()[k]), k
