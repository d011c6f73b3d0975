"""Second-order MAML: backpropagation through the unrolled inner gradient descent, built on ``higher``.

The inner objective is L_train, or with ``lam > 0`` the proximally regularized
G(phi, theta) = L_train(phi) + lam/2 ||phi - theta||^2, which is how the paper's Figure 2a
compares MAML with iMAML. Every inner gradient keeps its graph (``create_graph``): the whole path
is held in memory, which is the cost iMAML removes.

Truncated backpropagation (Shaban et al., 2019): ``backprop_steps = T`` runs the first K - T of the K
inner steps without a graph and differentiates through the last T only, so the graph, and the
memory, is T steps long. The truncated start phi_{K-T} enters as theta + (phi_{K-T} - theta) with
the bracket held constant, i.e. the Jacobian of the steps not backpropagated through is taken as the
identity: T = 0 is then first-order MAML on the same inner objective, T = K (or -1, the default) is
full MAML, and the bias of 0 < T < K decays like the inner loop's contraction to the power T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import higher
import torch
from torch import Tensor

from metagrad.errors import require

from . import batched
from .functional import FunctionalModel, Task, TaskBatch
from .inner_solvers import functional_gradient_descent, gradient_descent, gradient_steps
from .protocol import (
    InnerGradientDescentConfig,
    MetaGradient,
    MetaGradientRecord,
    MetaObjective,
    proximal_objective,
)
from .registry import register

# Finn et al. (2017)'s inner loop per (dataset, ways): steps and step size (their meta-batch 32 / 16 / 4 and Adam
# 1e-3 for 60,000 iterations are every preset's defaults, bench/training/presets.py)
FINN_INNER_LOOP = {("omniglot", 5): (1, 0.4), ("omniglot", 20): (5, 0.1), ("mini-imagenet", 5): (5, 0.01)}


def finn_inner_loop(dataset: str, ways: int) -> dict[str, Any]:
    steps, lr = FINN_INNER_LOOP[(dataset, ways)]
    return {"inner_steps": steps, "inner_lr": lr}


@register
@dataclass(frozen=True)
class MAML(InnerGradientDescentConfig):
    name: ClassVar[str] = "maml"
    label: ClassVar[str] = "MAML"
    order: ClassVar[int] = 0
    color: ClassVar[str] = "C0"
    cpu_batched_max_step_images: ClassVar[int] = 5  # bench/training/engines.py says how it was measured
    exact_when: ClassVar[dict] = {}  # always: the unrolled loop is differentiated exactly
    backprop_steps: int = -1  # T: differentiate through the last T inner steps only; -1: all of them

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """Finn et al. (2017)'s inner loop for the paper's settings (``FINN_INNER_LOOP``)."""
        return {cls.name: {"hyperparameters": finn_inner_loop(dataset, ways)}}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.backprop_steps, int) and -1 <= self.backprop_steps <= self.inner_steps,
                f"maml: backprop_steps must be an integer from 0 to inner_steps ({self.inner_steps}), or -1 for all, "
                f"got {self.backprop_steps!r}")

    @property
    def tracked_steps(self) -> int:
        """T, the inner steps backpropagated through."""
        return self.inner_steps if self.backprop_steps < 0 else self.backprop_steps

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        theta = theta.detach().requires_grad_(True)
        untracked = self.inner_steps - self.tracked_steps
        with torch.enable_grad():
            start = model.unflatten(theta)  # the proximal anchor, differentiated through
            params = start
            if untracked:
                early = gradient_descent(proximal_objective(model, task.support, theta, self.lam), theta, untracked,
                                         self.inner_lr).phi
                params = model.unflatten(theta + (early - theta).detach())
            fmodel = higher.monkeypatch(model.module, copy_initial_weights=True, track_higher_grads=True)
            sgd = torch.optim.SGD(model.module.parameters(), lr=self.inner_lr)
            diffopt = higher.optim.get_diff_optim(sgd, model.module.parameters(), track_higher_grads=True)
            support = task.support
            for _ in range(self.tracked_steps):
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
            hvp_evals=self.tracked_steps,
        )
        return MetaGradient(gradient.detach(), record, phi)

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """theta -> L_test(phi_K(theta)), the proximal anchor theta too; truncated, phi_{K-T} = theta + c with c held
        at its value at this theta."""
        untracked = self.inner_steps - self.tracked_steps
        offset = gradient_descent(proximal_objective(model, task.support, theta, self.lam), theta, untracked,
                                  self.inner_lr).phi - theta

        def query_loss(th: Tensor) -> float:
            phi = gradient_descent(proximal_objective(model, task.support, th, self.lam), th + offset,
                                   self.tracked_steps, self.inner_lr).phi
            with torch.no_grad():
                return model.loss(phi, task.query).item()

        return MetaObjective(query_loss, theta)

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """On the stacked network where the model has one (``_stacked_meta_gradient``), else nested
        ``torch.func.grad`` through the unrolled steps (as ``maml_meta_gradient_torch_func``), per task."""
        if model.stacks:
            return self._stacked_meta_gradient(model, theta, tasks)
        untracked = self.inner_steps - self.tracked_steps

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            def query_loss_of(th: Tensor):
                # the proximal anchor is theta itself, differentiated through, as in the higher path
                # differentiated through: the network's form for that (fewer operations, the same function)
                step = torch.func.grad(batched.proximal(model, sx, sy, th, self.lam, second_order=True))
                phi = th
                if untracked:
                    fixed = th.detach()
                    early = functional_gradient_descent(batched.proximal(model, sx, sy, fixed, self.lam), fixed,
                                                        untracked, self.inner_lr).phi
                    phi = th + (early - fixed)
                for _ in range(self.tracked_steps):
                    phi = phi - self.inner_lr * step(phi)
                logits = model.forward(phi, qx, second_order=True)
                loss = model.mapped_loss_fn(logits, qy)
                return loss, (loss, logits, phi)

            gradient, (loss, logits, phi) = torch.func.grad(query_loss_of, has_aux=True)(theta)
            return gradient, batched.record(
                inner_loss=batched.support_loss(model, sx, sy)(phi), query_loss=loss,
                query_accuracy=batched.accuracy(logits, qy), grad_evals=self.inner_steps + 1,
                hvp_evals=self.tracked_steps), phi

        return batched.over_tasks(per_task, theta, tasks)

    def _stacked_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """The same meta-gradient for the whole meta-batch on the stacked network, the chain rule through the
        tracked steps written out. Step i maps phi_i to phi_i - lr (grad L(phi_i) + lam (phi_i - theta)), so a
        cotangent v of phi_{i+1} is (1 - lr lam) v - lr H_i v for phi_i, and lr lam v for theta through the
        proximal anchor; the untracked steps' Jacobian is the identity (``backprop_steps``), as is phi_0's.
        Each H_i v is one forward-over-reverse pass for every task (``batched.stacked_gradient_and_hessian_product``
        at phi_i, bound in the forward pass, whose step takes the gradient from the product's first stage): nested
        ``grad`` would differentiate the stacked network's backward again, and PyTorch's double backward of a
        grouped convolution loops over its groups, where forward over reverse does not."""
        start = batched.stacked_start(model, theta, tasks.size)
        products = []  # u -> H_i u at each tracked step's phi_i, bound as the step takes its gradient there

        def tracked_gradient(phi: Tensor) -> Tensor:
            gradient, product = batched.stacked_gradient_and_hessian_product(model, tasks.support, phi)
            products.append(product)
            return gradient

        # phi_K, packed: the untracked steps first order, the tracked ones with the products' gradient
        phi = gradient_steps(batched.stacked_proximal_gradient(model, tasks.support, start, self.lam), start,
                             self.inner_steps - self.tracked_steps, self.inner_lr)
        phi = gradient_steps(batched.with_proximal_term(tracked_gradient, start, self.lam), phi, self.tracked_steps,
                             self.inner_lr)
        query_loss, v, accuracy = batched.stacked_query_loss_and_gradient(model, phi, tasks.query)
        anchor = torch.zeros_like(v) if self.lam else None  # theta's gradient through the proximal anchors
        for hessian_product in reversed(products):
            product = hessian_product(v)
            if self.lam:
                anchor = torch.add(anchor, v, alpha=self.inner_lr * self.lam)
                v = torch.add(v * (1 - self.inner_lr * self.lam), product, alpha=-self.inner_lr)
            else:
                v = torch.add(v, product, alpha=-self.inner_lr)
        with torch.no_grad():
            inner_loss = model.stacked_losses(phi, tasks.support)[0]
        diagnostics = batched.record(inner_loss=inner_loss, query_loss=query_loss, query_accuracy=accuracy,
                                     grad_evals=self.inner_steps + 1, hvp_evals=self.tracked_steps)
        return batched.BatchedMetaGradient(v if anchor is None else v + anchor, diagnostics, model.unpack(phi, tasks.size))


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
