"""Central finite differences of a scalar function of a flat float64 vector."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def central_difference_gradient(f: Callable[[Tensor], float], x: Tensor, step: float = 1e-6) -> Tensor:
    x = x.detach().clone()
    grad = torch.empty_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = step
        grad[i] = (f(x + e) - f(x - e)) / (2 * step)
    return grad


def relative_error(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def directional_derivatives(f: Callable[[Tensor], float], x: Tensor, directions: Tensor, step: float = 1e-6) -> Tensor:
    """(f(x + h u) - f(x - h u)) / 2h for each row u of ``directions``: a check along a few random
    directions where a full coordinate-wise gradient costs too much."""
    x = x.detach()
    return torch.stack([torch.tensor((f(x + step * u) - f(x - step * u)) / (2 * step), dtype=x.dtype)
                        for u in directions])
