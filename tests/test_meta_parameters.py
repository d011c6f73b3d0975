"""Algorithms that learn more than the initialization (``algorithms/meta_parameters.py``): Meta-SGD, MAML++'s LSLR and
iMAML with a learned lambda, in float64 on the tiny ConvNet with BatchNorm: every group's gradient against finite
differences and closed forms, the reductions to MAML and iMAML where the learned values are held at their start, and
a check that fails when a group's gradient is dropped."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import metagrad.algorithms.registry as registry
from metagrad.algorithms import make_algorithm
from metagrad.algorithms.learned_step_sizes import MetaSGD
from metagrad.algorithms.meta_parameters import (
    groups_of,
    initial_meta_parameters,
    learned_values,
    network_part,
    split_meta_parameters,
)
from metagrad.algorithms.protocol import MetaGradient, query_loss_and_gradient
from metagrad.bench.checks.contract import check_algorithm, relative_difference, tiny_problem

LEARNING = ("meta-sgd", "maml-lslr", "imaml-lambda")
TINY = {"inner_lr": 0.02, "inner_steps": 3}


def test_the_three_are_registered_and_an_algorithm_without_groups_keeps_the_networks_vector():
    assert set(LEARNING) <= set(registry.algorithm_names())
    model, theta, _ = tiny_problem(1)
    for name in ("maml", "fomaml", "reptile", "imaml"):
        assert groups_of(make_algorithm(name), model) == ()
        assert torch.equal(initial_meta_parameters(make_algorithm(name), model), theta)


@pytest.mark.parametrize("name, kwargs, size", [
    ("meta-sgd", {}, "P"), ("maml-lslr", {"inner_steps": 3}, "3L"),
    ("imaml-lambda", {"lambda_shape": "scalar"}, "1"), ("imaml-lambda", {"lambda_shape": "layer"}, "L"),
    ("imaml-lambda", {"lambda_shape": "parameter"}, "P"),
])
def test_each_group_has_its_size_its_start_and_its_labels(name, kwargs, size):
    model, theta, _ = tiny_problem(1)
    algorithm = make_algorithm(name, **kwargs)
    (group,) = groups_of(algorithm, model)
    expected = {"P": model.num_parameters, "L": len(model.names), "3L": 3 * len(model.names), "1": 1}[size]
    assert group.size == expected and sum(count for _, count in group.labels) == expected
    full = initial_meta_parameters(algorithm, model)
    assert full.numel() == model.num_parameters + expected and torch.equal(network_part(model, full), theta)
    _, values = split_meta_parameters(algorithm, model, full)
    start = algorithm.lam if name == "imaml-lambda" else algorithm.inner_lr
    assert torch.allclose(values[group.name], torch.full((expected,), start, dtype=theta.dtype))
    saved = learned_values(algorithm, model, full)[group.name]
    assert [row["label"] for row in saved] == [label for label, _ in group.labels]


@pytest.mark.parametrize("name, kwargs", [("meta-sgd", {}), ("maml-lslr", {}), ("imaml-lambda", {}),
                                          ("imaml-lambda", {"lambda_shape": "layer"}),
                                          ("imaml-lambda", {"lambda_shape": "parameter"})])
def test_every_group_is_the_gradient_of_the_meta_objective(name, kwargs):
    """The plug-in check's finite differences, which take directions within each group (the network's and the
    algorithm's) as well as across all of them; every other check passes too."""
    checks = check_algorithm(name, **kwargs)
    assert all(check.passed for check in checks), [check.message for check in checks]
    assert "step_sizes" in checks[-1].message or "lambda" in checks[-1].message


@pytest.mark.parametrize("name", LEARNING)
def test_the_check_fails_when_a_groups_gradient_is_dropped(name, monkeypatch):
    """A meta-gradient whose algorithm part is zeroed (as an engine that detached the step sizes or lambda would
    return) fails the finite-difference check, by the group's name."""
    monkeypatch.setattr(registry, "ALGORITHMS", dict(registry.ALGORITHMS))
    monkeypatch.setattr(registry, "ENTRIES", dict(registry.ENTRIES))
    cls = registry.ALGORITHMS[name]

    def meta_gradient(self, model, theta, task) -> MetaGradient:
        result = cls.meta_gradient(self, model, theta, task)
        gradient = result.gradient.clone()
        gradient[model.num_parameters:] = 0
        return MetaGradient(gradient, result.record, result.adapted)

    dropped = dataclass(frozen=True)(type("Dropped", (cls,), {"name": f"test-dropped-{name}",
                                                              "meta_gradient": meta_gradient}))
    registry.register(dropped, origin="a test")
    checks = {check.name: check for check in check_algorithm(dropped.name)}
    failed = checks["finite differences"]
    assert failed.passed is False and "in the group" in failed.message, failed.message
    assert ("step_sizes" if name != "imaml-lambda" else "lambda") in failed.message


def test_meta_sgd_with_one_step_is_maml_for_theta_and_its_step_sizes_have_the_closed_form():
    """phi = theta - alpha * grad L_train(theta): d L_test / d alpha_i = -grad L_test(phi)_i grad L_train(theta)_i,
    and with alpha held at MAML's step size the theta part is MAML's meta-gradient."""
    model, theta, tasks = tiny_problem(1)
    task = tasks[0]
    meta_sgd = make_algorithm("meta-sgd", inner_steps=1, inner_lr=0.05)
    full = initial_meta_parameters(meta_sgd, model)
    result = meta_sgd.meta_gradient(model, full, task)
    maml = make_algorithm("maml", inner_steps=1, inner_lr=0.05).meta_gradient(model, theta, task)
    assert relative_difference(network_part(model, result.gradient), maml.gradient) < 1e-10
    _, train_gradient, _ = query_loss_and_gradient(model, theta, task.support)
    _, test_gradient, _ = query_loss_and_gradient(model, result.adapted, task.query)
    closed_form = -test_gradient * train_gradient
    assert relative_difference(result.gradient[model.num_parameters:], closed_form) < 1e-10


def test_lslr_at_one_step_sums_meta_sgds_step_size_gradient_over_each_layer():
    model, theta, tasks = tiny_problem(1)
    meta_sgd, lslr = (make_algorithm(name, inner_steps=1, inner_lr=0.05) for name in ("meta-sgd", "maml-lslr"))
    per_parameter = meta_sgd.meta_gradient(model, initial_meta_parameters(meta_sgd, model), tasks[0]).gradient
    per_layer = lslr.meta_gradient(model, initial_meta_parameters(lslr, model), tasks[0]).gradient
    P = model.num_parameters
    sums = torch.stack([part.sum() for part in per_parameter[P:].split(model.numels)])
    assert relative_difference(per_layer[P:], sums) < 1e-10
    assert relative_difference(per_layer[:P], per_parameter[:P]) < 1e-12


@pytest.mark.parametrize("shape", ["scalar", "layer", "parameter"])
def test_a_learned_lambda_held_at_its_start_is_imaml_for_theta(shape):
    """The preconditioned system (I + Lambda^-1/2 H Lambda^-1/2) for a constant Lambda is the paper's (I + H/lambda),
    its CG iterates scaled: the theta part equals iMAML's meta-gradient at any CG budget, not only at convergence."""
    model, theta, tasks = tiny_problem(1)
    settings = {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.02, "cg_steps": 3}
    learned = make_algorithm("imaml-lambda", lambda_shape=shape, **settings)
    result = learned.meta_gradient(model, initial_meta_parameters(learned, model), tasks[0])
    imaml = make_algorithm("imaml", **settings).meta_gradient(model, theta, tasks[0])
    assert relative_difference(network_part(model, result.gradient), imaml.gradient) < 1e-10
    for count in ("cg_iterations", "hvp_evals", "negative_curvature"):  # CG stops where iMAML's does
        assert getattr(result.record, count) == getattr(imaml.record, count), count


def test_a_shared_lambdas_gradient_is_the_sum_of_its_parameters():
    """d/d log(lambda) of a scalar lambda = sum over layers of the per-layer ones = sum over parameters of the
    per-parameter ones (every lambda equal): the chain rule through the sharing."""
    model, _, tasks = tiny_problem(1)
    settings = {"lam": 3.0, "inner_steps": 5, "inner_lr": 0.02, "cg_steps": 20, "cg_tolerance": 1e-14}
    gradients = {}
    for shape in ("scalar", "layer", "parameter"):
        algorithm = make_algorithm("imaml-lambda", lambda_shape=shape, **settings)
        full = initial_meta_parameters(algorithm, model)
        gradients[shape] = algorithm.meta_gradient(model, full, tasks[0]).gradient[model.num_parameters:]
    total = gradients["scalar"].item()
    assert gradients["layer"].sum().item() == pytest.approx(total, rel=1e-10)
    assert gradients["parameter"].sum().item() == pytest.approx(total, rel=1e-10)
    per_layer = torch.stack([part.sum() for part in gradients["parameter"].split(model.numels)])
    assert relative_difference(gradients["layer"], per_layer) < 1e-10


def test_adapt_uses_the_learned_values():
    """Evaluation adapts with what was learned: changing a step size or lambda in theta changes phi."""
    model, _, tasks = tiny_problem(1)
    for algorithm in (MetaSGD(inner_steps=2, inner_lr=0.05), make_algorithm("imaml-lambda", inner_steps=5,
                                                                           inner_lr=0.02)):
        full = initial_meta_parameters(algorithm, model)
        moved = full.clone()
        moved[model.num_parameters:] *= 1.5
        assert relative_difference(algorithm.adapt(model, moved, tasks[0].support),
                                   algorithm.adapt(model, full, tasks[0].support)) > 1e-6


@pytest.mark.parametrize("name", ["meta-sgd", "maml-lslr"])
def test_k_step_step_size_gradients_have_the_closed_form_of_the_unrolled_quadratic(name):
    """On linear regression G(phi) = L_train(phi) + lam/2 ||phi - theta||^2 has gradient M phi + b - lam theta,
    M = A + lam I, so K steps of size alpha give phi_K = phi* + (I - alpha M)^K (theta - phi*), phi* = M^-1 (lam theta -
    b). Differentiating the product in the step size of parameter i at step j: d L_test / d alpha_{j,i} =
    -[(I - alpha M)^(K-1-j) g]_i [M (I - alpha M)^j (theta - phi*)]_i, g = grad L_test(phi_K). Meta-SGD's gradient
    is its sum over the steps; LSLR's (one layer here) each step's sum over the parameters. Matrix powers, no
    autograd: a closed form the unrolled loop's backward pass must meet for K > 1 too."""
    from metagrad.algorithms import FunctionalModel, squared_error_loss
    from metagrad.bench.data.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task

    config = LinearRegressionConfig(dim=8, n_support=16, n_query=16)
    generator = torch.Generator().manual_seed(4)
    task = sample_linear_regression_task(config, generator)
    theta = torch.randn(8, generator=generator, dtype=torch.float64)
    model = FunctionalModel(LinearRegressor(8), squared_error_loss)
    steps, alpha, lam = 5, config.default_inner_lr, config.lam
    algorithm = make_algorithm(name, inner_steps=steps, inner_lr=alpha, lam=lam)
    result = algorithm.meta_gradient(model, initial_meta_parameters(algorithm, model, theta), task.task)

    eye = torch.eye(8, dtype=torch.float64)
    m = task.A_train + lam * eye
    step = eye - alpha * m
    fixed_point = torch.linalg.solve(m, lam * theta - task.b_train)
    phi = fixed_point + torch.linalg.matrix_power(step, steps) @ (theta - fixed_point)
    g = task.A_test @ phi + task.b_test
    per_step = torch.stack([-(torch.linalg.matrix_power(step, steps - 1 - j) @ g)
                            * (m @ torch.linalg.matrix_power(step, j) @ (theta - fixed_point)) for j in range(steps)])
    exact = per_step.sum(0) if name == "meta-sgd" else per_step.sum(1)
    assert relative_difference(result.gradient[model.num_parameters:], exact) < 1e-10
    assert relative_difference(result.adapted, phi) < 1e-12
