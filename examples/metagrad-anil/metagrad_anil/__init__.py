"""ANIL, "almost no inner loop" (Raghu, Raghu, Bengio and Vinyals, "Rapid Learning or Feature Reuse?", ICLR 2020).

The inner loop adapts only the network's head, its last layer; the body keeps theta's values. The meta-gradient is
still the gradient of the query loss after adaptation with respect to the whole of theta: it backpropagates through
the head's inner steps, and through the body's features of the support and query sets, into every parameter.

The body runs once per set: its features do not change while the head adapts, so the graph kept for the meta-gradient
holds the body's activations once, and each inner step adds only the head's (MAML's holds the whole network's for
every step).

As a metagrad plug-in it is the per-task protocol and nothing more: ``meta_gradient`` and ``adapt`` (metagrad runs
them over a meta-batch for its batched engine), ``meta_objective`` for the suite's finite-difference check, and
``preset_hyperparameters`` for the paper's settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metagrad import (
    FunctionalModel,
    InnerGradientDescentConfig,
    MetaGradient,
    MetaGradientRecord,
    MetaObjective,
    Task,
    require,
)

# Raghu et al. kept MAML's hyperparameters; these are metagrad's MAML presets (inner steps, inner step size)
MAML_INNER_LOOP = {("omniglot", 5): (1, 0.4), ("omniglot", 20): (5, 0.1), ("mini-imagenet", 5): (5, 0.01)}


@dataclass(frozen=True)
class Head:
    """The network's last layer with parameters, as a function of its own slice of the flat parameters (the last
    ``size`` entries: the ConvNet's classifier, or the whole of a linear model)."""

    module: nn.Module
    names: tuple[str, ...]  # the head's parameters, named within it
    shapes: tuple[torch.Size, ...]
    size: int

    @staticmethod
    def of(model: FunctionalModel) -> Head:
        owners = [m for m in model.module.modules() if any(True for _ in m.parameters(recurse=False))]
        require(bool(owners), "anil: the network has no parameters")
        module = owners[-1]
        prefix = next(name for name, m in model.module.named_modules() if m is module)
        named = list(module.named_parameters())
        full = [f"{prefix}.{name}" if prefix else name for name, _ in named]
        require(model.names[-len(full):] == full, f"anil: the last layer with parameters ({prefix or 'the network'}) "
                "must hold the last parameters, the head ANIL adapts")
        return Head(module, tuple(name for name, _ in named), tuple(p.shape for _, p in named),
                    sum(p.numel() for _, p in named))

    def features(self, model: FunctionalModel, theta: Tensor, x: Tensor) -> Tensor:
        """The head's input at parameters theta: the body's output (read as the network runs)."""
        seen: list[Tensor] = []
        hook = self.module.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            model.forward(theta, x)
        finally:
            hook.remove()
        return seen[0]

    def output(self, head: Tensor, features: Tensor) -> Tensor:
        sizes = [shape.numel() for shape in self.shapes]
        parameters = {name: chunk.view(shape) for name, chunk, shape in
                      zip(self.names, torch.split(head, sizes), self.shapes)}
        return functional_call(self.module, parameters, (features,))


@dataclass(frozen=True)
class ANIL(InnerGradientDescentConfig):
    """``inner_steps`` gradient steps of ``inner_lr`` on the head alone (with ``lam > 0``, on the support loss plus
    lam/2 ||head - theta's head||^2); the meta-gradient through them to all of theta."""

    name: ClassVar[str] = "anil"
    label: ClassVar[str] = "ANIL"
    color: ClassVar[str] = "C9"  # its colour in every figure (without one, a stable colour from its name)
    exact_when: ClassVar[dict[str, Any]] = {}  # always: the head's steps are differentiated exactly

    @classmethod
    def preset_hyperparameters(cls, dataset: str, ways: int, shots: int) -> dict[str, Any] | None:
        if (dataset, ways) not in MAML_INNER_LOOP:
            return None
        steps, lr = MAML_INNER_LOOP[(dataset, ways)]
        return {"inner_steps": steps, "inner_lr": lr}

    def adapted_head(self, model: FunctionalModel, head: Head, features: Tensor, y: Tensor, start: Tensor,
                     differentiable: bool) -> Tensor:
        """The head after the inner steps on ``features``; ``differentiable``: keeping each step's graph."""
        h = start if differentiable else start.detach()
        with torch.enable_grad():
            for _ in range(self.inner_steps):
                if not differentiable:
                    h = h.detach().requires_grad_(True)
                loss = model.loss_fn(head.output(h, features), y)
                if self.lam:
                    loss = loss + 0.5 * self.lam * (h - start).pow(2).sum()
                (gradient,) = torch.autograd.grad(loss, h, create_graph=differentiable)
                h = h - self.inner_lr * gradient
        return h if differentiable else h.detach()

    def adapt(self, model: FunctionalModel, theta: Tensor, support) -> Tensor:
        head = Head.of(model)
        theta = theta.detach()
        with torch.no_grad():
            features = head.features(model, theta, support.x)
        adapted = self.adapted_head(model, head, features, support.y, theta[-head.size:], differentiable=False)
        return torch.cat([theta[:-head.size], adapted])

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        head = Head.of(model)
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            support_features = head.features(model, theta, task.support.x)
            adapted = self.adapted_head(model, head, support_features, task.support.y, theta[-head.size:],
                                        differentiable=True)
            out = head.output(adapted, head.features(model, theta, task.query.x))
            query_loss = model.loss_fn(out, task.query.y)
            (gradient,) = torch.autograd.grad(query_loss, theta)
        phi = torch.cat([theta.detach()[:-head.size], adapted.detach()])
        with torch.no_grad():
            inner_loss = model.loss(phi, task.support).item()
        accuracy = None
        if task.query.y.dtype in (torch.int64, torch.int32):
            accuracy = (out.argmax(-1) == task.query.y).double().mean().item()
        # hvp_evals: the backward pass through each inner step, a Hessian-vector product of the head's loss
        record = MetaGradientRecord(inner_loss=inner_loss, query_loss=query_loss.item(), query_accuracy=accuracy,
                                    grad_evals=self.inner_steps + 1, hvp_evals=self.inner_steps)
        return MetaGradient(gradient.detach(), record, phi)

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """theta -> the query loss after the head's inner steps, body and head both at theta's values."""

        def query_loss(th: Tensor) -> float:
            return model.loss(self.adapt(model, th, task.support), task.query).item()

        return MetaObjective(query_loss, theta)
