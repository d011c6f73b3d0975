"""What a training iteration of the batched engine runs does no host work: every algorithm's batched
meta-gradient, the window's sums and the device-side draw, run on the ``meta`` device under ``HostWork``.

On CUDA any finding would be a synchronization or a pageable copy in every iteration, and would make
the CUDA-graph capture (``--cuda-graph``) fail. Each is run once before it is watched, as the graph's
warm-up iterations run before the capture: what is made once per device and cached is allowed.
"""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import FunctionalModel, TaskBatch, cross_entropy_loss, make_algorithm
from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.training.steps import Window

from .conftest import classification_task, tiny_convnet
from .host_sync import HostWork
from .test_batched_engine import CONFIGS, learned_start
from .test_device_tasks import coded_tasks


def test_the_watch_sees_host_work():
    x = torch.zeros(5, device="meta")
    with HostWork() as watch:
        x[torch.tensor([1, 2])]
        torch.tensor([1.0, 2.0]).to("meta")
        x + torch.tensor(2.0)  # a host scalar is a kernel argument: allowed
    assert len(watch.found) == 2, watch.found
    with pytest.raises(RuntimeError, match="meta"), HostWork():
        x.sum().item()  # on meta a read-back raises; on CUDA it would synchronize


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_batched_meta_gradients_do_no_host_work(config):
    name, hyperparameters = CONFIGS[config]
    algorithm = make_algorithm(name, **hyperparameters)
    torch.manual_seed(0)
    model = FunctionalModel(tiny_convnet().double().to("meta"), cross_entropy_loss)
    theta = learned_start(algorithm, model, model.flat_parameters())
    generator = torch.Generator().manual_seed(1)
    batch = TaskBatch.stack([classification_task(generator, (1, 6, 6)) for _ in range(4)]).to("meta")
    window = Window(torch.device("meta"))
    algorithm.batched_meta_gradient(model, theta, batch)  # warm-up
    with HostWork() as watch:
        result = algorithm.batched_meta_gradient(model, theta, batch)
        window.add(result.diagnostics)
    assert watch.found == [], watch.found


def test_the_device_draw_does_no_host_work():
    sampler = DeviceTasks(coded_tasks(), "meta", torch.float32, seed=0, count=4)
    with HostWork() as watch:
        sampler.next()
    assert watch.found == [], watch.found
