"""Time of one task's meta-gradient per algorithm and inner-step count, and of a Hessian-vector
product against a gradient; their deterministic counters go into ``extra_info``.

Two problems: ``synthetic`` (random 28x28 pixels, no data needed) and a small real Omniglot case
(5-way 1-shot). Both use the profiler's problem and runner (bench/harnesses/profile.py), so a benchmark and
a profile row measure the same thing.
"""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import algorithm_names
from metagrad.bench.harnesses.profile import Measure, ProfileConfig, build_problem, runner
from metagrad.bench.measure.memory import count_work

from ..data_paths import require_data

INNER_STEPS = (1, 4, 16)
ALGORITHMS = algorithm_names()


def _config(problem: str) -> ProfileConfig:
    if problem == "synthetic":
        return ProfileConfig(dataset="random-images", ways=5, shots=5, queries=5, filters=16)
    root = require_data("omniglot-py")
    return ProfileConfig(dataset="omniglot", ways=5, shots=1, queries=15, filters=32, data_root=str(root))


@pytest.fixture(scope="module", params=["synthetic", "omniglot"])
def problem(request):
    torch.manual_seed(0)
    config = _config(request.param)
    return request.param, config, build_problem(config)


def _benchmark(benchmark, record_counters, problem, measure: Measure) -> None:
    name, config, built = problem
    run = runner(config, built, measure)
    counters = count_work(run)
    benchmark.pedantic(run, rounds=10, warmup_rounds=1, iterations=1)
    record_counters(problem=name, algorithm=measure.algorithm, inner_steps=measure.inner_steps,
                    cg_steps=measure.cg_steps, **counters)
    assert counters["flops"] > 0


@pytest.mark.parametrize("inner_steps", INNER_STEPS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_meta_gradient(benchmark, record_counters, problem, algorithm, inner_steps):
    cg_steps = 5 if algorithm == "imaml" else 0
    _benchmark(benchmark, record_counters, problem, Measure(algorithm, inner_steps, cg_steps))


@pytest.mark.parametrize("operation", ["gradient", "hvp"])
def test_hessian_vector_product_against_gradient(benchmark, record_counters, problem, operation):
    """The HVP row costs the gradient with its graph plus one product through it (one CG iteration)."""
    _benchmark(benchmark, record_counters, problem, Measure(operation))
