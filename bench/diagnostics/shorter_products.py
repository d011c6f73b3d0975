"""The operation counts behind the bullet "shorter products" of reports/notes/engines.md (``bench.measure.operations``,
float64, small random inputs): the tangent of BatchNorm's backward pass as autograd assembles it from plain
operations against ``BatchNormBackward``'s closed form; a forward-over-reverse product through one BatchNorm layer
and through one ReLU, in the ``second_order`` form against the native functions (a linear loss's own operations
taken out); and the masked conjugate gradient's 5 iterations on a random stack of systems (the product itself one
``bmm``)."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from metagrad.algorithms.conjugate_gradient import masked_conjugate_gradient
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.batch_norm import BatchNormBackward, twice_differentiable_batch_norm
from metagrad.bench.nets.relu import twice_differentiable_relu


def tangent_operations(f: Callable, primals: tuple, tangents: tuple) -> int:
    """Operations of f's value and tangent, less those of its value alone."""
    return (count_operations(lambda: torch.func.jvp(f, primals, tangents)).total
            - count_operations(lambda: f(*primals)).total)


def plain_backward(grad_out, xhat, invstd, weight):
    """BatchNorm's backward pass in plain operations (the forward of ``BatchNormBackward``)."""
    axes, w = [0, 2, 3], weight.view(1, -1, 1, 1)
    g = grad_out * w
    grad_x = invstd * (g - g.mean(axes, keepdim=True) - xhat * (g * xhat).mean(axes, keepdim=True))
    return grad_x, (grad_out * xhat).sum(axes), grad_out.sum(axes)


def product_operations(layer: Callable, primals: tuple, weights: torch.Tensor) -> int:
    """A forward-over-reverse product of (layer(*primals) * weights).sum(), less that of the loss alone."""
    def product(function):
        loss = lambda *p: (function(*p) * weights).sum()  # noqa: E731
        argnums = tuple(range(len(primals)))
        tangents = tuple(torch.ones_like(p) for p in primals)
        return count_operations(lambda: torch.func.jvp(torch.func.grad(loss, argnums=argnums), primals, tangents)).total
    return product(layer) - product(lambda x, *_: x)


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m metagrad.bench.diagnostics.shorter_products", description=__doc__).parse_args(argv)
    generator = torch.Generator().manual_seed(0)

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    backward_inputs = (random(5, 6, 4, 4), random(5, 6, 4, 4), random(1, 6, 1, 1).abs() + 0.5, random(6))
    backward_tangents = tuple(random(*t.shape) for t in backward_inputs)
    print("tangent of BatchNorm's backward pass, plain operations:  ",
          tangent_operations(plain_backward, backward_inputs, backward_tangents))
    print("tangent of BatchNorm's backward pass, BatchNormBackward:  ",
          tangent_operations(BatchNormBackward.apply, backward_inputs, backward_tangents))
    weights = random(5, 6, 4, 4)
    x, weight, bias = random(5, 6, 4, 4), random(6), random(6)
    print("product through a BatchNorm layer, second_order form:    ",
          product_operations(lambda *p: twice_differentiable_batch_norm(*p, 1e-5), (x, weight, bias), weights))
    print("product through a BatchNorm layer, F.batch_norm:          ",
          product_operations(lambda *p: F.batch_norm(p[0], None, None, p[1], p[2], training=True, eps=1e-5),
                             (x, weight, bias), weights))
    print("product through a ReLU, second_order form:               ",
          product_operations(twice_differentiable_relu, (x,), weights))
    print("product through a ReLU, F.relu:                          ", product_operations(F.relu, (x,), weights))
    matrices = random(6, 50, 50)
    systems = matrices @ matrices.transpose(1, 2) + 50 * torch.eye(50, dtype=torch.float64)
    right = random(6, 50)
    operations = count_operations(lambda: masked_conjugate_gradient(
        lambda p: torch.bmm(systems, p.unsqueeze(-1)).squeeze(-1), right, 5, 1e-8)).total
    print("masked CG, 5 iterations, 6 systems (5 of the operations the products): ", operations)


if __name__ == "__main__":
    main()
