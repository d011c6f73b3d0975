"""Wall-clock time of work on a device: one way for every harness (profile, throughput, the trainer, the benchmarks).

A CUDA call returns before its kernels finish, so every interval is taken between synchronizations of the device;
on the CPU a synchronization is nothing.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``run()``'s result and its seconds, the device synchronized at both ends."""
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return result, time.perf_counter() - start


def median_time(run: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of ``run`` over ``repeats`` calls after one warm-up call, and every time."""
    timed(run, device)
    times = [timed(run, device)[1] for _ in range(repeats)]
    return statistics.median(times), times


def interquartile_range(values: list[float]) -> float:
    """The spread of repeated times: third quartile less first (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]
