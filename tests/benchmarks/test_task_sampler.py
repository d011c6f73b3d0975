"""Episodes per second of the task samplers (decoded images are cached; this is the sampling itself): the
host sampler one task at a time, the device sampler a meta-batch of 32 at a time."""
from __future__ import annotations

import pytest
import torch

from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec

from ..data_paths import require_data
from .conftest import on_device

SETTINGS = {
    "omniglot-5w1s": ("omniglot", "omniglot-py", EpisodeSpec(5, 1, 15)),
    "omniglot-20w5s": ("omniglot", "omniglot-py", EpisodeSpec(20, 5, 15)),
    "mini-imagenet-5w1s": ("mini-imagenet", "mini-imagenet", EpisodeSpec(5, 1, 15)),
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_task_sampler(benchmark, record_counters, setting):
    dataset, folder, spec = SETTINGS[setting]
    root = require_data(folder)
    tasks = task_source(dataset, "train", spec, str(root)).tasks
    generator = torch.Generator().manual_seed(0)

    def sample():
        return tasks.sample(generator)

    task = benchmark.pedantic(sample, rounds=50, warmup_rounds=2, iterations=1)
    images = len(task.support.y) + len(task.query.y)
    record_counters(setting=setting, images=images)
    assert images == spec.ways * (spec.shots + spec.queries)


@pytest.mark.parametrize("setting", SETTINGS)
def test_device_sampler(benchmark, record_counters, setting, bench_device):
    """One meta-batch of 32 tasks per call: episodes per second is 32 x OPS."""
    dataset, folder, spec = SETTINGS[setting]
    root = require_data(folder)
    sampler = DeviceTasks(task_source(dataset, "train", spec, str(root)).tasks, bench_device, torch.float32, seed=0,
                          count=32)
    batch = benchmark.pedantic(on_device(sampler.next, bench_device), rounds=20, warmup_rounds=2, iterations=1)
    benchmark.extra_info["tasks"] = 32
    images = batch.support.y.shape[1] + batch.query.y.shape[1]
    record_counters(setting=setting, images=images)
    assert images == spec.ways * (spec.shots + spec.queries) and batch.size == 32
