"""Tests of robust_saliency.cost: the saved-tensor memory counter and side-by-side step costs."""
import pytest
import torch
import torch.nn as nn

from robust_saliency import cost
from robust_saliency import methods as M


def test_saved_tensor_counter_exact_on_a_linear_layer():
    """Linear + tanh: the graph saves x (for the weight grad) and tanh's output, nothing else."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 7)
    x = torch.randn(3, 5)
    exclude = {p.untyped_storage().data_ptr() for p in lin.parameters()}
    with cost.SavedTensorPeak(exclude) as c:
        loss = torch.tanh(lin(x)).sum()
        assert c.live == (3 * 5 + 3 * 7) * 4
        loss.backward()
    assert c.peak == (3 * 5 + 3 * 7) * 4 and c.live == 0


def test_saved_tensor_counter_counts_a_shared_storage_once():
    x = torch.randn(4, 6, requires_grad=True)
    with cost.SavedTensorPeak() as c:
        y = x * x  # saves x twice (both operands): one storage
        assert c.live == 4 * 6 * 4
        y.sum().backward()
    assert c.live == 0


def _setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus(beta=3), nn.Flatten(),
                        nn.Linear(3 * 8 * 8, 4))
    batches = [(torch.rand(6, 1, 8, 8), torch.randint(0, 4, (6,))) for _ in range(3)]
    methods = {"ce": M.get("ce"), "l2_cosd": M.get("l2_cosd")}
    return net, methods, batches


def test_step_costs_ratios_and_independence_of_order():
    net, methods, batches = _setup()
    torch.manual_seed(1)
    res = cost.step_costs(net, methods, batches, warmup=1)
    assert set(res) == {"ce", "l2_cosd"}
    ce, reg = res["ce"], res["l2_cosd"]
    for m in (ce, reg):
        assert len(m["times_s"]) == 2 and m["graph_bytes_left_after_step"] == 0
    paired = sorted(t / c for t, c in zip(reg["times_s"], ce["times_s"]))
    assert reg["time_ratio"] == pytest.approx(sum(paired) / 2)  # median of two
    # the ratios are the method's measurements over ce's (recomputed here from the raw fields)
    assert reg["time_ratio_of_medians"] == pytest.approx(reg["median_time_s"] / ce["median_time_s"])
    assert reg["mem_ratio"] == pytest.approx(reg["peak_graph_mb"] / ce["peak_graph_mb"])
    state = 4 * sum(p.numel() * p.element_size() for p in net.parameters())  # params, grads, 2 Adam moments
    peak = {k: v["peak_graph_mb"] * 2 ** 20 for k, v in res.items()}
    assert reg["mem_state_ratio"] == pytest.approx((peak["l2_cosd"] + state) / (peak["ce"] + state))
    # double backprop holds more graph memory than one forward/backward
    assert reg["mem_ratio"] > 1.2 and 1.0 < reg["mem_state_ratio"] < reg["mem_ratio"]
    # each method trains its own copy: the losses do not depend on who went first
    torch.manual_seed(1)
    rev = cost.step_costs(net, dict(reversed(list(methods.items()))), batches, warmup=1)
    assert rev["ce"]["final_loss"] == pytest.approx(ce["final_loss"], abs=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), _setup()[0].parameters()))


def test_step_costs_counts_a_held_teacher_in_the_state():
    import copy

    net, methods, batches = _setup()
    teacher = copy.deepcopy(net)
    teacher.register_parameter("big", nn.Parameter(torch.zeros(100_000)))  # held, never used
    atex = M.get("atex", teacher=teacher, n_shifts=1, n_orth=1, smooth_n=1)
    res = cost.step_costs(net, {"ce": methods["ce"], "atex": atex}, batches[:2], warmup=1)
    p_net = sum(p.numel() * 4 for p in net.parameters())
    p_teacher = sum(p.numel() * 4 for p in teacher.parameters())
    peak = {k: v["peak_graph_mb"] * 2 ** 20 for k, v in res.items()}
    expected = (peak["atex"] + 4 * p_net + p_teacher) / (peak["ce"] + 4 * p_net)
    assert res["atex"]["mem_state_ratio"] == pytest.approx(expected)


def test_step_costs_bad_input():
    net, methods, batches = _setup()
    with pytest.raises(ValueError, match="reference='ce'"):
        cost.step_costs(net, {"l2": methods["l2_cosd"]}, batches)
    with pytest.raises(ValueError, match="warmup"):
        cost.step_costs(net, methods, batches[:1], warmup=1)


def test_step_costs_do_not_depend_on_the_global_rng():
    # l2_cosd samples its perturbation from the global RNG: step_costs seeds it (and restores it)
    net, methods, batches = _setup()
    torch.manual_seed(1)
    a = cost.step_costs(net, methods, batches, warmup=1)["l2_cosd"]["final_loss"]
    torch.manual_seed(2)
    b = cost.step_costs(net, methods, batches, warmup=1)["l2_cosd"]["final_loss"]
    after = torch.rand(3)
    torch.manual_seed(2)
    assert a == b and torch.equal(after, torch.rand(3))  # the caller's RNG stream is untouched
    c = cost.step_costs(net, methods, batches, warmup=1, seed=5)["l2_cosd"]["final_loss"]
    assert c != a
