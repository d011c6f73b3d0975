"""Reptile: the meta-gradient is theta - phi, the step from the meta-parameters to the adapted ones.

The inner loop runs on the support set only. With ``lam > 0`` it minimizes the proximal objective
G, and at its exact minimizer theta - phi = (1/lam) grad L_train(phi) (paper Appendix A).
The query set is only evaluated (loss and accuracy), not differentiated.

Defaults are the suite's shared protocol: plain gradient descent on the whole support set. Nichol et
al. (2018) ran Reptile differently, and these hyperparameters express it: ``inner_optimizer="adam"``
(beta1 = 0), ``inner_batch`` examples per inner step, and at evaluation ``eval_inner_steps`` steps on
minibatches of ``eval_inner_batch``; their outer step (SGD on theta - phi, annealed) and train shots
are the training loop's (``bench.training.config.TrainConfig``). One departure: their TensorFlow code keeps the
inner Adam's second-moment estimate from task to task (its slots are not among the variables it resets);
here each task starts it afresh, so that a task's result depends on theta and the task alone, which
the protocol, the batched engine and several processes need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from metagrad.errors import require

from . import batched
from .functional import Batch, FunctionalModel, Task, TaskBatch
from .hessian_vector_product import value_and_gradient
from .inner_solvers import InnerSolution, MaskedInnerSolution, minibatch_descent, minibatch_indices
from .protocol import (
    InnerGradientDescentConfig,
    MetaGradient,
    MetaGradientRecord,
    MetaObjective,
    proximal_objective,
)
from .registry import register

INNER_OPTIMIZERS = ("sgd", "adam")


# Nichol et al.'s commands (openai/supervised-reptile, README, archived version) per (dataset, ways):
# --inner-iters, --inner-batch, --learning-rate (the inner Adam's), --eval-iters, --eval-batch,
# --train-shots, --meta-batch, --meta-iters; every one with --meta-step 1 --meta-step-final 0.
NICHOL_REPTILE = {
    ("omniglot", 5): {"inner_steps": 5, "inner_batch": 10, "inner_lr": 0.001, "eval_inner_steps": 50,
                      "eval_inner_batch": 5, "train_shots": 10, "meta_batch": 5, "iterations": 100_000},
    ("omniglot", 20): {"inner_steps": 10, "inner_batch": 20, "inner_lr": 0.0005, "eval_inner_steps": 50,
                       "eval_inner_batch": 10, "train_shots": 10, "meta_batch": 5, "iterations": 200_000},
    ("mini-imagenet", 5): {"inner_steps": 8, "inner_batch": 10, "inner_lr": 0.001, "eval_inner_steps": 50,
                           "eval_inner_batch": 5, "train_shots": 15, "meta_batch": 5, "iterations": 100_000},
}


@register
@dataclass(frozen=True)
class Reptile(InnerGradientDescentConfig):
    name: ClassVar[str] = "reptile"
    label: ClassVar[str] = "Reptile"
    order: ClassVar[int] = 2
    color: ClassVar[str] = "C2"
    cpu_batched_max_step_images: ClassVar[int] = 20  # bench/training/engines.py says how it was measured
    # theta - phi is a gradient only at the proximal objective's minimizer (its inner loop converged, lam > 0)
    exact_when: ClassVar[dict] = {"lam": 10.0, "inner_steps": 300}
    inner_optimizer: str = "sgd"  # "sgd", or "adam" with beta1 = 0 (Nichol et al.)
    inner_batch: int = 0  # support examples per inner step; 0: all of them
    eval_inner_steps: int = 0  # inner steps when adapting for evaluation; 0: inner_steps
    eval_inner_batch: int = 0  # examples per step then; 0: inner_batch

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """Nichol et al.'s Reptile as they ran it (``NICHOL_REPTILE``: inner Adam on minibatches, an outer SGD step
        on theta - phi annealed from 1 to 0, their training shots, meta-batch and iterations), and ``reptile-shared``,
        the suite's shared protocol (plain SGD inside on the whole support set, the shared Adam outer loop)."""
        nichol = NICHOL_REPTILE[(dataset, ways)]
        omniglot = dataset == "omniglot"
        return {
            cls.name: {
                "hyperparameters": {"inner_optimizer": "adam", "inner_steps": nichol["inner_steps"],
                                    "inner_batch": nichol["inner_batch"], "inner_lr": nichol["inner_lr"],
                                    "eval_inner_steps": nichol["eval_inner_steps"],
                                    "eval_inner_batch": nichol["eval_inner_batch"]},
                "outer_optimizer": "sgd", "meta_lr": 1.0, "meta_lr_final": 0.0, "train_shots": nichol["train_shots"],
                "train_queries": 5, "meta_batch": nichol["meta_batch"], "iterations": nichol["iterations"]},
            f"{cls.name}-shared": {"hyperparameters": {"inner_steps": 5 if omniglot else 8,
                                                       "inner_lr": 0.1 if omniglot else 0.01}},
        }

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.inner_optimizer in INNER_OPTIMIZERS,
                f"reptile: inner_optimizer must be one of {', '.join(INNER_OPTIMIZERS)}, got {self.inner_optimizer!r}")
        for name in ("inner_batch", "eval_inner_steps", "eval_inner_batch"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 0, f"reptile: {name} must be an integer >= 0, got {value!r}")

    @property
    def shared_protocol(self) -> bool:
        """Plain full-batch gradient descent, the same at evaluation: the path every algorithm shares."""
        return self.inner_optimizer == "sgd" and not (self.inner_batch or self.eval_inner_steps or self.eval_inner_batch)

    def steps_and_batch(self, evaluation: bool) -> tuple[int, int]:
        """Inner steps and examples per step (0: the whole support set), in training or at evaluation."""
        if not evaluation:
            return self.inner_steps, self.inner_batch
        return self.eval_inner_steps or self.inner_steps, self.eval_inner_batch or self.inner_batch

    def _solution(self, model: FunctionalModel, theta: Tensor, support: Batch, evaluation: bool) -> InnerSolution:
        steps, batch = self.steps_and_batch(evaluation)
        indices = minibatch_indices(support.y.shape[0], batch, steps, support.x.device)

        def gradient_at(phi: Tensor, k: int) -> Tensor:
            part = Batch(support.x[indices[k]], support.y[indices[k]])
            return value_and_gradient(proximal_objective(model, part, theta, self.lam), phi)[1]

        phi = minibatch_descent(gradient_at, theta.detach(), steps, self.inner_lr, self.inner_optimizer == "adam")
        return InnerSolution(phi=phi, grad_evals=steps)

    def inner_solution(self, model: FunctionalModel, theta: Tensor, support: Batch) -> InnerSolution:
        if self.shared_protocol:
            return super().inner_solution(model, theta, support)
        return self._solution(model, theta, support, evaluation=False)

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        if self.shared_protocol:
            return super().adapt(model, theta, support)
        return self._solution(model, theta, support, evaluation=True).phi

    def _functional(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor, evaluation: bool) -> Tensor:
        steps, batch = self.steps_and_batch(evaluation)
        indices = minibatch_indices(y.shape[0], batch, steps, x.device)

        def gradient_at(phi: Tensor, k: int) -> Tensor:
            return torch.func.grad(batched.proximal(model, x[indices[k]], y[indices[k]], theta, self.lam))(phi)

        return minibatch_descent(gradient_at, theta, steps, self.inner_lr, self.inner_optimizer == "adam")

    def functional_inner_solution(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor) -> MaskedInnerSolution:
        if self.shared_protocol:
            return super().functional_inner_solution(model, theta, x, y)
        return MaskedInnerSolution.of_gradient_steps(self._functional(model, theta, x, y, evaluation=False),
                                                     self.inner_steps)

    def _stacked(self, model: FunctionalModel, theta: Tensor, support: Batch, evaluation: bool) -> Tensor:
        """Every task's phi at once on the stacked network (``FunctionalModel.pack``'s layout): ``_functional``'s
        steps, each task's minibatch k the same examples of its own support set, as there."""
        if self.shared_protocol:
            return batched.stacked_gradient_descent(model, theta, support, self.lam, self.inner_steps, self.inner_lr)
        steps, batch = self.steps_and_batch(evaluation)
        indices = minibatch_indices(support.y.shape[1], batch, steps, support.x.device)
        start = batched.stacked_start(model, theta, support.x.shape[0])

        def gradient_at(phi: Tensor, k: int) -> Tensor:
            part = Batch(support.x[:, indices[k]], support.y[:, indices[k]])
            return batched.stacked_proximal_gradient(model, part, start, self.lam)(phi)

        return minibatch_descent(gradient_at, start, steps, self.inner_lr, self.inner_optimizer == "adam")

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> Tensor:
        if model.stacks:
            with torch.no_grad():
                return model.unpack(self._stacked(model, theta, tasks.support, evaluation=True), tasks.size)
        if self.shared_protocol:
            return super().batched_adapt(model, theta, tasks)
        return batched.adapt_over_tasks(lambda th, x, y: self._functional(model, th, x, y, evaluation=True), theta, tasks)

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """theta -> min_phi G(phi, theta) / lam, the proximal objective's minimum (its Moreau envelope), whose
        gradient is theta - phi* (paper Appendix A); with its inner loop stopped early or lam = 0, theta - phi is
        the gradient of nothing."""
        require(self.lam > 0, "reptile: theta - phi is the gradient of the Moreau envelope only with lam > 0")

        def envelope(th: Tensor) -> float:
            phi = self.adapt(model, th, task.support)
            with torch.no_grad():
                return proximal_objective(model, task.support, th, self.lam)(phi).item() / self.lam

        return MetaObjective(envelope, theta)

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
        if model.stacks:  # first-order throughout: the whole meta-batch on the stacked network
            with torch.no_grad():
                phi = self._stacked(model, theta, tasks.support, evaluation=False)
                query_loss, logits = model.stacked_losses(phi, tasks.query)
                inner_loss = model.stacked_losses(phi, tasks.support)[0]
                phi = model.unpack(phi, tasks.size)
                return batched.BatchedMetaGradient(theta.detach() - phi, batched.record(
                    inner_loss=inner_loss, query_loss=query_loss,
                    query_accuracy=batched.accuracy(logits, tasks.query.y), grad_evals=self.inner_steps), phi)

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            phi = self.functional_inner_solution(model, theta, sx, sy).phi
            logits = model.forward(phi, qx)
            return theta - phi, batched.record(
                inner_loss=batched.support_loss(model, sx, sy)(phi), query_loss=model.mapped_loss_fn(logits, qy),
                query_accuracy=batched.accuracy(logits, qy), grad_evals=self.inner_steps), phi

        with torch.no_grad():
            return batched.over_tasks(per_task, theta, tasks)
