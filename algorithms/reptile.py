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

from . import batched
from .functional import FunctionalModel, Task, TaskBatch
from .protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, register


@register
@dataclass(frozen=True)
class Reptile(InnerGradientDescentConfig):
    name: ClassVar[str] = "reptile"
    label: ClassVar[str] = "Reptile"
    order: ClassVar[int] = 2

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

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            phi = self.functional_inner_solution(model, theta, sx, sy).phi
            logits = model.forward(phi, qx)
            return theta - phi, batched.record(
                inner_loss=batched.support_loss(model, sx, sy)(phi), query_loss=model.loss_fn(logits, qy),
                query_accuracy=batched.accuracy(logits, qy), grad_evals=self.inner_steps), phi

        with torch.no_grad():
            return batched.over_tasks(per_task, theta, tasks)
