"""Episodes per second of the task samplers (decoded images are cached; this is the sampling itself): the host
sampler one task at a time, the device sampler a meta-batch of 32 at a time (episodes per second: 32 x OPS)."""
from __future__ import annotations

import pytest

from metagrad.bench.regression.cases import SAMPLER_SETTINGS, sampler_cases


@pytest.mark.parametrize("case", [c for c in sampler_cases() if c.test == "test_task_sampler"], ids=lambda c: c.id)
def test_task_sampler(measure_case, case):
    _, counters = measure_case(case)
    _, _, ways, shots, queries = SAMPLER_SETTINGS[case.params[0]]
    assert counters["images"] == ways * (shots + queries)


@pytest.mark.parametrize("case", [c for c in sampler_cases() if c.test == "test_device_sampler"], ids=lambda c: c.id)
def test_device_sampler(measure_case, case):
    batch, counters = measure_case(case)
    _, _, ways, shots, queries = SAMPLER_SETTINGS[case.params[0]]
    assert counters["images"] == ways * (shots + queries) and batch.size == 32
