"""ReLU with derivatives written out for Hessian-vector products.

A forward-over-reverse product differentiates ReLU's backward pass, ``threshold_backward(grad, out, 0)``, whose
forward-mode rule in PyTorch adds a zero tangent for ``out`` (``zeros_like`` and ``add``, two operations a layer
per product that compute nothing). Here the backward pass is an autograd Function whose tangent is the one
operation that remains: the gradient's tangent masked the same way. The stacked network uses it where it uses
``twice_differentiable_batch_norm`` (``second_order``); equal to ``F.relu`` in value, gradient, tangent and both
kinds of second derivative (tested in float64).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _masked(t: Tensor, out: Tensor) -> Tensor:
    """t where the ReLU's output is positive, else 0: its derivative's action (0 at the kink, as torch's)."""
    return torch.ops.aten.threshold_backward(t, out, 0)


class TwiceDifferentiableReLU(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return ReLUBackward.apply(grad, out)

    @staticmethod
    def jvp(ctx, x_t: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return _masked(x_t, out)


class ReLUBackward(torch.autograd.Function):
    """(grad, out) -> grad masked by out > 0. Piecewise constant in ``out``: its derivative in ``out`` is zero
    wherever it exists, so the tangent and the backward pass involve ``grad``'s alone."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad: Tensor, out: Tensor) -> Tensor:
        return _masked(grad, out)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, out = inputs
        ctx.save_for_backward(out)
        ctx.save_for_forward(out)

    @staticmethod
    def backward(ctx, grad_c: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        return _masked(grad_c, out), None

    @staticmethod
    def jvp(ctx, grad_t: Tensor | None, _out_t: Tensor | None) -> Tensor:
        (out,) = ctx.saved_tensors
        return torch.zeros_like(out) if grad_t is None else _masked(grad_t, out)


def twice_differentiable_relu(x: Tensor) -> Tensor:
    """``F.relu(x)`` with a derivative whose tangent takes one operation."""
    return TwiceDifferentiableReLU.apply(x)
