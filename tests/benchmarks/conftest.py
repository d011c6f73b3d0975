"""``record_counters``: put a benchmark's deterministic counters into ``extra_info`` and, with
``--counter-baseline JSON``, fail when they differ from the baseline run's."""
from __future__ import annotations

from functools import cache

import pytest

from .counters import counter_changes, load_baseline


@cache
def _baseline(path: str) -> dict:
    return load_baseline(path)


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
