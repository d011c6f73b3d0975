"""First-order MAML: the query gradient at the adapted parameters, ignoring how they depend on theta."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from . import batched
from .functional import FunctionalModel, Task, TaskBatch
from .maml import finn_inner_loop
from .protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, MetaObjective, query_loss_and_gradient
from .registry import register


@register
@dataclass(frozen=True)
class FirstOrderMAML(InnerGradientDescentConfig):
    name: ClassVar[str] = "fomaml"
    label: ClassVar[str] = "first-order MAML"
    order: ClassVar[int] = 1
    color: ClassVar[str] = "C1"
    exact_when: ClassVar[dict] = {}

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """MAML's inner loop (Finn et al., 2017), first order."""
        return {cls.name: {"hyperparameters": finn_inner_loop(dataset, ways)}}

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """L_test itself, at the adapted parameters: how phi depends on theta is left out."""
        return MetaObjective(lambda phi: model.loss(phi, task.query).item(), self.adapt(model, theta, task.support))

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

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        if model.stacks:  # every step first-order: the whole meta-batch on the stacked network
            phi = batched.stacked_gradient_descent(model, theta, tasks.support, self.lam, self.inner_steps,
                                                   self.inner_lr)
            query_loss, gradients, accuracy = batched.stacked_query_loss_and_gradient(model, phi, tasks.query)
            with torch.no_grad():
                inner_loss = model.stacked_losses(phi, tasks.support)[0]
            return batched.BatchedMetaGradient(gradients, batched.record(
                inner_loss=inner_loss, query_loss=query_loss, query_accuracy=accuracy,
                grad_evals=self.inner_steps + 1), model.unpack(phi, tasks.size))

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            phi = self.functional_inner_solution(model, theta, sx, sy).phi
            query_loss, gradient, accuracy = batched.query_loss_and_gradient(model, phi, qx, qy)
            return gradient, batched.record(inner_loss=batched.support_loss(model, sx, sy)(phi), query_loss=query_loss,
                                            query_accuracy=accuracy, grad_evals=self.inner_steps + 1), phi

        return batched.over_tasks(per_task, theta, tasks)
