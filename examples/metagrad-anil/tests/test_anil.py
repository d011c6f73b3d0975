"""ANIL's own checks, beside the suite's for every registered algorithm (``python -m pytest tests/test_registry.py -k
anil`` from metagrad's root: its meta-gradient against finite differences of its ``meta_objective``, its batched
engine against its per-task one): central differences on a BatchNorm ConvNet; equal to MAML where the whole model is
the head; the body untouched by adaptation; the graph's growth with inner steps the head's alone."""
from __future__ import annotations

import pytest
import torch

from metagrad import (
    Batch,
    ConvNet,
    FunctionalModel,
    LinearRegressionConfig,
    LinearRegressor,
    SavedTensorPeak,
    Task,
    cross_entropy_loss,
    make_algorithm,
    sample_linear_regression_task,
    squared_error_loss,
)
from metagrad_anil import Head


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def convnet_problem(filters: int = 2, image_size: int = 6, dtype=torch.float64):
    """A ConvNet with BatchNorm in training mode (batch statistics), 3 classes, 4 support and 3 query images each."""
    torch.manual_seed(0)
    module = ConvNet(num_classes=3, in_channels=1, filters=filters, blocks=2, image_size=image_size, pooling="stride",
                     activation="tanh").to(dtype)
    model = FunctionalModel(module, cross_entropy_loss)
    generator = torch.Generator().manual_seed(1)

    def batch(n: int) -> Batch:
        y = torch.arange(3).repeat_interleave(n)
        x = torch.randn(len(y), 1, image_size, image_size, generator=generator, dtype=dtype)
        return Batch(x + 0.5 * y.view(-1, 1, 1, 1).to(dtype), y)

    return model, model.flat_parameters(), Task(batch(4), batch(3))


@pytest.mark.parametrize("lam", [0.0, 10.0])
def test_anil_matches_central_differences_on_a_batchnorm_convnet(lam):
    """Every coordinate of theta, body and head: the body's gradient comes through the features alone."""
    model, theta, task = convnet_problem()
    anil = make_algorithm("anil", inner_steps=3, inner_lr=0.1, lam=lam)
    gradient = anil.meta_gradient(model, theta, task).gradient
    step, expected = 1e-6, torch.empty_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = step
        expected[i] = (model.loss(anil.adapt(model, theta + e, task.support), task.query).item()
                       - model.loss(anil.adapt(model, theta - e, task.support), task.query).item()) / (2 * step)
    assert relative_error(gradient, expected) < 1e-6
    head = Head.of(model).size
    assert gradient[:-head].abs().max() > 0  # the body is meta-learned too
    # and it is not MAML's: MAML adapts the body as well
    assert relative_error(make_algorithm("maml", inner_steps=3, inner_lr=0.1, lam=lam).meta_gradient(
        model, theta, task).gradient, expected) > 1e-3


def test_adaptation_leaves_the_body_at_theta():
    model, theta, task = convnet_problem()
    phi = make_algorithm("anil", inner_steps=3, inner_lr=0.1).adapt(model, theta, task.support)
    head = Head.of(model).size
    assert torch.equal(phi[:-head], theta[:-head]) and not torch.equal(phi[-head:], theta[-head:])


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_anil_is_maml_where_the_whole_model_is_the_head(lam):
    """Linear regression: h(x) = theta^T x has one layer, so ANIL adapts everything MAML does."""
    config = LinearRegressionConfig(dim=20, kappa=20.0)
    generator = torch.Generator().manual_seed(3)
    task = sample_linear_regression_task(config, generator).task
    theta = torch.randn(config.dim, generator=generator, dtype=torch.float64) * 0.3
    model = FunctionalModel(LinearRegressor(config.dim), squared_error_loss)
    settings = dict(inner_steps=7, inner_lr=config.default_inner_lr, lam=lam)
    anil = make_algorithm("anil", **settings).meta_gradient(model, theta, task)
    maml = make_algorithm("maml", **settings).meta_gradient(model, theta, task)
    assert relative_error(anil.gradient, maml.gradient) < 1e-12
    assert relative_error(anil.adapted, maml.adapted) < 1e-12


def saved_bytes(name: str, steps: int) -> int:
    model, theta, task = convnet_problem(filters=8, image_size=28, dtype=torch.float32)
    algorithm = make_algorithm(name, inner_steps=steps, inner_lr=0.1)
    with SavedTensorPeak() as saved:
        algorithm.meta_gradient(model, theta, task)
    return saved.peak_bytes


def test_the_graph_grows_with_inner_steps_by_the_head_alone():
    """Bytes held for backward (a deterministic count): each inner step adds MAML the whole network's activations and
    ANIL the head's: here (8 filters, 28x28 images, float32) about 5 KB a step against MAML's 480 KB."""
    anil = (saved_bytes("anil", 9) - saved_bytes("anil", 1)) / 8
    maml = (saved_bytes("maml", 9) - saved_bytes("maml", 1)) / 8
    assert 0 < anil < maml / 20, (anil, maml)


@pytest.mark.slow
def test_metagrad_lists_anil_from_its_entry_point():
    """Installed (``pip install -e examples/metagrad-anil``), the package's one entry point is all it takes."""
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "metagrad", "algorithms"], capture_output=True, text=True,
                            timeout=600)
    line = next(line for line in listed.stdout.splitlines() if line.startswith("anil "))
    assert "metagrad-anil (metagrad_anil:ANIL)" in line and line.endswith("per-task, batched (task by task)")
