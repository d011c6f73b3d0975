"""``bench.nets.relu.twice_differentiable_relu`` is ``F.relu``, derivative for derivative, in one operation fewer a
product's tangent: checked in float64 against the native function (values, gradients, tangents, both kinds of
second derivative, under ``vmap`` too) and by torch's numerical checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.relu import ReLUBackward, twice_differentiable_relu

WEIGHTS = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def loss_of(relu):
    """Not linear in the ReLU's output, so that second derivatives are not zero."""
    return lambda x: (relu(x) * WEIGHTS).pow(2).sum()


def point(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(WEIGHTS.shape, generator=generator, dtype=torch.float64)
    x[0, 0, 0, 0] = 0.0  # the kink: both take the derivative 0 there
    return x, torch.randn(WEIGHTS.shape, generator=generator, dtype=torch.float64)


def forward_over_reverse(relu, x, u):
    return torch.func.jvp(torch.func.grad(loss_of(relu)), (x,), (u,))


def reverse_over_reverse(relu, x, u):
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss_of(relu)(leaf), leaf, create_graph=True)
    return gradient, torch.autograd.grad(gradient, leaf, grad_outputs=u)[0]


@pytest.mark.parametrize("product", [forward_over_reverse, reverse_over_reverse])
def test_values_gradients_and_products_are_the_native_ones(product):
    x, u = point()
    assert torch.equal(twice_differentiable_relu(x), F.relu(x))
    assert torch.equal(torch.func.jvp(twice_differentiable_relu, (x,), (u,))[1], torch.func.jvp(F.relu, (x,), (u,))[1])
    for mine, reference in zip(product(twice_differentiable_relu, x, u), product(F.relu, x, u)):
        assert torch.equal(mine, reference)


def test_forward_over_reverse_under_vmap_is_the_native_one():
    xs, us = zip(*(point(seed) for seed in range(3)))
    x, u = torch.stack(xs), torch.stack(us)
    mine, reference = (torch.func.vmap(lambda xi, ui, f=f: forward_over_reverse(f, xi, ui))(x, u)
                       for f in (twice_differentiable_relu, F.relu))
    for a, b in zip(mine, reference):
        assert torch.equal(a, b)


def test_torch_numerical_checks_pass():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(twice_differentiable_relu, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(twice_differentiable_relu, (x,), check_fwd_over_rev=True)
    out = torch.relu(x.detach())
    assert torch.autograd.gradcheck(ReLUBackward.apply, (torch.randn_like(out).requires_grad_(True), out),
                                    check_forward_ad=True)


def test_a_forward_over_reverse_product_takes_fewer_operations():
    """Why it exists: no zero tangent added for the ReLU's output (``zeros_like`` and ``add``)."""
    x, u = point()
    mine, reference = (count_operations(lambda f=f: forward_over_reverse(f, x, u)) for f in (twice_differentiable_relu,
                                                                                           F.relu))
    assert mine.total == reference.total - 2 and "zeros_like" not in mine.counts, (mine.counts, reference.counts)
