"""Training cost per step, measured side by side (P1 Table 2).

``step_costs(model, methods, batches)`` trains one copy of ``model`` per method, interleaving
the methods round-robin on the same batches (batch ``r`` for every method in round ``r``), so a
slow phase of a shared machine hits all methods alike.  A step is what ``training.train``
times: zero_grad, the method's loss, backward, gradient clipping, Adam step, ``loss.item()``.
Time ratios are medians over rounds of the paired ratio t_method / t_reference of the same
round.

Memory is the per-step peak of the bytes held by the autograd graphs (``SavedTensorPeak``): a
``torch.autograd.graph.saved_tensors_hooks`` counter adds a tensor's storage when an operation
saves it for backward (each storage once; the model's parameters excluded) and subtracts it
when the graph node that saved it is freed.  This is the memory that double backpropagation
multiplies (activations and the saved intermediates of the first backward pass); it is exact
and deterministic (independent of the allocator, the number of threads and other processes)
and works on CPU, where the resident set size is a process-wide high-water mark dominated by
the interpreter and libraries.  It leaves out what every method holds alike (parameters,
gradients, Adam's moments) and kernels' transient workspace, so its ratios are larger than
ratios of total memory; ``mem_state_ratio`` adds parameters, gradients and Adam state (and any
module a method holds, e.g. ATEX's teacher) to both sides as a stand-in for the total that P1
measured on a GPU.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import TYPE_CHECKING, Any

import torch

from .common import device_of, seeded, to_device_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["SavedTensorPeak", "step_costs"]


class SavedTensorPeak:
    """Live and peak bytes of the tensors saved for backward inside the context (autograd graphs).

    Each storage is counted once however many nodes save it; storages in ``exclude`` (data
    pointers, e.g. the parameters) are not counted.  A saved tensor stops counting when the
    node that saved it is freed (end of backward, or the graph going out of scope).
    """

    def __init__(self, exclude: Iterable[int] = ()) -> None:
        self.exclude = set(exclude)
        self.refs = {}
        self.live = 0
        self.peak = 0

    class _Held:
        __slots__ = ("owner", "key", "tensor")

        def __init__(self, owner, key, tensor):
            self.owner, self.key, self.tensor = owner, key, tensor

        def __del__(self):
            if self.key is not None:
                self.owner._release(self.key)

    def _pack(self, t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        # a detached alias: holding ``t`` itself would make an output saved by its own grad_fn
        # a reference cycle through the graph (autograd restores the metadata on unpack)
        alias = t.detach()
        if key in self.exclude or storage.nbytes() == 0 or t.device.type == "meta":
            return self._Held(self, None, alias)
        entry = self.refs.get(key)
        if entry is None:
            self.refs[key] = [1, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        else:
            entry[0] += 1
        return self._Held(self, key, alias)

    @staticmethod
    def _unpack(held):
        return held.tensor

    def _release(self, key):
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def __enter__(self) -> SavedTensorPeak:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool | None:
        return self._ctx.__exit__(*exc)


def _step(model, method, optimizer, params, x, y, grad_clip):
    """One training step as ``training.train`` times it; returns the loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss, _ = method(model, x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.item())


def _param_bytes(module):
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _held_modules_bytes(method):
    """Parameter bytes of the modules a method holds (e.g. ATEX's teacher)."""
    return sum(_param_bytes(v) for v in vars(method).values() if isinstance(v, torch.nn.Module))


def step_costs(model: torch.nn.Module,
               methods: Mapping[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]],
               batches: Sequence[tuple[torch.Tensor, torch.Tensor]], reference: str = "ce", lr: float = 1e-3,
               grad_clip: float | None = 0.5, warmup: int = 1,
               seed: int | None = 0) -> dict[str, dict[str, Any]]:
    """Time and graph memory per training step of each method, relative to ``reference``.

    ``methods``: ``{name: Method}`` (``methods.get``), including ``reference``.
    ``batches``: a list of ``(x, y)``, moved to ``model``'s device before any round (the copies
    are not timed); the first ``warmup`` rounds are not timed.  Every method
    trains its own deep copy of ``model`` (on its device; a module a method holds, e.g. ATEX's
    teacher, must be there too) with Adam (``lr``) and clipping (``grad_clip``), so
    the results do not depend on the order of the methods; the rounds run with torch's global
    RNG seeded by ``seed`` (restored after), so methods that sample perturbations give the same
    losses whatever ran before.  After the timed rounds one more
    step of every method on the first batch is run under ``SavedTensorPeak``.

    Returns ``{name: {"times_s", "median_time_s", "time_ratio", "time_ratio_of_medians",
    "peak_graph_mb", "mem_ratio", "mem_state_ratio", "graph_bytes_left_after_step",
    "final_loss"}}``; the reference has ratios 1.
    """
    if reference not in methods:
        raise ValueError(f"methods={sorted(methods)} must include reference={reference!r} "
                         f"(ratios are relative to it)")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} is not valid; accepted: an int >= 0")
    if len(batches) <= warmup:
        raise ValueError(f"len(batches)={len(batches)} must exceed warmup={warmup} "
                         f"(at least one timed round)")
    device = device_of(model)
    for name, method in methods.items():
        for held in vars(method).values():
            if isinstance(held, torch.nn.Module) and device_of(held) not in (None, device):
                raise ValueError(f"method {name!r} holds a module on {device_of(held)} and the model is on "
                                 f"{device}; accepted: both on one device (move the model there)")
    batches = [to_device_of(model, x, y) for x, y in batches]
    runs = {}
    for name, method in methods.items():
        net = copy.deepcopy(model)
        params = [p for p in net.parameters() if p.requires_grad]
        runs[name] = {"model": net, "method": method, "params": params,
                      "opt": torch.optim.Adam(params, lr=lr), "times": [], "losses": []}
    with seeded(seed):
        for r, (x, y) in enumerate(batches):
            for run in runs.values():
                t0 = time.perf_counter()
                loss = _step(run["model"], run["method"], run["opt"], run["params"], x, y,
                             grad_clip)
                dt = time.perf_counter() - t0
                if r >= warmup:
                    run["times"].append(dt)
                    run["losses"].append(loss)
        x, y = batches[0]
        for run in runs.values():
            exclude = {p.untyped_storage().data_ptr() for p in run["model"].parameters()}
            with SavedTensorPeak(exclude) as counter:
                _step(run["model"], run["method"], run["opt"], run["params"], x, y, grad_clip)
            run["peak_bytes"] = counter.peak
            run["leak_bytes"] = counter.live  # graph memory still held after the step (0)
    ref = runs[reference]
    state_ref = 4 * _param_bytes(ref["model"]) + _held_modules_bytes(ref["method"])
    out = {}
    for name, run in runs.items():
        # parameters, gradients, Adam's two moments, and any module the method holds
        state = 4 * _param_bytes(run["model"]) + _held_modules_bytes(run["method"])
        paired = [t / c for t, c in zip(run["times"], ref["times"])]
        out[name] = {
            "times_s": run["times"],
            "median_time_s": statistics.median(run["times"]),
            "time_ratio": statistics.median(paired),
            "time_ratio_of_medians": statistics.median(run["times"]) / statistics.median(ref["times"]),
            "peak_graph_mb": run["peak_bytes"] / 2 ** 20,
            "mem_ratio": run["peak_bytes"] / max(ref["peak_bytes"], 1),
            "mem_state_ratio": (run["peak_bytes"] + state) / (ref["peak_bytes"] + state_ref),
            "graph_bytes_left_after_step": run["leak_bytes"],
            "final_loss": run["losses"][-1],
        }
    return out
