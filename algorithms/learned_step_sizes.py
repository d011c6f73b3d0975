"""Inner step sizes meta-learned with the initialization: Meta-SGD (Li et al., 2017) and MAML++'s learned per-layer,
per-step step sizes (LSLR; Antoniou et al., ICLR 2019).

Both unroll K gradient steps on L_train as MAML does and differentiate through them (second order), the step of
parameter i at inner step k being alpha_{k,i} instead of MAML's one alpha:

    phi_{k+1} = phi_k - alpha_k * grad L_train(phi_k),   phi_0 = theta.

With ``lam > 0`` the loop descends MAML's proximal objective G = L_train + lam/2 ||phi - theta||^2 instead, the
anchor differentiated through (how exact-solve runs every algorithm on one problem).

Meta-SGD learns one step size per parameter, the same at every step (Li et al.'s Eq. 2 with K steps); LSLR one per
parameter tensor ("layer") and per step. The step sizes are the group ``step_sizes`` of the meta-parameter vector
(``algorithms.meta_parameters``), stored as they are (any sign, as both papers learn them), starting at
``inner_lr`` (Li et al. draw them from [0.005, 0.1]; a constant start at MAML's own step makes the comparison with
MAML one of learning them alone). MAML++'s other parts (multi-step loss, per-step BatchNorm statistics, cosine
annealing, derivative-order annealing) are left out: none is a meta-parameter of the inner loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from metagrad.errors import require

from .functional import Batch, FunctionalModel, Task
from .maml import finn_inner_loop
from .meta_parameters import MetaParameterGroup, layer_labels, per_layer, split_meta_parameters
from .protocol import MetaGradient, MetaGradientRecord, MetaObjective, query_loss_after_adaptation
from .registry import register


@register
@dataclass(frozen=True)
class MetaSGD:
    name: ClassVar[str] = "meta-sgd"
    label: ClassVar[str] = "Meta-SGD"
    order: ClassVar[int] = 4
    color: ClassVar[str] = "#7fa7d6"  # MAML's blue, lighter: its family
    exact_when: ClassVar[dict] = {}  # always: the unrolled loop is differentiated exactly
    inner_steps: int = 1
    inner_lr: float = 0.4  # every step size's initial value
    lam: float = 0.0  # > 0: the inner loop minimizes MAML's proximal objective G (exact-solve's problem)

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """Finn et al.'s inner loop (MAML's preset): its steps, and its step size as every learned one's start."""
        return {cls.name: {"hyperparameters": finn_inner_loop(dataset, ways)}}

    def __post_init__(self) -> None:
        require(isinstance(self.inner_steps, int) and self.inner_steps >= 1,
                f"{self.name}: inner_steps must be an integer >= 1, got {self.inner_steps!r}")
        require(self.inner_lr > 0, f"{self.name}: inner_lr (the step sizes' start) must be > 0, got {self.inner_lr!r}")
        require(self.lam >= 0, f"{self.name}: lam must be >= 0, got {self.lam!r}")

    def meta_parameters(self, model: FunctionalModel) -> tuple[MetaParameterGroup, ...]:
        """One step size per parameter, shared by the inner steps."""
        return (MetaParameterGroup("step_sizes", torch.full((model.num_parameters,), self.inner_lr,
                                                            dtype=torch.float64), labels=layer_labels(model)),)

    def step_sizes(self, model: FunctionalModel, values: Tensor) -> list[Tensor]:
        """Each inner step's step sizes, one per parameter (P-vectors), from the group's values."""
        return [values] * self.inner_steps

    def _inner_loop(self, model: FunctionalModel, theta: Tensor, support: Batch, create_graph: bool) -> Tensor:
        network, values = split_meta_parameters(self, model, theta)
        anchor = network if create_graph else network.detach()  # the proximal anchor, differentiated through
        phi = network if create_graph else network.detach().requires_grad_(True)
        for alpha in self.step_sizes(model, values["step_sizes"]):
            loss = model.loss(phi, support)
            if self.lam:
                loss = loss + 0.5 * self.lam * (phi - anchor).pow(2).sum()
            (gradient,) = torch.autograd.grad(loss, phi, create_graph=create_graph)
            phi = phi - alpha * gradient
            if not create_graph:
                phi = phi.detach().requires_grad_(True)
        return phi

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        with torch.enable_grad():
            return self._inner_loop(model, theta.detach(), support, create_graph=False).detach()

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        meta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            phi = self._inner_loop(model, meta, task.support, create_graph=True)
            query_loss, accuracy = model.loss_and_accuracy(phi, task.query)
            (gradient,) = torch.autograd.grad(query_loss, meta)
        phi = phi.detach()
        with torch.no_grad():
            inner_loss = model.loss(phi, task.support).item()
        record = MetaGradientRecord(inner_loss=inner_loss, query_loss=query_loss.item(), query_accuracy=accuracy,
                                    grad_evals=self.inner_steps + 1, hvp_evals=self.inner_steps)
        return MetaGradient(gradient, record, phi)

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """(theta, step sizes) -> L_test(phi_K): the unrolled loop, as a function of the whole vector."""
        return MetaObjective(query_loss_after_adaptation(self, model, task), theta)


@register
@dataclass(frozen=True)
class LSLR(MetaSGD):
    """MAML++'s learned per-layer, per-step step sizes on MAML: Antoniou et al. (2019), Section 4, "LSLR"."""

    name: ClassVar[str] = "maml-lslr"
    label: ClassVar[str] = "MAML++ LSLR"
    order: ClassVar[int] = 5
    color: ClassVar[str] = "#0b3d75"  # MAML's blue, darker

    def meta_parameters(self, model: FunctionalModel) -> tuple[MetaParameterGroup, ...]:
        """One step size per parameter tensor and inner step: [steps, tensors], step-major."""
        labels = tuple((f"step {k + 1}: {name}", 1) for k in range(self.inner_steps) for name in model.names)
        return (MetaParameterGroup("step_sizes", torch.full((self.inner_steps * len(model.names),), self.inner_lr,
                                                            dtype=torch.float64), labels=labels),)

    def step_sizes(self, model: FunctionalModel, values: Tensor) -> list[Tensor]:
        return [per_layer(model, row) for row in values.view(self.inner_steps, len(model.names))]
