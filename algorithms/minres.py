"""MINRES for A x = b with A symmetric, possibly indefinite, known only through ``matvec``.

Paige and Saunders (1975), without a preconditioner: Lanczos builds an orthonormal basis of the
Krylov space, and x_k minimizes ||b - A x|| over it. Unlike conjugate gradient it never divides by a
curvature p^T A p, so an indefinite (I + H/lambda) does not stop it; its residual norm never grows.
``negative_curvature`` reports a Lanczos vector with v^T A v <= 0 (A is then not positive definite);
it is recorded, not acted on.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .conjugate_gradient import CGResult, MaskedCGResult, check_budget, row_dot, row_scalar


def minres(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iterations: int, tolerance: float = 0.0) -> CGResult:
    """(Its result has conjugate gradient's shape: iterations, products, residual, curvature met, converged.)

    At most ``max_iterations`` MINRES iterations from x = 0; stops once ||r|| <= tolerance * ||b||, or
    when the Krylov space stops growing (then x is exact)."""
    check_budget(max_iterations, tolerance)
    x = torch.zeros_like(b)
    beta1 = b.norm().item()
    if beta1 == 0.0:
        return CGResult(x, 0, 0, 0.0, 0.0, False, True)
    r1, r2, y = b.clone(), b.clone(), b.clone()
    w, w2 = torch.zeros_like(b), torch.zeros_like(b)
    beta, old_beta, dbar, epsilon, phibar, cs, sn = beta1, 0.0, 0.0, 0.0, beta1, -1.0, 0.0
    iterations = 0
    negative_curvature = converged = False
    while iterations < max_iterations:
        v = y / beta
        y = matvec(v)
        if iterations > 0:
            y = y - (beta / old_beta) * r1
        alpha = torch.dot(v, y).item()
        negative_curvature |= alpha <= 0.0
        y = y - (alpha / beta) * r2
        r1, r2 = r2, y
        old_beta, beta = beta, y.norm().item()
        old_epsilon = epsilon
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon, dbar = sn * beta, -cs * beta
        gamma = max(math.hypot(gbar, beta), torch.finfo(b.dtype).tiny)
        cs, sn = gbar / gamma, beta / gamma
        phi, phibar = cs * phibar, sn * phibar
        w1, w2 = w2, w
        w = (v - old_epsilon * w1 - delta * w2) / gamma
        x = x + phi * w
        iterations += 1
        if phibar <= tolerance * beta1 or beta == 0.0:
            converged = True
            break
    return CGResult(x, iterations, iterations, phibar, phibar / beta1, negative_curvature, converged)


def masked_minres(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iterations: int,
                  tolerance: float = 0.0) -> MaskedCGResult:
    """``minres`` with a fixed budget and masks instead of control flow, for ``vmap`` and graph capture:
    the same values as the reference, iteration for iteration, frozen where it would have stopped. As
    ``masked_conjugate_gradient``, ``b`` is one right-hand side or a stack of independent systems' rows."""
    check_budget(max_iterations, tolerance)

    # fills and the threshold made once, counts advanced by adding a bool mask: fewer operations, the same values
    zero, one = row_scalar(b, 0.0), row_scalar(b, 1.0)

    def safe(denominator: Tensor) -> Tensor:  # a frozen task's denominators may be 0: never divide by them
        return torch.where(denominator != 0, denominator, one)

    x = torch.zeros_like(b)
    beta1 = torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    threshold = tolerance * beta1
    r1, r2, y = b.clone(), b.clone(), b.clone()
    w, w2 = torch.zeros_like(b), torch.zeros_like(b)
    beta, old_beta, dbar, epsilon, phibar, cs, sn = beta1, zero, zero, zero, beta1, row_scalar(b, -1.0), zero
    iterations = row_scalar(b, 0, torch.long)
    negative_curvature = row_scalar(b, False, torch.bool)
    converged = beta1 == 0
    active = ~converged
    tiny = torch.finfo(b.dtype).tiny
    for k in range(max_iterations):
        v = y / safe(beta)
        y_new = matvec(v)
        if k > 0:
            y_new = y_new - (beta / safe(old_beta)) * r1
        alpha = row_dot(v, y_new)
        negative_curvature = negative_curvature | (active & (alpha <= 0))
        y_new = y_new - (alpha / safe(beta)) * r2
        beta_new = torch.linalg.vector_norm(y_new, dim=-1, keepdim=True)
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon_new, dbar_new = sn * beta_new, -cs * beta_new
        gamma = torch.clamp(torch.hypot(gbar, beta_new), min=tiny)
        cs_new, sn_new = gbar / gamma, beta_new / gamma
        phi, phibar_new = cs_new * phibar, sn_new * phibar
        w_new = (v - epsilon * w2 - delta * w) / gamma
        x_new = x + phi * w_new

        def keep(new: Tensor, old: Tensor, active: Tensor = active) -> Tensor:
            return torch.where(active, new, old)

        r1, r2, y = keep(r2, r1), keep(y_new, r2), keep(y_new, y)
        old_beta, beta = keep(beta, old_beta), keep(beta_new, beta)
        epsilon, dbar, cs, sn = keep(epsilon_new, epsilon), keep(dbar_new, dbar), keep(cs_new, cs), keep(sn_new, sn)
        phibar = keep(phibar_new, phibar)
        w2, w = keep(w, w2), keep(w_new, w)
        x = keep(x_new, x)
        iterations = iterations + active
        stops = active & ((phibar_new <= threshold) | (beta_new == 0))
        converged = converged | stops
        active = active & ~stops
    relative = torch.where(beta1 > 0, phibar / safe(beta1), zero)
    return MaskedCGResult.of_rows(x, iterations, iterations, phibar, relative, negative_curvature, converged)
