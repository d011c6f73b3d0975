"""Memory measures: bytes autograd holds for backward (peak), process RSS, CUDA and NVML.

The saved-tensor peak is the measure the CPU memory guard rests on. Every tensor autograd saves for
backward goes through ``saved_tensors_hooks``; we keep a reference count per storage, so a storage
saved by several nodes counts once, and it leaves the count when its last saving node is freed
(after backward, or when its graph is dropped). The running total at any moment is the memory the
graph pins; its maximum is the peak. Summing every save over a task is not a peak, and keying on
addresses alone miscounts because freed addresses are reused: holding the reference while counted
prevents exactly that, and costs nothing, since autograd holds the same tensor anyway.

``torch.func.grad``/``vjp`` refuse these hooks; every measured path in ``algorithms`` runs on
``torch.autograd`` (and ``higher``, which builds on it).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from metagrad.bench.measure.timing import synchronize


class _Saved:
    __slots__ = ("tensor", "key", "counter")

    def __init__(self, tensor: Tensor, key: tuple, counter: SavedTensorPeak):
        self.tensor, self.key, self.counter = tensor, key, counter

    def __del__(self) -> None:
        self.counter._release(self.key)


class SavedTensorPeak:
    """Context manager: ``peak_bytes`` of live saved storages, and ``current_bytes`` now."""

    def __init__(self) -> None:
        self._live: dict[tuple, list[int]] = {}  # storage key -> [references, bytes]
        self.current_bytes = 0
        self.peak_bytes = 0
        self.saves = 0

    def _pack(self, tensor: Tensor) -> _Saved:
        self.saves += 1
        storage = tensor.untyped_storage()
        key = (tensor.device.type, tensor.device.index, storage.data_ptr())
        entry = self._live.get(key)
        if entry is None:
            nbytes = storage.nbytes()
            self._live[key] = [1, nbytes]
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        else:
            entry[0] += 1
        # detach: a saved output holding its own grad_fn forms a cycle that not even gc can free
        # (pytorch/pytorch#115255); autograd restores the grad_fn on unpack, so nothing is lost
        return _Saved(tensor.detach(), key, self)

    def _release(self, key: tuple) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current_bytes -= entry[1]
            del self._live[key]

    @staticmethod
    def _unpack(saved: _Saved) -> Tensor:
        return saved.tensor

    def __enter__(self) -> SavedTensorPeak:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if not match:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def available_bytes(device: torch.device) -> int:
    """Memory that can still be allocated: free CUDA memory, or the kernel's MemAvailable on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.MULTILINE)
    if not match:
        raise RuntimeError("/proc/meminfo has no MemAvailable")
    return int(match.group(1)) * 1024


@dataclass
class CudaMemory:
    max_allocated_bytes: int  # torch.cuda.max_memory_allocated during the region, minus what was allocated before
    nvml_used_bytes: int | None  # the device's used memory (all processes, caching allocator included) after the region


def nvml_used_bytes(device: torch.device) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used)
    except Exception:  # NVML missing or not permitted: the CUDA allocator's numbers still stand
        return None


def subprocess_environment() -> dict[str, str]:
    """Environment for RSS measurements: a fixed mmap threshold, so freed large blocks go back to the
    kernel at once and RSS follows live memory instead of glibc's heap high-water mark."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
    return env


def cuda_peak(run: Callable[[], Any], device: torch.device) -> CudaMemory:
    """The CUDA memory ``run`` allocates at its peak beyond what was allocated before, and NVML's view."""
    synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return CudaMemory(max_allocated_bytes=peak, nvml_used_bytes=nvml_used_bytes(device))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()


def count_work(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The deterministic measures of one run: its own counts, peak bytes saved for backward, FLOPs.

    Runs ``run`` twice (the saved-tensor hooks and the FLOP counter would see each other's work).
    """
    with SavedTensorPeak() as saved:
        counts = run()
    with FlopCounterMode(display=False) as flops:
        run()
    return {**counts, "saved_bytes": saved.peak_bytes, "flops": flops.get_total_flops()}
