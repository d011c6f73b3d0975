"""Tasks per second of each algorithm (pytest-benchmark's OPS column), Omniglot 5-way 1-shot presets.

Benchmarks, not timed assertions: under the default options they run once as smoke tests; with
``--benchmark-only`` they time. Deterministic counters (gradient and Hessian-vector-product
evaluations, FLOPs, saved bytes, device operations) go into ``extra_info`` for regression checks that must not flake.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec
from metagrad.bench.measure.memory import count_work
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.engines import ENGINES
from metagrad.bench.training.presets import preset
from metagrad.bench.training.steps import Window, training_step

from ..data_paths import require_data
from .conftest import on_device

VARIANTS = ("maml", "fomaml", "reptile", "imaml-gd", "imaml-hf")


@pytest.fixture(scope="module")
def omniglot_tasks():
    root = require_data("omniglot-py")
    source = task_source("omniglot", "train", EpisodeSpec(5, 1, 15), str(root))
    return list(source.tasks.fixed_pool(8, seed=0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_tasks_per_second(benchmark, record_counters, omniglot_tasks, variant, bench_device):
    settings = preset(f"omniglot-5w1s-{variant}")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5).to(bench_device), cross_entropy_loss)
    theta = model.flat_parameters()
    tasks = iter([task.to(bench_device) for task in omniglot_tasks] * 1000)

    def one_task():
        return algorithm.meta_gradient(model, theta, next(tasks))

    def counted():
        record = one_task().record
        return {"grad_evals": record.grad_evals, "hvp_evals": record.hvp_evals}

    counters = count_work(counted)
    result = benchmark.pedantic(on_device(one_task, bench_device), rounds=8, warmup_rounds=1, iterations=1)
    record_counters(variant=variant, **counters)
    assert torch.isfinite(result.gradient).all()


META_BATCH = 8


@pytest.fixture(scope="module")
def omniglot_meta_batch():
    root = require_data("omniglot-py")
    source = task_source("omniglot", "train", EpisodeSpec(5, 1, 15), str(root))
    return source.tasks.sample_batch(torch.Generator().manual_seed(0), META_BATCH)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_meta_batch_tasks_per_second(benchmark, record_counters, omniglot_meta_batch, variant, engine, bench_device):
    """One training iteration (meta-gradients of 8 tasks and the Adam step) per engine: tasks per second is
    8 x OPS. Counters are per iteration: the engines must do the same gradient and Hessian-vector work; their
    device operations (bench/measure/operations.py) are where they differ, the batched engine's one pass for all 8."""
    settings = preset(f"omniglot-5w1s-{variant}")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5).to(bench_device), cross_entropy_loss)
    theta = model.flat_parameters().clone()
    window = Window(theta.device)
    step = training_step(engine, algorithm, model, theta, torch.optim.Adam([theta], lr=1e-3), window)
    batch = omniglot_meta_batch.to(bench_device)

    def one_iteration():
        step(batch)

    with FlopCounterMode(display=False) as flops:
        one_iteration()
    grad_evals, hvp_evals = window.work.tolist()
    operations = count_operations(one_iteration).total  # a second iteration: Adam's state exists from the first
    benchmark.pedantic(on_device(one_iteration, bench_device), rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info["tasks"] = META_BATCH
    record_counters(variant=variant, engine=engine, grad_evals=grad_evals, hvp_evals=hvp_evals,
                    flops=flops.get_total_flops(), operations=operations)
    assert torch.isfinite(theta).all()
