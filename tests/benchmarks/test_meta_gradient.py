"""Time of one task's meta-gradient per registered algorithm and inner-step count, and of a Hessian-vector product
against a gradient, on the synthetic and the Omniglot problem (``metagrad.bench.regression.cases``)."""
from __future__ import annotations

import pytest

from metagrad.bench.regression.cases import meta_gradient_cases, reference_cases


@pytest.mark.parametrize("case", meta_gradient_cases(), ids=lambda case: case.id)
def test_meta_gradient(measure_case, case):
    _, counters = measure_case(case)
    assert counters["flops"] > 0 and counters["grad_evals"] >= 1


@pytest.mark.parametrize("case", reference_cases(), ids=lambda case: case.id)
def test_hessian_vector_product_against_gradient(measure_case, case):
    """The HVP row costs the gradient with its graph plus one product through it (one CG iteration)."""
    _, counters = measure_case(case)
    assert counters["hvp_evals"] == (case.params[1] == "hvp")
