"""The meta-gradient solvers beside the paper's CG: MINRES and CG on the damped system, in float64."""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import conjugate_gradient, make_algorithm, masked_minres, minres, proximal_objective
from metagrad.algorithms.inner_solvers import gradient_descent

from .test_batched_engine import problem, random_symmetric


def system(case: str, n: int = 12):
    eigenvalues = torch.logspace(-1, 1, n, dtype=torch.float64)
    if case == "indefinite":
        eigenvalues[::3] = -eigenvalues[::3]
    a = random_symmetric(n, eigenvalues, seed=2)
    b = torch.randn(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return a, b


@pytest.mark.parametrize("case", ["spd", "indefinite"])
def test_minres_solves_the_system_and_its_residual_never_grows(case):
    a, b = system(case)
    exact = torch.linalg.solve(a, b)
    full = minres(lambda v: a @ v, b, 40, tolerance=1e-12)  # past n iterations: round-off costs orthogonality
    assert full.converged and torch.allclose(full.x, exact, rtol=1e-8, atol=1e-10)
    residuals = []
    for k in range(1, 13):
        result = minres(lambda v: a @ v, b, k)
        true = (b - a @ result.x).norm().item()
        assert result.residual_norm == pytest.approx(true, rel=1e-6, abs=1e-10)  # the recurrence is the residual
        residuals.append(true)
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(residuals, residuals[1:]))
    assert full.negative_curvature == (case == "indefinite")


def test_minres_and_cg_agree_on_a_positive_definite_system():
    a, b = system("spd")
    assert torch.allclose(minres(lambda v: a @ v, b, 40, 1e-12).x, conjugate_gradient(lambda v: a @ v, b, 40, 1e-12).x,
                          rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", ["spd", "indefinite", "tolerance", "zero-rhs"])
def test_masked_minres_is_the_reference_minres(case):
    a, b = system("indefinite" if case == "indefinite" else "spd")
    tolerance = 1e-3 if case == "tolerance" else 0.0
    if case == "zero-rhs":
        b = torch.zeros_like(b)
    reference = minres(lambda v: a @ v, b, 15, tolerance)
    masked = masked_minres(lambda v: a @ v, b, 15, tolerance)
    assert torch.allclose(masked.x, reference.x, rtol=1e-12, atol=1e-14)
    assert masked.iterations.item() == reference.iterations
    assert masked.negative_curvature.item() == reference.negative_curvature
    assert masked.converged.item() == reference.converged
    assert masked.relative_residual.item() == pytest.approx(reference.relative_residual, rel=1e-10, abs=1e-14)
    if case == "tolerance":
        assert reference.converged and reference.iterations < 15


def explicit_hessian(loss, x: torch.Tensor) -> torch.Tensor:
    """By double backward (torch.autograd.functional), not torch.func.hessian (unreliable with BatchNorm)."""
    return torch.autograd.functional.hessian(loss, x)


@pytest.mark.parametrize("meta_solver", ["cg", "minres"])
def test_the_damped_solve_is_the_direct_solution_of_the_damped_system(meta_solver):
    model, theta, tasks = problem("mlp")
    task = tasks[0]
    lam, mu = 0.25, 4.0  # lambda small enough that I + H/lambda alone is indefinite here, mu that the damped
    # system is positive definite (both checked below: its smallest eigenvalue is -2.2 without the damping)
    algorithm = make_algorithm("imaml", lam=lam, inner_steps=5, inner_lr=0.1, cg_steps=4 * theta.numel(),
                               cg_tolerance=1e-13, meta_solver=meta_solver, damping=mu)
    result = algorithm.meta_gradient(model, theta, task)
    phi = gradient_descent(proximal_objective(model, task.support, theta, lam), theta, 5, 0.1).phi
    h = explicit_hessian(lambda p: model.loss(p, task.support), phi)
    assert torch.linalg.eigvalsh(torch.eye(len(h), dtype=h.dtype) + h / lam).min() < 0
    assert torch.linalg.eigvalsh((1 + mu) * torch.eye(len(h), dtype=h.dtype) + h / lam).min() > 0
    v = torch.func.grad(lambda p: model.loss(p, task.query))(phi)
    direct = torch.linalg.solve((1 + mu) * torch.eye(len(h), dtype=h.dtype) + h / lam, v)
    assert ((result.gradient - direct).norm() / direct.norm()).item() < 1e-8


def test_minres_solves_the_indefinite_paper_system_where_cg_stops():
    model, theta, tasks = problem("mlp")
    task = tasks[0]
    lam = 0.25
    phi = gradient_descent(proximal_objective(model, task.support, theta, lam), theta, 5, 0.1).phi
    h = explicit_hessian(lambda p: model.loss(p, task.support), phi)
    v = torch.func.grad(lambda p: model.loss(p, task.query))(phi)
    direct = torch.linalg.solve(torch.eye(len(h), dtype=h.dtype) + h / lam, v)
    settings = {"lam": lam, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 4 * theta.numel(), "cg_tolerance": 1e-13}
    via_minres = make_algorithm("imaml", meta_solver="minres", **settings).meta_gradient(model, theta, task)
    via_cg = make_algorithm("imaml", **settings).meta_gradient(model, theta, task)
    assert ((via_minres.gradient - direct).norm() / direct.norm()).item() < 1e-8
    assert torch.linalg.eigvalsh(torch.eye(len(h), dtype=h.dtype) + h / lam).min() < 0
    assert via_cg.record.negative_curvature
    assert via_cg.record.cg_residual > 1e-3  # CG stopped at the curvature, far from the solution
