import torch

from metagrad.algorithms import HessianOperator, hessian_vector_product, value_and_gradient


def objective(x: torch.Tensor) -> torch.Tensor:
    return (x.sin() * x.roll(1)).sum() + 0.25 * x.pow(4).sum()


def test_hvp_matches_the_explicit_hessian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, generator=g, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(objective, x)
    operator = HessianOperator(objective, x)
    for _ in range(3):
        v = torch.randn(6, generator=g, dtype=torch.float64)
        assert torch.allclose(operator(v), hessian @ v, rtol=1e-12, atol=1e-12)
    assert operator.products == 3
    v = torch.randn(6, generator=g, dtype=torch.float64)
    assert torch.allclose(hessian_vector_product(objective, x, v), hessian @ v, rtol=1e-12, atol=1e-12)


def test_value_and_gradient():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    value, grad = value_and_gradient(objective, x)
    assert not grad.requires_grad and value.item() == objective(x).item()
    assert torch.allclose(grad, torch.autograd.functional.jacobian(objective, x), rtol=1e-12)
