"""Finds what would stall a GPU iteration, or break its CUDA-graph capture, without a GPU.

Run the code on the ``meta`` device (shapes only, no data) under ``HostWork``: it records every
operation that reads a device value back to the host (``item``, ``nonzero``: on ``meta`` these raise
anyway) and every operation that brings a host tensor of one or more dimensions to the device (a copy
from the host, or a host index tensor used on device data). On CUDA the first is a synchronization and
the second a copy from pageable memory, and neither can be captured in a graph. Host scalars (0-dim
tensors) are allowed: they travel as kernel arguments.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

READS_BACK = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
              torch.ops.aten.masked_select.default, torch.ops.aten._unique2.default}


class HostWork(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = any(t.device.type == "meta" for t in tensors) or str(kwargs.get("device", "")) == "meta"
        host = [tuple(t.shape) for t in tensors if t.device.type == "cpu" and t.dim() > 0]
        if func in READS_BACK:
            self.found.append(f"{func} reads a device value back")
        elif on_device and host:
            self.found.append(f"{func} brings host tensors {host} to the device")
        return func(*args, **kwargs)
