"""Device operations: how many computing ATen operations a piece of code dispatches.

The GPU profiles (README, "Two engines") put the batched engine's time into many small kernels: once a CUDA
graph has taken the host out, an iteration costs about what its kernels cost, and at these sizes that is
roughly their number. This counts them without a GPU and without timing: every operation that reaches the
device, less the ones that launch nothing (views, allocations, metadata queries, conversions that return
their input). On CUDA most operations launch one kernel each, and cuDNN adds its own (layout transposes)
inside a convolution. The count is deterministic for a given torch, device type and code, so it serves as a
benchmark counter that moves when a change adds or removes work, where wall-clock time only drifts.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# operations that allocate or inspect and launch no kernel
NOT_COMPUTING = {
    torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default, torch.ops.aten.new_empty.default,
    torch.ops.aten.new_empty_strided.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.is_same_size.default,
    torch.ops.aten._has_same_storage_numel.default, torch.ops.aten.lift_fresh.default,
    torch.ops.aten._efficientzerotensor.default, torch.ops.aten.sym_size.int, torch.ops.aten.sym_stride.int,
    torch.ops.aten.sym_numel.default, torch.ops.aten.sym_storage_offset.default,
}


def _storages(value: Any) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tree_flatten(value)[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.untyped_storage().nbytes() > 0}


class OperationCounter(TorchDispatchMode):
    """Counts the computing operations dispatched while active, by name (``counts``) and in all (``total``).

    On a real device: it tells a result from its input by their storage, which ``meta`` tensors lack."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view or func in NOT_COMPUTING:
            return out
        # an operation that writes its inputs (in place, out=) computes; one that returns an input unchanged
        # (a `to` or `contiguous` with nothing to do) does not
        if func._schema.is_mutable or not (_storages(out) <= _storages((args, kwargs))):
            self.counts[str(func.overloadpacket.__name__)] += 1
        return out


def count_operations(run: Callable[[], Any]) -> OperationCounter:
    """Run ``run`` once under an ``OperationCounter`` and return the counter."""
    with OperationCounter() as counter:
        run()
    return counter
