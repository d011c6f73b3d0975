"""The device-operation counter, and what it shows: the batched engine's work is one pass whatever the
meta-batch, where the per-task engine's grows with every task."""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import TaskBatch, batched, make_algorithm
from metagrad.bench.measure.operations import count_operations

from .test_batched_engine import CONFIGS, learned_start, problem


def test_computing_operations_count_and_views_allocations_and_no_ops_do_not():
    x = torch.randn(4, 3)
    counter = count_operations(lambda: ((x + 1).view(12).t() * 2, torch.empty(5), x.to(torch.float32),
                                        x.contiguous(), x.add_(1), x.to(torch.float64)))
    # x + 1, * 2, the in-place add_ and the conversion to float64; not the view, the transpose, the
    # allocation, nor the `to` and `contiguous` that return x itself
    assert counter.total == 4
    assert counter.counts == {"add": 1, "mul": 1, "add_": 1, "_to_copy": 1}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["convnet", "convnet-channels-last"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_batched_engine_runs_as_many_operations_for_six_tasks_as_for_two(config, kind, monkeypatch):
    """A per-task loop inside the batched engine (a Python loop over tasks, or an operator whose derivative
    loops over a grouped convolution's groups) would make the count grow with the meta-batch; in either
    memory order of the stacked network. As the engine runs on a GPU: on the CPU Newton-CG's line search ends
    once every task has its step, so its count there depends on the tasks."""
    monkeypatch.setattr(batched, "reads_back_cheaply", lambda device: False)
    model, theta, tasks = problem(kind)
    name, hyperparameters = CONFIGS[config]
    algorithm = make_algorithm(name, **hyperparameters)
    theta = learned_start(algorithm, model, theta)
    small, large = TaskBatch.stack(tasks[:2]), TaskBatch.stack(tasks)
    for batch in (small, large):  # caches filled, once per meta-batch size (Reptile's minibatch indices, pack's order)
        algorithm.batched_meta_gradient(model, theta, batch)
    counts = [count_operations(lambda batch=batch: algorithm.batched_meta_gradient(model, theta, batch)).total
              for batch in (small, large)]
    per_task = count_operations(lambda: algorithm.meta_gradient(model, theta, tasks[0])).total
    assert counts[0] == counts[1] > 0 and per_task > 0
