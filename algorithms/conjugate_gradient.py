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
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
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
