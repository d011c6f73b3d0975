"""``record_counters``: put a benchmark's deterministic counters into ``extra_info`` and, with
``--counter-baseline JSON``, fail when they differ from the baseline run's."""
from __future__ import annotations

from functools import cache

import pytest
import torch

from metagrad.bench.measure.timing import synchronize

from .counters import counter_changes, load_baseline


@cache
def _baseline(path: str) -> dict:
    return load_baseline(path)


@pytest.fixture
def bench_device(request) -> torch.device:
    """``--bench-device``: the device the benchmarks run on."""
    return torch.device(request.config.getoption("--bench-device"))


def on_device(function, device: torch.device):
    """``function`` timed to its end on ``device``: a CUDA call returns before its kernels finish."""
    if device.type != "cuda":
        return function

    def synchronized():
        result = function()
        synchronize(device)
        return result

    return synchronized


@pytest.fixture
def record_counters(benchmark, request):
    path = request.config.getoption("--counter-baseline")

    def record(**counters) -> None:
        benchmark.extra_info.update(counters)
        if path is None:
            return
        baseline = _baseline(path).get(benchmark.fullname)
        if baseline is None:
            return  # a benchmark the baseline run did not have: nothing to compare
        changes = counter_changes(counters, baseline)
        if changes:
            pytest.fail(f"work counters differ from {path}: " + "; ".join(changes)
                        + " (if the change is intended, save a new baseline)")

    return record
