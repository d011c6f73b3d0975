"""Gradients and Hessian-vector products by reverse-mode autodiff (double backward).

Kept on ``torch.autograd`` rather than ``torch.func``: the profiler counts saved tensors with
``saved_tensors_hooks``, which ``torch.func.grad``/``vjp`` refuse.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Objective = Callable[[Tensor], Tensor]


def value_and_gradient(objective: Objective, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """f(x) and grad f(x) at a detached copy of ``x``; with ``create_graph`` the gradient stays differentiable."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = objective(x)
        (grad,) = torch.autograd.grad(value, x, create_graph=create_graph)
    if not create_graph:
        value, grad = value.detach(), grad.detach()
    return value, grad


class HessianOperator:
    """v -> (grad^2 f)(x) v for a fixed x, by one backward pass through the gradient's graph per product.

    The gradient's graph is built once and kept while the operator lives, so its memory is that of
    one gradient plus one backward (Theorem 1's "at most twice a gradient"), whatever the number of
    products. ``products`` counts the Hessian-vector products taken.
    """

    def __init__(self, objective: Objective, x: Tensor):
        self.x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            self.value = objective(self.x)
            (self.gradient,) = torch.autograd.grad(self.value, self.x, create_graph=True)
        self.products = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.products += 1
        (hv,) = torch.autograd.grad(self.gradient, self.x, grad_outputs=v, retain_graph=True)
        return hv


def hessian_vector_product(objective: Objective, x: Tensor, v: Tensor) -> Tensor:
    """One product (grad^2 f)(x) v; use ``HessianOperator`` for several at the same x."""
    return HessianOperator(objective, x)(v)


def forward_over_reverse_hvp(objective: Objective, x: Tensor, v: Tensor) -> Tensor:
    """(grad^2 f)(x) v as the directional derivative of the gradient: ``jvp`` of ``torch.func.grad``.

    The batched engine's product: it composes with ``vmap`` over tasks through BatchNorm, where
    reverse-over-reverse (``vjp`` of ``grad``) refuses to run under ``vmap``. Pure, no graph kept.
    """
    return gradient_and_forward_over_reverse_hvp(objective, x, v)[1]


def gradient_and_forward_over_reverse_hvp(objective: Objective, x: Tensor, v: Tensor,
                                          has_aux: bool = False) -> tuple[Tensor, ...]:
    """(grad f(x), (grad^2 f)(x) v): ``forward_over_reverse_hvp`` with the gradient it computes anyway (the
    ``jvp``'s primal output). ``has_aux``: ``objective`` returns (f(x), aux), and aux, not differentiated, comes
    third (a value the forward pass computes anyway, such as each task's loss of which f is the sum)."""
    if has_aux:
        return torch.func.jvp(torch.func.grad(objective, has_aux=True), (x,), (v,), has_aux=True)
    return torch.func.jvp(torch.func.grad(objective), (x,), (v,))
