"""Reptile: the meta-gradient is theta - phi, the step from the meta-parameters to the adapted ones.

The inner loop runs on the support set only. With ``lam > 0`` it minimizes the proximal objective
G, and at its exact minimizer theta - phi = (1/lam) grad L_train(phi) (paper Appendix A).
The query set is only evaluated (loss and accuracy), not differentiated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .functional import FunctionalModel, Task
from .protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, register


@register
@dataclass(frozen=True)
class Reptile(InnerGradientDescentConfig):
    name: ClassVar[str] = "reptile"

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        inner = self.inner_solution(model, theta, task.support)
        with torch.no_grad():
            query_loss, accuracy = model.loss_and_accuracy(inner.phi, task.query)
            record = MetaGradientRecord(
                inner_loss=model.loss(inner.phi, task.support).item(),
                query_loss=query_loss.item(),
                query_accuracy=accuracy,
                grad_evals=inner.grad_evals,
            )
        return MetaGradient(theta.detach() - inner.phi, record, inner.phi)
