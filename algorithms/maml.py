"""Second-order MAML: backpropagation through the unrolled inner gradient descent, built on ``higher``.

The inner objective is L_train, or with ``lam > 0`` the proximally regularized
G(phi, theta) = L_train(phi) + lam/2 ||phi - theta||^2, which is how the paper's Figure 2a
compares MAML with iMAML. Every inner gradient keeps its graph (``create_graph``): the whole path
is held in memory, which is the cost iMAML removes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import higher
import torch
from torch import Tensor

from . import batched
from .functional import FunctionalModel, Task, TaskBatch
from .protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, register


@register
@dataclass(frozen=True)
class MAML(InnerGradientDescentConfig):
    name: ClassVar[str] = "maml"
    label: ClassVar[str] = "MAML"
    order: ClassVar[int] = 0

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            start = model.unflatten(theta)
            fmodel = higher.monkeypatch(model.module, copy_initial_weights=True, track_higher_grads=True)
            sgd = torch.optim.SGD(model.module.parameters(), lr=self.inner_lr)
            diffopt = higher.optim.get_diff_optim(sgd, model.module.parameters(), track_higher_grads=True)
            params = start
            support = task.support
            for _ in range(self.inner_steps):
                loss = model.loss_fn(fmodel(support.x, params=params), support.y)
                if self.lam:
                    loss = loss + 0.5 * self.lam * sum((p - p0).pow(2).sum() for p, p0 in zip(params, start))
                params = diffopt.step(loss, params=params)
            out = fmodel(task.query.x, params=params)
            query_loss = model.loss_fn(out, task.query.y)
            (gradient,) = torch.autograd.grad(query_loss, theta)
        with torch.no_grad():
            phi = torch.cat([p.detach().reshape(-1) for p in params])
            inner_loss = model.loss(phi, support).item()
        accuracy = None
        if task.query.y.dtype in (torch.int64, torch.int32):
            accuracy = (out.argmax(-1) == task.query.y).double().mean().item()
        record = MetaGradientRecord(
            inner_loss=inner_loss,
            query_loss=query_loss.item(),
            query_accuracy=accuracy,
            grad_evals=self.inner_steps + 1,
            hvp_evals=self.inner_steps,
        )
        return MetaGradient(gradient.detach(), record, phi)

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """Nested ``torch.func.grad`` through the unrolled steps (as ``maml_meta_gradient_torch_func``), per task."""

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            def query_loss_of(th: Tensor):
                # the proximal anchor is theta itself, differentiated through, as in the higher path
                step = torch.func.grad(batched.proximal(model, sx, sy, th, self.lam))
                phi = th
                for _ in range(self.inner_steps):
                    phi = phi - self.inner_lr * step(phi)
                logits = model.forward(phi, qx)
                loss = model.loss_fn(logits, qy)
                return loss, (loss, logits, phi)

            gradient, (loss, logits, phi) = torch.func.grad(query_loss_of, has_aux=True)(theta)
            return gradient, batched.record(
                inner_loss=batched.support_loss(model, sx, sy)(phi), query_loss=loss,
                query_accuracy=batched.accuracy(logits, qy), grad_evals=self.inner_steps + 1,
                hvp_evals=self.inner_steps), phi

        return batched.over_tasks(per_task, theta, tasks)


def maml_meta_gradient_torch_func(config: MAML, model: FunctionalModel, theta: Tensor, task: Task) -> Tensor:
    """The same meta-gradient written independently as a pure function with ``torch.func``.

    A cross-check of the ``higher`` path (and a form ``torch.func.vmap`` can batch): nested
    ``torch.func.grad`` differentiates through every inner step.
    """

    def inner_objective(phi: Tensor, anchor: Tensor) -> Tensor:
        loss = model.loss(phi, task.support)
        return loss + 0.5 * config.lam * (phi - anchor).pow(2).sum() if config.lam else loss

    def meta_objective(th: Tensor) -> Tensor:
        phi = th
        for _ in range(config.inner_steps):
            phi = phi - config.inner_lr * torch.func.grad(inner_objective)(phi, th)
        return model.loss(phi, task.query)

    return torch.func.grad(meta_objective)(theta.detach())
