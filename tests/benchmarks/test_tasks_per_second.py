"""Tasks per second of each Omniglot 5-way 1-shot preset (pytest-benchmark's OPS column), one task at a time and one
training iteration of a meta-batch of 8 per engine (tasks per second: 8 x OPS). Their counters are per task and per
iteration: the engines must do the same gradient and Hessian-vector work; their device operations are where they
differ, the batched engine's one pass for all 8."""
from __future__ import annotations

import pytest
import torch

from metagrad.bench.regression.cases import meta_batch_cases, tasks_per_second_cases


@pytest.mark.parametrize("case", tasks_per_second_cases(), ids=lambda case: case.id)
def test_tasks_per_second(measure_case, case):
    result, _ = measure_case(case)
    assert torch.isfinite(result.gradient).all()


@pytest.mark.slow
@pytest.mark.parametrize("case", meta_batch_cases(), ids=lambda case: case.id)
def test_meta_batch_tasks_per_second(measure_case, case):
    _, counters = measure_case(case)
    assert counters["operations"] > 0 and counters["grad_evals"] > 0
