"""First-order MAML: the query gradient at the adapted parameters, ignoring how they depend on theta."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .functional import FunctionalModel, Task
from .inner_solvers import gradient_descent
from .protocol import (MetaGradient, MetaGradientRecord, proximal_objective, query_loss_and_gradient, register,
                       InnerGradientDescentConfig)


@register
@dataclass(frozen=True)
class FirstOrderMAML(InnerGradientDescentConfig):
    name: ClassVar[str] = "fomaml"

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        inner = gradient_descent(proximal_objective(model, task.support, theta, self.lam), theta,
                                 self.inner_steps, self.inner_lr)
        query_loss, gradient, accuracy = query_loss_and_gradient(model, inner.phi, task.query)
        record = MetaGradientRecord(
            inner_loss=model.loss(inner.phi, task.support).item(),
            query_loss=query_loss,
            query_accuracy=accuracy,
            grad_evals=inner.grad_evals + 1,
        )
        return MetaGradient(gradient, record, inner.phi)
