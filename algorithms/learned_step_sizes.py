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

from . import batched
from .functional import Batch, FunctionalModel, Task, TaskBatch
from .maml import finn_inner_loop
from .meta_parameters import MetaParameterGroup, layer_labels, per_layer, split_meta_parameters, stored_pullback
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

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> Tensor:
        with torch.no_grad():
            if model.stacks:
                return model.unpack(self._stacked_inner_loop(model, theta, tasks.support)[0], tasks.size)
            return batched.adapt_over_tasks(lambda th, x, y: self._functional_inner_loop(model, th, x, y, False),
                                            theta, tasks)

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor,
                              tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """On the stacked network where the model has one (``_stacked_meta_gradient``), else nested ``torch.func.grad``
        through the unrolled steps of the whole vector, per task under ``vmap``."""
        if model.stacks:
            return self._stacked_meta_gradient(model, theta, tasks)

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            def query_loss_of(th: Tensor):
                phi = self._functional_inner_loop(model, th, sx, sy, True)
                logits = model.forward(phi, qx, second_order=True)
                loss = model.mapped_loss_fn(logits, qy)
                return loss, (loss, logits, phi)

            gradient, (loss, logits, phi) = torch.func.grad(query_loss_of, has_aux=True)(theta)
            return gradient, self._record(batched.support_loss(model, sx, sy)(phi), loss,
                                          batched.accuracy(logits, qy)), phi

        return batched.over_tasks(per_task, theta, tasks)

    def _record(self, inner_loss: Tensor, query_loss: Tensor, accuracy: Tensor) -> dict[str, Tensor]:
        return batched.record(inner_loss=inner_loss, query_loss=query_loss, query_accuracy=accuracy,
                              grad_evals=self.inner_steps + 1, hvp_evals=self.inner_steps)

    def _functional_inner_loop(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor,
                               second_order: bool) -> Tensor:
        """One task's phi_K from the whole vector, as a pure function (differentiable in it)."""
        network, values = split_meta_parameters(self, model, theta)
        step = torch.func.grad(batched.proximal(model, x, y, network, self.lam, second_order))
        phi = network
        for alpha in self.step_sizes(model, values["step_sizes"]):
            phi = phi - alpha * step(phi)
        return phi

    def _stacked_inner_loop(self, model: FunctionalModel, theta: Tensor, support: Batch,
                            products: list | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Every task's phi_K on the stacked network, packed; each step's gradient of G (packed) and step sizes
        (P-vectors). With ``products``, each step takes its gradient from the staged products' first
        stage and appends u -> H_k u at phi_k there (``batched.stacked_gradient_and_hessian_product``)."""
        network, values = split_meta_parameters(self, model, theta.detach())
        tasks = support.x.shape[0]
        start = batched.stacked_start(model, network, tasks)
        if products is None:
            losses_gradient = torch.func.grad(lambda phi: model.stacked_losses(phi, support)[0].sum())
        else:
            def losses_gradient(phi: Tensor) -> Tensor:
                gradient, product = batched.stacked_gradient_and_hessian_product(model, support, phi)
                products.append(product)
                return gradient
        step_gradient = batched.with_proximal_term(losses_gradient, start, self.lam)
        alphas = self.step_sizes(model, values["step_sizes"])
        phi, gradients = start, []
        for alpha in alphas:
            gradients.append(step_gradient(phi))
            phi = phi - model.pack(alpha.expand(tasks, -1)) * gradients[-1]
        return phi, gradients, alphas

    def _stacked_meta_gradient(self, model: FunctionalModel, theta: Tensor,
                               tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """The meta-gradient of the whole meta-batch on the stacked network, the chain rule through the steps written
        out. Step k maps phi_k to phi_k - alpha_k * g_k, g_k = grad L(phi_k) + lam (phi_k - theta): a cotangent v of
        phi_{k+1} is v - H_k (alpha_k * v) - lam alpha_k * v for phi_k, lam alpha_k * v for theta through the
        proximal anchor and -g_k * v for alpha_k; each H_k u one forward-over-reverse pass for every task, bound as the
        step took its gradient (as MAML's ``_stacked_meta_gradient``)."""
        products: list = []
        phi, gradients, alphas = self._stacked_inner_loop(model, theta, tasks.support, products)
        query_loss, v, accuracy = batched.stacked_query_loss_and_gradient(model, phi, tasks.query)
        anchor = torch.zeros_like(v) if self.lam else None
        step_cotangents = [None] * len(alphas)
        for k in reversed(range(len(alphas))):
            step_cotangents[k] = -model.unpack(gradients[k], tasks.size) * v
            scaled = alphas[k] * v
            v = v - products[k](scaled)
            if self.lam:
                anchor = torch.add(anchor, scaled, alpha=self.lam)
                v = torch.add(v, scaled, alpha=-self.lam)
        network_gradient = v if anchor is None else v + anchor
        with torch.no_grad():
            inner_loss = model.stacked_losses(phi, tasks.support)[0]
        gradients_all = torch.cat([network_gradient, self._stored_gradients(model, theta, torch.stack(step_cotangents, 1))],
                                  dim=-1)
        return batched.BatchedMetaGradient(gradients_all, self._record(inner_loss, query_loss, accuracy),
                                           model.unpack(phi, tasks.size))

    def _stored_gradients(self, model: FunctionalModel, theta: Tensor, cotangents: Tensor) -> Tensor:
        """The gradient of every task with respect to the stored step sizes, from each step's cotangent of its step
        sizes ([tasks, steps, parameters]): the chain rule through ``step_sizes`` (sharing over steps and layers)."""
        pullback = stored_pullback(self, model, theta, lambda values: torch.stack(self.step_sizes(model, values)))
        return torch.func.vmap(pullback)(cotangents)


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
