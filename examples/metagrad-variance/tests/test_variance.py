"""The variance harness's own checks: its spread is the per-task meta-gradients' mean squared distance from their
mean, computed independently here; its results are written whole and rendered by the report."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from metagrad_variance.measure import VarianceConfig, measure_variance, write_variance
from metagrad_variance.render import render

from metagrad import (
    FunctionalModel,
    LinearRegressionConfig,
    LinearRegressor,
    Result,
    make_algorithm,
    sample_linear_regression_task,
    squared_error_loss,
)

TASK = LinearRegressionConfig(dim=6, n_support=12, n_query=12)


@pytest.mark.slow
def test_the_spread_is_the_mean_squared_distance_of_the_per_task_meta_gradients_from_their_mean():
    config = VarianceConfig(task=TASK, tasks=5, inner_steps=3, seed=2, algorithms=("maml", "imaml"))
    frame = measure_variance(config).set_index("algorithm")
    generator = torch.Generator().manual_seed(2)  # the same theta and tasks, drawn in the same order
    theta = torch.randn(TASK.dim, generator=generator, dtype=torch.float64) / math.sqrt(TASK.dim)
    tasks = [sample_linear_regression_task(TASK, generator).task for _ in range(5)]
    model = FunctionalModel(LinearRegressor(TASK.dim), squared_error_loss)
    for name in ("maml", "imaml"):
        algorithm = make_algorithm(name, inner_steps=3, inner_lr=TASK.default_inner_lr, lam=TASK.lam)
        gradients = [algorithm.meta_gradient(model, theta, task).gradient for task in tasks]
        mean = sum(gradients) / len(gradients)
        spread = sum(float((g - mean) @ (g - mean)) for g in gradients) / len(gradients)
        assert math.isclose(frame.loc[name, "spread"], spread, rel_tol=1e-12)
        assert math.isclose(frame.loc[name, "relative_spread"], spread / float(mean @ mean), rel_tol=1e-12)
        assert frame.loc[name, "spread"] > 0  # the tasks differ


def test_written_results_are_rendered_with_every_algorithm(tmp_path):
    config = VarianceConfig(task=TASK, tasks=2, inner_steps=1, algorithms=("fomaml", "reptile"))
    write_variance(config, tmp_path / "a", progress=False)
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["variance.csv", "variance.png"]
    rendering = render([Result("a", tmp_path / "a")])
    (table,) = rendering.tables
    assert "first-order MAML" in table.text and "Reptile" in table.text
    assert len(pd.read_csv(tmp_path / "a" / "variance.csv")) == 2
    assert [figure.filename for figure in rendering.figures] == ["variance-a.png"]
