"""The one protocol every meta-gradient algorithm follows.

An algorithm is a frozen dataclass of hyperparameters with ``meta_gradient(model, theta, task) -> MetaGradient``
(given meta-parameters theta, a flat vector, and one task: that task's meta-gradient and a record of what it cost
and saw) and ``adapt`` (the inner loop alone, for evaluation). Everything else is optional (``MetaGradientAlgorithm``
says what each optional part buys); ``algorithms.registry`` names them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from metagrad.errors import require

from .batched import BatchedMetaGradient, adapt_over_tasks, proximal, stacked_gradient_descent
from .functional import Batch, FunctionalModel, Task, TaskBatch
from .inner_solvers import InnerSolution, MaskedInnerSolution, functional_gradient_descent, gradient_descent
from .record import MetaGradientRecord


@dataclass(frozen=True)
class MetaGradient:
    gradient: Tensor
    record: MetaGradientRecord
    adapted: Tensor | None = field(default=None, repr=False)  # phi, the task parameters the inner loop reached


@dataclass(frozen=True)
class MetaObjective:
    """What a meta-gradient differentiates: it is the gradient of ``function`` (a scalar function of one flat
    vector) at ``point``. For MAML the query loss after the unrolled inner loop, at theta; for first-order MAML the
    query loss itself, at the adapted parameters. The suite checks every registered algorithm's meta-gradient
    against central differences of it (tests/test_registry.py)."""

    function: Callable[[Tensor], float]
    point: Tensor


class MetaGradientAlgorithm(Protocol):
    """The protocol: what every algorithm has (``registry.REQUIRED``, checked when it registers). The algorithm is a
    frozen dataclass whose fields are its hyperparameters. What it may add is ``OptionalParts``."""

    name: ClassVar[str]  # the registry's key, as the command line and result files spell it
    label: ClassVar[str]  # how tables and figures name it

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        """The per-task engine, the reference: one task's meta-gradient and a record of what it cost and saw."""
        ...

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        """The inner loop alone, for evaluation: task parameters phi adapted from theta on ``support``."""
        ...


class OptionalParts(Protocol):
    """What an algorithm may add; each is read where present, by the part of metagrad named, and checked when it
    registers (``registry.check_optional_parts``)."""

    order: ClassVar[int]  # its place in tables, figures and default sweeps (registry); else after those before it
    color: ClassVar[str]  # its matplotlib colour in every figure (registry); else a stable one from its name
    # the hyperparameters (beside a problem's step size) under which meta_gradient is the gradient of meta_objective
    # to the precision of its solvers: iMAML's inner problem and linear system solved to convergence, say
    exact_when: ClassVar[dict[str, Any]]
    # the most support images one task's inner step may take for its own batched engine to be the CPU's default
    # (bench/training/engines.py); without it the per-task engine is
    cpu_batched_max_step_images: ClassVar[int]

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """What ``meta_gradient`` differentiates: the suite's finite-difference check (tests/test_registry.py)."""
        ...

    @classmethod
    def preset_hyperparameters(cls, dataset: str, ways: int, shots: int) -> dict[str, Any] | None:
        """Its hyperparameters for one of the paper's settings (``bench.training.presets.SETTINGS``), or None: presets
        ``{setting}-{name}`` for ``metagrad train --preset`` and ``metagrad throughput``."""
        ...

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> BatchedMetaGradient:
        """A batched engine of its own (with ``batched_adapt``): every task's ``meta_gradient`` at once, diagnostics as
        tensors; tested equal to the per-task engine. Without one, the per-task engine runs task by task."""
        ...

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> Tensor:
        """``adapt`` for every task of the batch: phi [tasks, parameters]."""
        ...

    def steps_and_batch(self, evaluation: bool) -> tuple[int, int]:
        """Inner steps and the minibatch each takes, where an inner step takes part of the support set (Reptile as
        Nichol et al. ran it): the images per inner step that choose the CPU's engine (bench/training/engines.py)."""
        ...

    def meta_parameters(self, model: FunctionalModel) -> tuple[Any, ...]:
        """Meta-parameters it learns beside the network's (``algorithms.meta_parameters.MetaParameterGroup``: a name,
        initial values, a parametrization): appended to theta, so that ``meta_gradient`` returns the gradient of the
        whole vector and ``adapt`` reads the learned values from it. Without it, theta is the network's alone."""
        ...

    def meta_solve(self, matvec: Callable[[Tensor], Tensor], v: Tensor) -> Any:
        """Its solve of the linear system behind the meta-gradient, where there is one (iMAML's (I + H/lambda) g = v,
        with ``lam`` its proximal weight): what ``metagrad spectrum`` studies (bench/harnesses/spectrum.py)."""
        ...


def proximal_objective(model: FunctionalModel, batch: Batch, theta: Tensor, lam: float) -> Callable[[Tensor], Tensor]:
    """G(phi) = L_train(phi) + lam/2 ||phi - theta||^2 with theta held fixed (paper Eq. 4), with the model's own loss
    (``batched.proximal`` is the batched engine's, with its mapped form)."""
    anchor = theta.detach()
    if not lam:
        return lambda phi: model.loss(phi, batch)
    return lambda phi: model.loss(phi, batch) + 0.5 * lam * (phi - anchor).pow(2).sum()


def query_loss_after_adaptation(algorithm: Any, model: FunctionalModel, task: Task) -> Callable[[Tensor], float]:
    """theta -> L_test(phi(theta)), phi the algorithm's ``adapt`` from theta: what MAML's meta-gradient differentiates,
    and iMAML's where its inner loop reaches the minimizer."""

    def query_loss(theta: Tensor) -> float:
        phi = algorithm.adapt(model, theta, task.support)
        with torch.no_grad():
            return model.loss(phi, task.query).item()

    return query_loss


def query_loss_and_gradient(model: FunctionalModel, phi: Tensor, batch: Batch) -> tuple[float, Tensor, float | None]:
    """L_test(phi), grad L_test(phi) and the query accuracy, from one forward and one backward."""
    phi = phi.detach().requires_grad_(True)
    with torch.enable_grad():
        loss, accuracy = model.loss_and_accuracy(phi, batch)
        (grad,) = torch.autograd.grad(loss, phi)
    return loss.item(), grad, accuracy


def validate_inner_loop(name: str, inner_steps: int, inner_lr: float, lam: float, lam_positive: bool) -> None:
    require(isinstance(inner_steps, int) and inner_steps >= 0, f"{name}: inner_steps must be an integer >= 0, got {inner_steps!r}")
    require(inner_lr > 0, f"{name}: inner_lr must be > 0, got {inner_lr!r}")
    if lam_positive:
        require(lam > 0, f"{name}: lam (the proximal regularization lambda) must be > 0, got {lam!r}")
    else:
        require(lam >= 0, f"{name}: lam (the proximal regularization lambda) must be >= 0, got {lam!r}")


@dataclass(frozen=True)
class InnerGradientDescentConfig:
    """Hyperparameters of algorithms whose inner loop is plain gradient descent on L_train, or with
    ``lam > 0`` on the proximal objective G (MAML, first-order MAML, Reptile)."""

    name: ClassVar[str] = "inner-gd"
    label: ClassVar[str] = "inner gradient descent"
    order: ClassVar[int] = 99
    inner_steps: int = 5
    inner_lr: float = 0.4
    lam: float = 0.0

    def __post_init__(self) -> None:
        validate_inner_loop(self.name, self.inner_steps, self.inner_lr, self.lam, lam_positive=False)

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        """The task parameters phi this algorithm's inner loop reaches from theta (no graph kept)."""
        return self.inner_solution(model, theta, support).phi

    def inner_solution(self, model: FunctionalModel, theta: Tensor, support: Batch) -> InnerSolution:
        return gradient_descent(proximal_objective(model, support, theta, self.lam), theta, self.inner_steps,
                                self.inner_lr)

    def functional_inner_solution(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor) -> MaskedInnerSolution:
        """``inner_solution`` as a pure function of one task's support tensors (the batched engine's)."""
        return functional_gradient_descent(proximal(model, x, y, theta, self.lam), theta, self.inner_steps, self.inner_lr)

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> Tensor:
        if model.stacks:
            with torch.no_grad():  # torch.func.grad differentiates inside regardless; nothing outside keeps a graph
                return model.unpack(stacked_gradient_descent(model, theta, batch.support, self.lam, self.inner_steps,
                                                             self.inner_lr), batch.size)
        return adapt_over_tasks(lambda th, x, y: self.functional_inner_solution(model, th, x, y).phi, theta, batch)
