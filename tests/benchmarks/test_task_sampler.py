"""Episodes per second of the task sampler (decoded images are cached; this is the sampling itself)."""
from __future__ import annotations

import pytest
import torch

from bench.datasets import task_source
from bench.tasks import EpisodeSpec

from ..data_paths import require_data

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
