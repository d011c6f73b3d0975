"""The CI guard of paper Figure 2b on the CPU: iMAML's memory does not grow with inner or CG steps, nor does it
with a learned lambda (the lambda gradient comes from the same solve), MAML's grows linearly. Measured on the real
20-way 5-shot shapes (28x28 images, 100 support and 300 query images) with a 32-filter ConvNet and random pixels:
memory depends on shapes, not pixel values.
"""
from __future__ import annotations

import numpy as np
import pytest

from metagrad.bench.harnesses.profile import Measure, ProfileConfig, build_problem, measure_rss_in_subprocess, runner
from metagrad.bench.measure.memory import SavedTensorPeak
from tests.limits import HANG_S

CONFIG = ProfileConfig(dataset="random-images", ways=20, shots=5, queries=15, filters=32, repeats=1)
MAML_STEPS = (1, 8, 64)


@pytest.fixture(scope="module")
def problem():
    return build_problem(CONFIG)


def saved_peak(problem, measure: Measure) -> int:
    run = runner(CONFIG, problem, measure)
    with SavedTensorPeak() as saved:
        run()
    assert saved.current_bytes == 0, "the graph must be released after the meta-gradient"
    return saved.peak_bytes


@pytest.fixture(scope="module")
def saved(problem):
    return {
        "imaml_steps": [saved_peak(problem, Measure("imaml", k, 5)) for k in (1, 64)],
        "imaml_cg": [saved_peak(problem, Measure("imaml", 16, cg)) for cg in (1, 20)],
        "imaml_lambda_steps": [saved_peak(problem, Measure("imaml-lambda", k, 5)) for k in (1, 64)],
        "imaml_lambda_cg": [saved_peak(problem, Measure("imaml-lambda", 16, cg)) for cg in (1, 20)],
        "maml": [saved_peak(problem, Measure("maml", k)) for k in MAML_STEPS],
        "gradient": max(saved_peak(problem, Measure("gradient", loss_set=s)) for s in ("support", "query")),
    }


def flat_within(values, tolerance):
    return max(values) <= (1 + tolerance) * min(values)


@pytest.mark.slow
def test_imaml_saved_bytes_do_not_grow_with_inner_or_cg_steps(saved):
    assert flat_within(saved["imaml_steps"], 0.05), saved["imaml_steps"]
    assert flat_within(saved["imaml_cg"], 0.05), saved["imaml_cg"]
    # and stay within Theorem 1's bound of twice one gradient's memory
    assert max(saved["imaml_steps"] + saved["imaml_cg"]) <= 2 * saved["gradient"]


@pytest.mark.slow
def test_a_learned_lambda_keeps_imamls_memory(saved):
    """Learning lambda adds no saved tensor that grows: flat in inner and CG steps, within Theorem 1's bound, and
    within 5 % of iMAML's own."""
    assert flat_within(saved["imaml_lambda_steps"], 0.05), saved["imaml_lambda_steps"]
    assert flat_within(saved["imaml_lambda_cg"], 0.05), saved["imaml_lambda_cg"]
    assert max(saved["imaml_lambda_steps"] + saved["imaml_lambda_cg"]) <= 2 * saved["gradient"]
    assert flat_within([max(saved["imaml_lambda_steps"]), max(saved["imaml_steps"])], 0.05)


@pytest.mark.slow
def test_maml_saved_bytes_grow_linearly(saved):
    maml = saved["maml"]
    slope, _ = np.polyfit(MAML_STEPS, maml, 1)
    assert slope > 0
    assert maml[-1] >= 10 * maml[0]
    residual = np.array(maml) - np.polyval(np.polyfit(MAML_STEPS, maml, 1), MAML_STEPS)
    assert np.abs(residual).max() <= 0.05 * maml[-1]  # linear, not merely increasing


@pytest.fixture(scope="module")
def rss():
    def delta(measure: Measure) -> int:
        result = measure_rss_in_subprocess(CONFIG, measure, timeout_s=HANG_S)
        assert result.get("status", "ok") == "ok", result
        return result["rss_delta_bytes"]

    return {
        "imaml_steps": [delta(Measure("imaml", k, 5)) for k in (1, 64)],
        "imaml_cg": [delta(Measure("imaml", 16, cg)) for cg in (1, 20)],
        "maml": [delta(Measure("maml", k)) for k in (1, 64)],
    }


@pytest.mark.slow
def test_imaml_peak_rss_does_not_grow_with_inner_or_cg_steps(rss):
    assert flat_within(rss["imaml_steps"], 0.05), rss["imaml_steps"]
    assert flat_within(rss["imaml_cg"], 0.05), rss["imaml_cg"]


@pytest.mark.slow
def test_maml_peak_rss_grows_with_inner_steps(rss):
    one, many = rss["maml"]
    assert many >= 10 * one, rss["maml"]
