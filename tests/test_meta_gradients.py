"""Every algorithm's meta-gradient against central finite differences or a closed form, in float64."""
from __future__ import annotations

import pytest
import torch

from algorithms import (
    FunctionalModel,
    cross_entropy_loss,
    gradient_descent,
    make_algorithm,
    maml_meta_gradient_torch_func,
    newton_cg,
    proximal_objective,
    squared_error_loss,
)
from bench.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task

from .conftest import classification_task, tiny_convnet
from .finite_differences import central_difference_gradient, directional_derivatives, relative_error

LAM = 10.0
LR = 0.02  # below 2 / (largest curvature of G) on the tiny problems


def adapted(model, theta, task, steps, lr, lam):
    return gradient_descent(proximal_objective(model, task.support, theta, lam), theta, steps, lr).phi


def exact_inner_solution(model, theta, task, lam, start=None):
    """Alg*(theta) to machine precision: Newton with CG run to convergence (from ``start`` if given)."""
    n = theta.numel()
    return newton_cg(proximal_objective(model, task.support, theta, lam), theta if start is None else start,
                     iterations=30, cg_steps=4 * n, gradient_tolerance=1e-13, cg_tolerance=1e-13).phi


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_maml_matches_finite_differences_of_the_unrolled_loop(tiny_problem, lam):
    model, theta, task = tiny_problem
    steps, lr = 3, LR
    result = make_algorithm("maml", inner_steps=steps, inner_lr=lr, lam=lam).meta_gradient(model, theta, task)
    fd = central_difference_gradient(
        lambda th: model.loss(adapted(model, th, task, steps, lr, lam), task.query).item(), theta)
    assert relative_error(result.gradient, fd) < 1e-6
    # a silently first-order MAML (inner gradients without create_graph) would be far off
    first_order = make_algorithm("fomaml", inner_steps=steps, inner_lr=lr, lam=lam).meta_gradient(model, theta, task)
    assert relative_error(first_order.gradient, fd) > 1e-3


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_maml_higher_matches_torch_func(tiny_problem, lam):
    model, theta, task = tiny_problem
    algorithm = make_algorithm("maml", inner_steps=4, inner_lr=LR, lam=lam)
    via_higher = algorithm.meta_gradient(model, theta, task).gradient
    via_func = maml_meta_gradient_torch_func(algorithm, model, theta, task)
    assert relative_error(via_higher, via_func) < 1e-12


def test_maml_matches_finite_differences_on_the_relu_convnet():
    """The standard ReLU block; a few steps, far from kinks at a finite-difference step of 1e-6."""
    torch.manual_seed(0)
    module = tiny_convnet("relu").double()
    model = FunctionalModel(module, cross_entropy_loss)
    theta, task = model.flat_parameters(), classification_task(torch.Generator().manual_seed(1), (1, 6, 6))
    result = make_algorithm("maml", inner_steps=2, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    fd = central_difference_gradient(
        lambda th: model.loss(adapted(model, th, task, 2, LR, LAM), task.query).item(), theta)
    assert relative_error(result.gradient, fd) < 1e-6


def test_fomaml_is_the_query_gradient_at_the_adapted_parameters(tiny_problem):
    model, theta, task = tiny_problem
    result = make_algorithm("fomaml", inner_steps=3, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    phi = adapted(model, theta, task, 3, LR, LAM)
    assert torch.equal(result.adapted, phi)
    fd = central_difference_gradient(lambda p: model.loss(p, task.query).item(), phi)
    assert relative_error(result.gradient, fd) < 1e-7


def test_reptile_equals_scaled_training_gradient_at_the_proximal_solution(tiny_problem):
    """Paper Appendix A: theta - phi = (1/lam) grad L_train(phi) when phi minimizes G."""
    model, theta, task = tiny_problem
    result = make_algorithm("reptile", inner_steps=300, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    phi = result.adapted
    fd = central_difference_gradient(lambda p: model.loss(p, task.support).item(), phi)
    assert relative_error(result.gradient, fd / LAM) < 1e-7
    assert relative_error(phi, exact_inner_solution(model, theta, task, LAM)) < 1e-10


@pytest.mark.parametrize("inner_solver,inner_steps", [("newton-cg", 25), ("gd", 300)])
def test_imaml_matches_finite_differences_of_the_exact_inner_solution(tiny_problem, inner_solver, inner_steps):
    model, theta, task = tiny_problem
    n = theta.numel()
    algorithm = make_algorithm("imaml", lam=LAM, inner_solver=inner_solver, inner_steps=inner_steps, inner_lr=LR,
                               newton_cg_steps=4 * n, cg_steps=4 * n, cg_tolerance=1e-14)
    result = algorithm.meta_gradient(model, theta, task)
    phi_star = exact_inner_solution(model, theta, task, LAM)
    assert relative_error(result.adapted, phi_star) < 1e-10
    assert result.record.cg_residual < 1e-12  # the meta-gradient system was solved
    # each evaluation is a full Newton solve, so check 8 random directions rather than every coordinate
    directions = torch.randn(8, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    fd = directional_derivatives(
        lambda th: model.loss(exact_inner_solution(model, th, task, LAM, phi_star), task.query).item(), theta,
        directions, step=1e-5)
    assert relative_error(directions @ result.gradient, fd) < 1e-6
    # the implicit correction matters here: first-order MAML at the same phi is clearly off
    first_order = make_algorithm("imaml", lam=LAM, inner_solver=inner_solver, inner_steps=inner_steps, inner_lr=LR,
                                 newton_cg_steps=4 * n, cg_steps=0).meta_gradient(model, theta, task)
    assert relative_error(directions @ first_order.gradient, fd) > 1e-3


def test_imaml_with_zero_cg_steps_is_first_order_maml(tiny_problem):
    model, theta, task = tiny_problem
    imaml = make_algorithm("imaml", lam=LAM, inner_steps=7, inner_lr=LR, cg_steps=0).meta_gradient(model, theta, task)
    fomaml = make_algorithm("fomaml", lam=LAM, inner_steps=7, inner_lr=LR).meta_gradient(model, theta, task)
    assert torch.equal(imaml.gradient, fomaml.gradient)
    assert imaml.record.hvp_evals == 0 and imaml.record.grad_evals == fomaml.record.grad_evals == 8


def test_records_count_work(tiny_problem):
    model, theta, task = tiny_problem
    maml = make_algorithm("maml", inner_steps=4, inner_lr=LR).meta_gradient(model, theta, task).record
    assert (maml.grad_evals, maml.hvp_evals) == (5, 4)
    imaml = make_algorithm("imaml", lam=LAM, inner_steps=4, inner_lr=LR, cg_steps=3).meta_gradient(model, theta, task)
    r = imaml.record
    assert (r.grad_evals, r.hvp_evals, r.cg_iterations) == (6, 3, 3)
    assert 0 < r.cg_residual < 1 and 0.0 <= r.query_accuracy <= 1.0
    hf = make_algorithm("imaml", lam=LAM, inner_solver="newton-cg", inner_steps=3, newton_cg_steps=5,
                        cg_steps=5).meta_gradient(model, theta, task).record
    # Newton's CG may stop early on negative curvature far from the minimizer; the meta-gradient CG runs all 5
    assert hf.grad_evals == 3 + 1 + 1 and 3 + 5 <= hf.hvp_evals <= 3 * 5 + 5 and hf.loss_evals >= 3
    assert hf.cg_iterations == 5


# ---- closed forms on the paper's linear regression (Appendix F.1)

@pytest.fixture(scope="module")
def regression():
    config = LinearRegressionConfig(dim=20, kappa=20.0)
    generator = torch.Generator().manual_seed(3)
    task = sample_linear_regression_task(config, generator)
    theta = torch.randn(config.dim, generator=generator, dtype=torch.float64) * 0.3
    return config, task, theta, FunctionalModel(LinearRegressor(config.dim), squared_error_loss)


def test_imaml_matches_the_closed_form_meta_gradient(regression):
    config, task, theta, model = regression
    exact = task.exact_meta_gradient(theta, config.lam)
    gd = make_algorithm("imaml", lam=config.lam, inner_steps=600, inner_lr=config.default_inner_lr,
                        cg_steps=100, cg_tolerance=1e-14).meta_gradient(model, theta, task.task)
    assert relative_error(gd.gradient, exact) < 1e-10
    assert relative_error(gd.adapted, task.inner_solution(theta, config.lam)) < 1e-10
    # the Hessian-free solver needs one Newton iteration on a quadratic
    hf = make_algorithm("imaml", lam=config.lam, inner_solver="newton-cg", inner_steps=1, newton_cg_steps=100,
                        cg_steps=100, cg_tolerance=1e-14).meta_gradient(model, theta, task.task)
    assert relative_error(hf.gradient, exact) < 1e-8


def test_maml_matches_the_closed_form_of_the_unrolled_quadratic(regression):
    """phi_K is affine in theta: d phi_K / d theta = M^K + sum_{j<K} M^j alpha lam, M = I - alpha (A + lam I)."""
    config, task, theta, model = regression
    steps, alpha, lam = 7, config.default_inner_lr, config.lam
    eye = torch.eye(config.dim, dtype=torch.float64)
    m = eye - alpha * (task.A_train + lam * eye)
    jacobian = torch.linalg.matrix_power(m, steps) + sum(torch.linalg.matrix_power(m, j) for j in range(steps)) * alpha * lam
    phi = theta.clone()
    for _ in range(steps):
        phi = m @ phi + alpha * (lam * theta - task.b_train)
    expected = jacobian.T @ (task.A_test @ phi + task.b_test)
    result = make_algorithm("maml", inner_steps=steps, inner_lr=alpha, lam=lam).meta_gradient(model, theta, task.task)
    assert relative_error(result.gradient, expected) < 1e-12
    assert relative_error(result.adapted, phi) < 1e-12
