"""What one task's meta-gradient cost and saw: its fields, defined once, for both engines.

The per-task engine returns a ``MetaGradientRecord``; the batched engine returns the same fields as tensors with a
leading task axis (``diagnostic_defaults`` gives each field's value where an algorithm leaves it out, a missing
float or None as nan).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class MetaGradientRecord:
    """What one task's meta-gradient cost and saw.

    ``grad_evals`` counts gradients of a task loss (support or query); ``hvp_evals`` counts
    Hessian-vector products, and for second-order MAML the backward pass through each inner step,
    which costs one Hessian-vector product (the paper's accounting, Section 4); ``loss_evals``
    counts loss values taken without a gradient (line searches).
    """

    inner_loss: float = float("nan")  # support loss at the adapted parameters, without the proximal term
    query_loss: float = float("nan")
    query_accuracy: float | None = None
    grad_evals: int = 0
    hvp_evals: int = 0
    loss_evals: int = 0
    cg_iterations: int = 0
    cg_residual: float | None = None  # relative residual ||b - A g|| / ||b|| of the meta-gradient solve
    negative_curvature: bool = False  # the meta-gradient's CG met p^T A p <= 0
    inner_negative_curvature: bool = False  # the inner solver's CG (Newton-CG) met it on its way to phi

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def diagnostic_defaults() -> dict[str, bool | int | float]:
    """Each field of ``MetaGradientRecord`` and its default as a diagnostics tensor holds it: a bool, an int, or a
    float (None, "not measured", as nan)."""
    record = MetaGradientRecord()
    return {f.name: math.nan if getattr(record, f.name) is None else getattr(record, f.name) for f in fields(record)}
