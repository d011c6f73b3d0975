"""``bench.nets.batch_norm.twice_differentiable_batch_norm`` is ``F.batch_norm`` with batch statistics, derivative for derivative.

The stacked network's Hessian-vector products use it (iMAML's batched engine), so everything a product can ask
of it is checked against the native function in float64: values, gradients, tangents, forward-over-reverse and
reverse-over-reverse second derivatives, under ``vmap`` too, and torch's own numerical checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.batch_norm import BatchNormBackward, twice_differentiable_batch_norm

from .finite_differences import relative_error

EPS = 1e-5


def native(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=EPS)


def second_order(x, weight, bias):
    return twice_differentiable_batch_norm(x, weight, bias, EPS)


def inputs(shape=(5, 6, 4, 4), seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 1
    weight, bias = (torch.randn(shape[1], generator=generator, dtype=torch.float64) for _ in range(2))
    return x, weight, bias


WEIGHTS = torch.randn(5, 6, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def loss_of(batch_norm):
    """A scalar of the normalized output that is not linear in it, so that second derivatives are not zero."""
    def loss(x, weight, bias):
        out = batch_norm(x, weight, bias)
        return (torch.tanh(out) * WEIGHTS.flatten()[:out.numel()].view(out.shape)).sum()
    return loss


def tangents(x, weight, bias, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in (x, weight, bias))


@pytest.mark.parametrize("shape", [(5, 6, 4, 4), (7, 3)])
def test_values_gradients_and_tangents_are_the_native_ones(shape):
    x, weight, bias = inputs(shape)
    assert relative_error(second_order(x, weight, bias), native(x, weight, bias)) < 1e-14
    gradients = [torch.func.grad(loss_of(f), argnums=(0, 1, 2))(x, weight, bias) for f in (second_order, native)]
    for mine, reference in zip(*gradients):
        assert relative_error(mine, reference) < 1e-13
    directions = tangents(x, weight, bias)
    mine, reference = (torch.func.jvp(f, (x, weight, bias), directions)[1] for f in (second_order, native))
    assert relative_error(mine, reference) < 1e-13


def forward_over_reverse(f, primals, directions):
    return torch.func.jvp(torch.func.grad(loss_of(f), argnums=(0, 1, 2)), primals, directions)[1]


def reverse_over_reverse(f, primals, directions):
    leaves = [t.clone().requires_grad_(True) for t in primals]
    gradients = torch.autograd.grad(loss_of(f)(*leaves), leaves, create_graph=True)
    return torch.autograd.grad(gradients, leaves, grad_outputs=directions)


@pytest.mark.parametrize("product", [forward_over_reverse, reverse_over_reverse])
def test_hessian_vector_products_are_the_native_ones(product):
    primals = inputs()
    directions = tangents(*primals)
    for mine, reference in zip(product(second_order, primals, directions), product(native, primals, directions)):
        assert relative_error(mine, reference) < 1e-12


def test_forward_over_reverse_under_vmap_is_the_native_one():
    """As the batched engine's per-task products would map it: one product per task, tasks along a new axis."""
    x = torch.randn(3, 5, 6, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, weight, bias = inputs()
    x_directions = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    _, weight_direction, bias_direction = tangents(*inputs())

    def mapped(f):
        return torch.func.vmap(lambda xi, ti: forward_over_reverse(f, (xi, weight, bias),
                                                                   (ti, weight_direction, bias_direction)))(x, x_directions)

    for mine, reference in zip(mapped(second_order), mapped(native)):
        assert relative_error(mine, reference) < 1e-12


def test_torch_numerical_checks_pass():
    """torch's finite-difference checks of the first and second derivatives, reverse and forward mode."""
    x, weight, bias = (t.clone().requires_grad_(True) for t in inputs((4, 3, 2, 2)))
    assert torch.autograd.gradcheck(second_order, (x, weight, bias), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(second_order, (x, weight, bias))


def test_a_forward_over_reverse_product_takes_fewer_operations():
    """Why it exists: the product through one layer in about two thirds of the native operations (counted)."""
    primals = inputs()
    directions = tangents(*primals)
    counts = [count_operations(lambda f=f: forward_over_reverse(f, primals, directions)).total
              for f in (second_order, native)]
    assert counts[0] < 0.75 * counts[1], counts


@pytest.mark.parametrize("differentiated", [(0, 1, 2, 3), (0,), (1, 2), (3,), (0, 3)])
def test_the_backward_pass_has_its_own_tangent_and_backward_right(differentiated):
    """``BatchNormBackward`` (what a forward-over-reverse product differentiates) against torch's finite differences,
    forward mode (its closed-form tangent) and reverse mode, with every input differentiated and with only some
    (the others' tangents and cotangents absent), on arbitrary inputs: the formulas hold for any xhat and invstd."""
    generator = torch.Generator().manual_seed(5)
    shapes = [(4, 3, 2, 2), (4, 3, 2, 2), (1, 3, 1, 1), (3,)]
    values = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    values[2] = values[2].abs() + 0.5  # invstd > 0
    primals = tuple(v.requires_grad_(i in differentiated) for i, v in enumerate(values))
    assert torch.autograd.gradcheck(BatchNormBackward.apply, primals, check_forward_ad=True)


def test_the_backward_pass_is_batch_norms_gradient():
    """Its outputs are the native BatchNorm's input, weight and bias gradients."""
    x, weight, bias = inputs()
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
    invstd = torch.rsqrt(var + EPS)
    mine = BatchNormBackward.apply(grad_out, (x - mean) * invstd, invstd, weight)
    reference = torch.func.vjp(native, x, weight, bias)[1](grad_out)
    for a, b in zip(mine, reference):
        assert relative_error(a, b) < 1e-13
