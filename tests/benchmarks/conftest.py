"""``measure_case``: one benchmark case (``metagrad.bench.regression.cases``) timed, its deterministic counters put
into ``extra_info``, its time as a ratio to one gradient of the same network on the same batch, and the work gate.

The gate compares every case's counters with the counter file, ``--counter-baseline`` (default: this checkout's
``reports/benchmarks/counters-<device type>.json``; ``none`` turns it off), and fails the benchmark on any change
with a message that names the counter, its old and new value and the command that accepts the change. Under the
README's test command the benchmarks run once each, untimed, so the gate runs on every test run. With
``--time-ratio-baseline=JSON`` (a saved timed run) a time ratio more than ``--time-ratio-tolerance`` percent above
that run's fails too: opt-in, since time, even as a ratio, moves with the machine's load.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch

from metagrad.bench.measure.timing import median_time, synchronize
from metagrad.bench.regression.cases import Case, prepare
from metagrad.bench.regression.gate import CounterFile, default_counter_file, gate_failure, load_counters

from ..data_paths import require_data

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_ROUNDS = 10


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Cases on a real data set are real-data tests: their committed counters (CG steps that stop early, images
    decoded) were counted on it."""
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if isinstance(case, Case) and case.data:
            item.add_marker(pytest.mark.real_data)


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


def counter_file(config: pytest.Config, device: torch.device) -> Path | None:
    option = config.getoption("--counter-baseline")
    if option == "none":
        return None
    if option:
        return Path(option)
    path = default_counter_file(ROOT, device.type)
    return path if path.exists() else None  # no file for this device type yet (a GPU's is saved on a GPU)


@cache
def _counters(path: Path) -> CounterFile:
    return load_counters(path)


@cache
def _saved_run(path: str) -> dict[str, dict]:
    return {entry["name"]: entry.get("extra_info", {}) for entry in json.loads(Path(path).read_text())["benchmarks"]}


def _is_plug_in(algorithm: str | None) -> bool:
    from metagrad.algorithms.registry import ENTRIES

    return algorithm is not None and algorithm in ENTRIES and ENTRIES[algorithm].origin != "metagrad"


def _time_ratio(benchmark, reference, device: torch.device, config: pytest.Config, name: str) -> None:
    reference_s, _ = median_time(reference, device, REFERENCE_ROUNDS)
    ratio = benchmark.stats.stats.median / reference_s
    benchmark.extra_info.update(reference_s=reference_s, time_ratio=ratio)
    baseline = config.getoption("--time-ratio-baseline")
    if baseline is None:
        return
    old = _saved_run(baseline).get(name, {}).get("time_ratio")
    tolerance = config.getoption("--time-ratio-tolerance")
    if old is not None and ratio > old * (1 + tolerance / 100):
        pytest.fail(f"{name}: time ratio {old:.2f} -> {ratio:.2f} gradients ({ratio / old - 1:+.0%}), over the "
                    f"tolerance of {tolerance:g}% against {baseline}")


@pytest.fixture
def measure_case(benchmark, request, bench_device):
    def measure(case: Case):
        data_root = str(require_data(case.data)) if case.data else None
        prepared = prepare(case, bench_device, data_root)
        counters = prepared.count()
        result = benchmark.pedantic(on_device(prepared.run, bench_device), rounds=prepared.rounds, warmup_rounds=1,
                                    iterations=1)
        benchmark.extra_info.update(prepared.info)
        benchmark.extra_info.update(counters)
        if case.not_gated:
            benchmark.extra_info["not_gated"] = case.not_gated
        if not benchmark.disabled:
            _time_ratio(benchmark, prepared.reference, bench_device, request.config, case.name)
        path = counter_file(request.config, bench_device)
        if path is not None and not (_is_plug_in(case.algorithm) and case.name not in _counters(path).benchmarks):
            accept = ("metagrad counters --save " + (str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
                                                      else str(path)))
            failure = gate_failure(case.name, counters, _counters(path), path, accept)
            if failure:
                pytest.fail(failure, pytrace=False)
        return result, counters

    return measure
