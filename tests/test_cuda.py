"""What only a CUDA device can show: the captured iteration trains the same run as the eager one, and the
device sampler draws on the GPU exactly what it draws on the CPU. Skipped without CUDA (CI has none);
bench/gpu_checks.sh runs them on a lent GPU machine, where the data is the packed Omniglot."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.device_tasks import DeviceTasks
from bench.presets import preset
from bench.tasks import EpisodeSpec
from bench.train import TrainConfig, load_trained, train

from .data_paths import DATA_ROOT, require_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_checks.sh)")


def omniglot_root():
    """The data root, holding Omniglot's image folders or its packed tensor (bench.omniglot.pack_omniglot)."""
    if (DATA_ROOT / "omniglot-28x28.pt").exists():
        return DATA_ROOT
    return require_data("omniglot-py")


def small_run(variant: str) -> TrainConfig:
    """The preset's algorithm on a small float64 network, for a handful of iterations past the graph's capture
    (the outer step is Adam at a constant rate, as graphs require: bench/train.py)."""
    settings = preset(f"omniglot-5w1s-{variant}")
    return TrainConfig(dataset="omniglot", ways=5, shots=1, queries=5, algorithm=settings["algorithm"],
                       hyperparameters=settings["hyperparameters"], filters=8, meta_batch=4, iterations=8,
                       validate_every=4, validation_tasks=8, checkpoint_every=8, meta_lr=0.01,
                       train_shots=settings.get("train_shots"), train_queries=settings.get("train_queries"),
                       data_root=str(omniglot_root()), device="cuda", dtype="float64", engine="batched",
                       sampler="device")


@pytest.mark.parametrize("variant", ["maml", "fomaml", "reptile", "imaml-gd", "imaml-hf"])
def test_the_captured_iteration_trains_the_eager_run(tmp_path, variant):
    """Replaying the CUDA graph (sampling, meta-gradients, Adam) is the eager batched engine, iteration for
    iteration: a graph that read a stale input or missed an update would drift at once (float64)."""
    config = small_run(variant)
    train(config, tmp_path / "eager", progress=False)
    train(replace(config, cuda_graph=True), tmp_path / "graph", progress=False)
    eager, graph = (load_trained(tmp_path / run, device="cpu") for run in ("eager", "graph"))
    assert eager.iteration == graph.iteration == config.iterations
    assert ((eager.theta - graph.theta).norm() / eager.theta.norm()).item() < 1e-10
    initial = load_trained(tmp_path / "eager", device="cpu", at_init=True).theta
    assert ((eager.theta - initial).norm() / initial.norm()).item() > 1e-4  # the runs did move


def test_the_gpu_draws_the_tasks_the_cpu_draws():
    from bench.datasets import task_source

    tasks = task_source("omniglot", "train", EpisodeSpec(5, 1, 15), str(omniglot_root())).tasks
    cpu, gpu = (DeviceTasks(tasks, device, torch.float32, seed=3, count=32) for device in ("cpu", "cuda"))
    for iteration in (0, 1, 777, 1 << 33):
        a, b = (source.draw(torch.tensor(iteration, device=source.images.device)) for source in (cpu, gpu))
        for x, y in ((a.support.x, b.support.x), (a.query.x, b.query.x), (a.support.y, b.support.y)):
            assert torch.equal(x, y.cpu())
