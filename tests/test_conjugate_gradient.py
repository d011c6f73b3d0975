import pytest
import torch

from metagrad.algorithms import conjugate_gradient


def random_spd(n: int, condition: float, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(condition)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


def test_solves_random_spd_system():
    g = torch.Generator().manual_seed(0)
    a = random_spd(30, 100.0, g)
    b = torch.randn(30, generator=g, dtype=torch.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iterations=200, tolerance=1e-12)
    assert result.converged and not result.negative_curvature
    exact = torch.linalg.solve(a, b)
    assert ((result.x - exact).norm() / exact.norm()).item() < 1e-10
    # the reported residual is the true one, not only the recurrence's
    assert abs((b - a @ result.x).norm().item() / b.norm().item() - result.relative_residual) < 1e-10
    assert result.matvecs == result.iterations


def test_exact_in_as_many_iterations_as_distinct_eigenvalues():
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    eig = torch.tensor([1.0, 7.0, 40.0], dtype=torch.float64).repeat_interleave(torch.tensor([7, 7, 6]))
    a = q @ torch.diag(eig) @ q.T
    b = torch.randn(20, generator=g, dtype=torch.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iterations=3)
    assert result.relative_residual < 1e-10
    two = conjugate_gradient(lambda v: a @ v, b, max_iterations=2)
    assert two.relative_residual > 1e-4


def test_zero_iterations_takes_no_product():
    b = torch.ones(4, dtype=torch.float64)
    calls = []
    result = conjugate_gradient(lambda v: calls.append(v) or v, b, max_iterations=0)
    assert calls == [] and result.iterations == 0 and torch.equal(result.x, torch.zeros(4, dtype=torch.float64))
    assert result.relative_residual == 1.0


def test_negative_curvature_stops_without_dividing():
    a = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    b = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # first direction has p^T A p = -2
    result = conjugate_gradient(lambda v: a @ v, b, max_iterations=10)
    assert result.negative_curvature and result.iterations == 0 and result.matvecs == 1
    assert torch.isfinite(result.x).all()
    zero = conjugate_gradient(lambda v: torch.zeros_like(v), b, max_iterations=10)  # p^T A p == 0
    assert zero.negative_curvature and torch.isfinite(zero.x).all()


def test_tolerance_stops_early():
    g = torch.Generator().manual_seed(2)
    a = random_spd(40, 1000.0, g)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    loose = conjugate_gradient(lambda v: a @ v, b, max_iterations=500, tolerance=1e-3)
    tight = conjugate_gradient(lambda v: a @ v, b, max_iterations=500, tolerance=1e-12)
    assert loose.converged and loose.relative_residual <= 1e-3
    assert loose.iterations < tight.iterations


@pytest.mark.parametrize("kwargs", [{"max_iterations": -1}, {"max_iterations": 2, "tolerance": -1.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        conjugate_gradient(lambda v: v, torch.ones(2), **kwargs)
