"""Conjugate gradient for A x = b with A symmetric, known only through ``matvec``.

Plain CG on the system itself, never on the normal equations (which square the condition number).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CGResult:
    x: Tensor
    iterations: int  # updates of x made
    matvecs: int  # products with A taken (one per iteration, one more when curvature stops it)
    residual_norm: float  # ||b - A x|| by the recurrence, relative to nothing: absolute
    relative_residual: float  # residual_norm / ||b||
    negative_curvature: bool  # met p^T A p <= 0 and stopped there
    converged: bool


def check_budget(max_iterations: int, tolerance: float) -> None:
    """The arguments every Krylov solver here takes: an iteration budget and a relative tolerance."""
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iterations: int,
    tolerance: float = 0.0,
) -> CGResult:
    """Approximately solve A x = b from x = 0 by at most ``max_iterations`` CG iterations.

    Stops when ||r|| <= tolerance * ||b||. A direction with p^T A p <= 0 (A not positive
    definite along p) stops the solve before it would divide by that curvature; the result says so.
    """
    check_budget(max_iterations, tolerance)
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = torch.dot(r, r)
    b_norm = rr.sqrt().item()
    iterations = matvecs = 0
    negative_curvature = False
    converged = b_norm == 0.0
    while iterations < max_iterations and not converged:
        ap = matvec(p)
        matvecs += 1
        curvature = torch.dot(p, ap)
        if curvature.item() <= 0.0:
            negative_curvature = True
            break
        alpha = rr / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rr_next = torch.dot(r, r)
        iterations += 1
        if rr_next.sqrt().item() <= tolerance * b_norm:
            converged = True
            rr = rr_next
            break
        p = r + (rr_next / rr) * p
        rr = rr_next
    residual = rr.sqrt().item()
    return CGResult(
        x=x,
        iterations=iterations,
        matvecs=matvecs,
        residual_norm=residual,
        relative_residual=residual / b_norm if b_norm > 0 else 0.0,
        negative_curvature=negative_curvature,
        converged=converged,
    )


@dataclass(frozen=True)
class MaskedCGResult:
    """``conjugate_gradient``'s answer as tensors, read by nobody mid-solve: for a stack of systems, one entry per
    row (a scalar per task under ``vmap``)."""

    x: Tensor
    iterations: Tensor  # updates of x made
    matvecs: Tensor  # products with A that the reference solver would have taken
    residual_norm: Tensor
    relative_residual: Tensor
    negative_curvature: Tensor  # bool
    converged: Tensor  # bool

    @staticmethod
    def of_rows(x: Tensor, *scalars: Tensor) -> MaskedCGResult:
        """The result from per-row scalars kept as [..., 1] (so that they broadcast against the vectors)."""
        return MaskedCGResult(x, *(scalar.squeeze(-1) for scalar in scalars))


def row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Each row's inner product, [..., 1]: of two vectors, or of every pair of rows of two [systems, n] stacks."""
    if a.dim() == 1:  # one system (a task's, under vmap): ``torch.dot``, rounded as the reference solvers round it
        return torch.dot(a, b).unsqueeze(0)
    return (a * b).sum(dim=-1, keepdim=True)


def row_scalar(b: Tensor, value: float | bool | int, dtype: torch.dtype | None = None) -> Tensor:
    """``value`` for each row of ``b``, [..., 1], on its device: a fill, capturable in a CUDA graph."""
    return torch.full((*b.shape[:-1], 1), value, dtype=dtype or b.dtype, device=b.device)


def masked_conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iterations: int,
    tolerance: float = 0.0,
) -> MaskedCGResult:
    """``conjugate_gradient`` with a fixed budget and no data-dependent control flow.

    It always runs ``max_iterations`` products; once the reference solver would have stopped (the
    tolerance reached, or a direction with p^T A p <= 0 met), a mask freezes x, r, p and the counts,
    so the result is the reference's, value for value. Nothing is read back to the host, which is
    what lets ``torch.func.vmap`` batch it over tasks and a CUDA graph capture it. ``b`` is one
    right-hand side [n], or a stack [systems, n] of independent systems that ``matvec`` multiplies row
    by row (the batched engine's stacked network): each row is solved, and frozen, on its own.
    """
    check_budget(max_iterations, tolerance)
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = row_dot(r, r)
    b_norm = rr.sqrt()
    iterations, matvecs = row_scalar(b, 0, torch.long), row_scalar(b, 0, torch.long)
    negative_curvature = row_scalar(b, False, torch.bool)
    converged = b_norm == 0.0
    active = ~converged
    # the bookkeeping in as few operations as give the same values (each is a kernel of a captured iteration): the
    # fills and the threshold made once, counts advanced by adding a bool mask
    threshold, zero, one = tolerance * b_norm, row_scalar(b, 0.0), row_scalar(b, 1.0)
    for _ in range(max_iterations):
        ap = matvec(p)
        matvecs = matvecs + active
        curvature = row_dot(p, ap)
        meets_curvature = active & (curvature <= 0.0)
        negative_curvature = negative_curvature | meets_curvature
        step = active & ~meets_curvature
        alpha = torch.where(step, rr / torch.where(step, curvature, one), zero)
        # where(), not a product with a zero alpha: a frozen task's product may hold inf or nan
        x = torch.where(step, x + alpha * p, x)
        r = torch.where(step, r - alpha * ap, r)
        rr_next = torch.where(step, row_dot(r, r), rr)
        iterations = iterations + step
        reached = step & (rr_next.sqrt() <= threshold)
        converged = converged | reached
        moves_on = step & ~reached
        beta = torch.where(moves_on, rr_next / torch.where(moves_on, rr, one), zero)
        p = torch.where(moves_on, r + beta * p, p)
        rr = rr_next
        active = moves_on
    residual = rr.sqrt()
    relative = torch.where(b_norm > 0, residual / torch.where(b_norm > 0, b_norm, one), zero)
    return MaskedCGResult.of_rows(x, iterations, matvecs, residual, relative, negative_curvature, converged)
