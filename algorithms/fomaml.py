"""First-order MAML: the query gradient at the adapted parameters, ignoring how they depend on theta."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .functional import FunctionalModel, Task
from .protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, query_loss_and_gradient, register


@register
@dataclass(frozen=True)
class FirstOrderMAML(InnerGradientDescentConfig):
    name: ClassVar[str] = "fomaml"

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        inner = self.inner_solution(model, theta, task.support)
        query_loss, gradient, accuracy = query_loss_and_gradient(model, inner.phi, task.query)
        record = MetaGradientRecord(
            inner_loss=model.loss(inner.phi, task.support).item(),
            query_loss=query_loss,
            query_accuracy=accuracy,
            grad_evals=inner.grad_evals + 1,
        )
        return MetaGradient(gradient, record, inner.phi)
