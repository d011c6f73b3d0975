"""What only a CUDA device can show: the captured iteration trains the same run as the eager one, and the
device sampler draws on the GPU exactly what it draws on the CPU. Skipped without CUDA (CI has none);
tools/gpu_checks.py runs them on a GPU."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from metagrad.algorithms.meta_parameters import initial_meta_parameters
from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.presets import preset
from metagrad.bench.training.steps import BatchedStep, Window

from .data_paths import DATA_ROOT, require_data

FILTERS = 8
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (tools/gpu_checks.py)")


def omniglot_root():
    """The data root, holding Omniglot's image folders or its packed tensor (bench.data.omniglot.pack_omniglot)."""
    if (DATA_ROOT / "omniglot-28x28.pt").exists():
        return DATA_ROOT
    return require_data("omniglot-py")


def replayed(variant: str, graph: bool, iterations: int = 6) -> list[torch.Tensor]:
    """theta after each of ``iterations`` batched steps (device sampler, float64, capturable Adam, TF32 off),
    eager or with the iteration captured as a CUDA graph (three eager warm-up steps, then replays)."""
    settings = preset(f"omniglot-5w1s-{variant}")
    spec = EpisodeSpec(5, settings.get("train_shots") or 1, settings.get("train_queries") or 5)
    tasks = task_source("omniglot", "train", spec, str(omniglot_root())).tasks
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5, FILTERS).to("cuda", torch.float64), cross_entropy_loss)
    theta = initial_meta_parameters(algorithm, model).clone()  # the network's, then the algorithm's own groups
    optimizer = torch.optim.Adam([theta], lr=0.01, capturable=True)
    source = DeviceTasks(tasks, "cuda", torch.float64, seed=0, count=4)
    step = BatchedStep(algorithm, model, theta, optimizer, Window(theta.device), graph=graph, source=source)
    thetas = []
    for _ in range(iterations):
        step()
        thetas.append(theta.detach().cpu().clone())
    return thetas


@pytest.mark.parametrize("variant", ["maml", "fomaml", "reptile", "imaml-gd", "imaml-gd-minres", "imaml-hf", "meta-sgd",
                                     "maml-lslr", "imaml-lambda-layer"])
def test_the_captured_iteration_is_the_eager_iteration(variant):
    """Replaying the CUDA graph (draw, meta-gradients, Adam step) is the eager batched step, iteration for
    iteration (float64, the same capturable Adam): a graph that read a stale input or missed an update would
    leave it at once.

    The same Adam matters: capturable Adam computes its bias corrections from a float32 step count on the
    device (1 - 0.999 is 1.3e-5 off there), the default Adam in Python floats; theta was 4.5e-7 apart after
    one step of the two and percents after six on an H200 (reports/gpu-h200-batched/graph-diagnostic.txt),
    so the training runs, one eager and one captured, are not compared with each other. Every parameter is
    compared: the ConvNet has none whose gradient is rounding noise (no convolution bias ahead of BatchNorm)."""
    eager, graph = replayed(variant, graph=False), replayed(variant, graph=True)
    differences = [((a - b).norm() / a.norm()).item() for a, b in zip(eager, graph)]
    assert max(differences) < 1e-10, differences
    assert ((eager[-1] - eager[0]).norm() / eager[0].norm()).item() > 1e-4  # the steps did move theta


def test_the_gpu_draws_the_tasks_the_cpu_draws():
    tasks = task_source("omniglot", "train", EpisodeSpec(5, 1, 15), str(omniglot_root())).tasks
    cpu, gpu = (DeviceTasks(tasks, device, torch.float32, seed=3, count=32) for device in ("cpu", "cuda"))
    for iteration in (0, 1, 777, 1 << 33):
        a, b = (source.draw(torch.tensor(iteration, device=source.images.device)) for source in (cpu, gpu))
        # the same images: the pixels as stored (CUDA divides by 255 as a product with its reciprocal, which
        # can differ from the CPU's quotient in the last bit)
        for x, y in ((a.support.x, b.support.x), (a.query.x, b.query.x)):
            assert torch.equal((x * 255).round(), (y.cpu() * 255).round())
            torch.testing.assert_close(x, y.cpu(), rtol=1e-6, atol=0)
        assert torch.equal(a.support.y, b.support.y.cpu()) and torch.equal(a.query.y, b.query.y.cpu())


def interrupted_and_straight(root, folder, device: str) -> tuple[dict, dict]:
    """The checkpoints of a tiny float64 host-sampler run on ``device`` trained for 4 iterations straight, and
    trained for 2 then resumed to 4."""
    from metagrad.bench.training.config import TrainConfig
    from metagrad.bench.training.trainer import train

    config = TrainConfig(dataset="omniglot", ways=5, shots=1, queries=2, algorithm="fomaml",
                         hyperparameters={"inner_steps": 1, "inner_lr": 0.4}, filters=4, meta_batch=2, iterations=4,
                         validate_every=2, validation_tasks=4, checkpoint_every=1, data_root=str(root),
                         dtype="float64", device=device, engine="batched", sampler="host")
    train(config, folder / "straight", progress=False)
    train(replace(config, iterations=2), folder / "split", progress=False)
    train(config, folder / "split", resume=True, progress=False)
    return tuple(torch.load(folder / name / "checkpoint.pt", map_location="cpu") for name in ("straight", "split"))


def test_a_cuda_run_resumes_from_its_checkpoint(tmp_path):
    """torch.load maps a checkpoint onto the run's device, the host sampler's generator state included, which
    torch.Generator.set_state refuses there: on the H200 the 60,000-iteration MAML run's first resumption
    failed so (reports/gpu-h200-paper/gpu-log-tests-paper.txt). The resumed run draws the same tasks as the
    straight one and ends at its parameters."""
    straight, split = interrupted_and_straight(omniglot_root(), tmp_path, "cuda")
    assert split["iteration"] == straight["iteration"] == 4
    assert torch.equal(split["sampler"], straight["sampler"])
    a, b = straight["theta"], split["theta"]
    assert ((a - b).norm() / a.norm()).item() < 1e-10
