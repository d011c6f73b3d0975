"""Extreme eigenvalues of a symmetric operator known only through ``matvec``: Lanczos.

Full reorthogonalization (twice, against every earlier vector) keeps the Ritz values free of the
spurious copies that plain Lanczos produces in finite precision; at these sizes (tens of steps) it
costs little beside the products themselves.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def lanczos_ritz_values(matvec: Callable[[Tensor], Tensor], start: Tensor, steps: int) -> Tensor:
    """The Ritz values (ascending) of ``steps`` Lanczos iterations from ``start``.

    The smallest and largest converge first to the operator's extreme eigenvalues; after as many steps
    as the operator has distinct eigenvalues (or the dimension), they are all of them. Stops early when
    the Krylov space stops growing.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    q = start / start.norm()
    basis = [q]
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    for _ in range(steps):
        w = matvec(q)
        alphas.append(torch.dot(q, w))
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = w.norm()
        if len(alphas) == steps or beta <= 1e-12 * alphas[0].abs().clamp_min(1.0):
            break
        betas.append(beta)
        q = w / beta
        basis.append(q)
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(t)
