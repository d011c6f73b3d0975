"""iMAML with a learned proximal weight: the paper's "more flexible regularizers" (Section 6), a diagonal Lambda meta-
learned with theta, one value for the whole network, per parameter tensor ("layer") or per parameter.

The inner problem is G(phi) = L_train(phi) + 1/2 (phi - theta)^T Lambda (phi - theta), Lambda = diag(lambda), solved by
gradient descent as iMAML-GD's. At its minimizer grad L_train(phi) + Lambda (phi - theta) = 0; differentiating,
(H + Lambda) dphi = Lambda dtheta - diag(phi - theta) dlambda, H the Hessian of L_train at phi. With
g = (H + Lambda)^{-1} grad L_test(phi) (H and Lambda symmetric):

    dL_test/dtheta = Lambda g,      dL_test/dlambda_i = -(phi - theta)_i g_i,

from the one solve: learning lambda costs nothing beyond iMAML's meta-gradient. For a scalar lambda this is the
paper's Eq. 7, (I + H/lambda) dL/dtheta = grad L_test. When Lambda is not a multiple of the identity that form does
not apply as is; the system solved is the symmetrically preconditioned one,

    (I + Lambda^{-1/2} H Lambda^{-1/2}) y = Lambda^{-1/2} grad L_test,   g = Lambda^{-1/2} y,   dL/dtheta = Lambda^{1/2} y,

symmetric positive definite wherever H + Lambda is, so CG applies; for a scalar lambda its CG iterates are the
paper's, scaled (CG commutes with scaling the right-hand side), so a learned lambda held at its start is iMAML.
Positivity: lambda is stored as its logarithm (``log`` parametrization), and the gradient with respect to the stored
value is lambda_i dL/dlambda_i, summed over the parameters that share a value.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from metagrad.errors import require

from . import batched
from .conjugate_gradient import MaskedCGResult, conjugate_gradient, masked_conjugate_gradient
from .functional import Batch, FunctionalModel, Task, TaskBatch
from .hessian_vector_product import HessianOperator, forward_over_reverse_hvp
from .inner_solvers import InnerSolution, gradient_descent, gradient_steps
from .meta_parameters import (
    MetaParameterGroup,
    group_slices,
    groups_of,
    layer_labels,
    per_layer,
    split_meta_parameters,
    stored_pullback,
)
from .protocol import MetaGradient, MetaGradientRecord, MetaObjective, query_loss_after_adaptation, query_loss_and_gradient
from .registry import register

SHAPES = ("scalar", "layer", "parameter")


@register
@dataclass(frozen=True)
class IMAMLLearnedLambda:
    name: ClassVar[str] = "imaml-lambda"
    label: ClassVar[str] = "iMAML, learned lambda"
    order: ClassVar[int] = 6
    color: ClassVar[str] = "#f08a8b"  # iMAML's red, lighter: its family
    cpu_batched_max_step_images: ClassVar[int] = 5  # bench/training/engines.py says how it was measured
    # the inner problem solved to convergence and the system to machine precision: the meta-gradient is exact
    exact_when: ClassVar[dict] = {"lam": 10.0, "inner_steps": 300, "cg_steps": 200, "cg_tolerance": 1e-14}
    lam: float = 2.0  # every lambda's initial value
    lambda_shape: str = "scalar"  # one lambda ("scalar"), one per parameter tensor ("layer"), one per parameter
    inner_steps: int = 16
    inner_lr: float = 0.03
    cg_steps: int = 5
    cg_tolerance: float = 0.0

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """iMAML-GD's preset (the paper's lambda as every lambda's start, its inner loop, 5 CG steps), per shape."""
        from .imaml import IMAML

        gd = IMAML.presets(dataset, ways, shots)[f"{IMAML.name}-gd"]["hyperparameters"]
        kept = {key: gd[key] for key in ("lam", "inner_steps", "inner_lr", "cg_steps")}
        return {f"{cls.name}-{shape}": {"hyperparameters": {**kept, "lambda_shape": shape}} for shape in SHAPES}

    def __post_init__(self) -> None:
        require(self.lam > 0, f"{self.name}: lam (lambda's start) must be > 0, got {self.lam!r}")
        require(self.lambda_shape in SHAPES,
                f"{self.name}: lambda_shape must be one of {', '.join(SHAPES)}, got {self.lambda_shape!r}")
        require(isinstance(self.inner_steps, int) and self.inner_steps >= 0,
                f"{self.name}: inner_steps must be an integer >= 0, got {self.inner_steps!r}")
        require(self.inner_lr > 0, f"{self.name}: inner_lr must be > 0, got {self.inner_lr!r}")
        require(isinstance(self.cg_steps, int) and self.cg_steps >= 0,
                f"{self.name}: cg_steps must be an integer >= 0 (0: g = Lambda^-1 grad L_test, H left out), got "
                f"{self.cg_steps!r}")
        require(self.cg_tolerance >= 0, f"{self.name}: cg_tolerance must be >= 0, got {self.cg_tolerance!r}")

    def meta_parameters(self, model: FunctionalModel) -> tuple[MetaParameterGroup, ...]:
        labels = {"scalar": (("every parameter", 1),), "layer": tuple((name, 1) for name in model.names),
                  "parameter": layer_labels(model)}[self.lambda_shape]
        size = sum(count for _, count in labels)
        return (MetaParameterGroup("lambda", torch.full((size,), self.lam, dtype=torch.float64), "log", labels),)

    def lambdas(self, model: FunctionalModel, values: Tensor) -> Tensor:
        """Every parameter's lambda (a P-vector) from the group's values."""
        if self.lambda_shape == "scalar":
            return values.expand(model.num_parameters)
        return per_layer(model, values) if self.lambda_shape == "layer" else values

    def inner_solution(self, model: FunctionalModel, theta: Tensor, support: Batch) -> InnerSolution:
        network, values = split_meta_parameters(self, model, theta.detach())
        lam, anchor = self.lambdas(model, values["lambda"]), network

        def objective(phi: Tensor) -> Tensor:
            return model.loss(phi, support) + 0.5 * (lam * (phi - anchor).pow(2)).sum()

        return gradient_descent(objective, anchor, self.inner_steps, self.inner_lr)

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        return self.inner_solution(model, theta, support).phi

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """(theta, log lambda) -> L_test(Alg*(theta, lambda)), Alg* the inner gradient descent."""
        return MetaObjective(query_loss_after_adaptation(self, model, task), theta)

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        inner = self.inner_solution(model, theta, task.support)
        phi = inner.phi
        network, values = split_meta_parameters(self, model, theta.detach())
        lam = self.lambdas(model, values["lambda"])
        query_loss, v, accuracy = query_loss_and_gradient(model, phi, task.query)
        record = MetaGradientRecord(query_loss=query_loss, query_accuracy=accuracy, grad_evals=inner.grad_evals + 1)
        scale = lam.rsqrt()  # Lambda^{-1/2}
        if self.cg_steps == 0:  # H left out: y = Lambda^{-1/2} v, so dL/dtheta = v (first-order MAML's), as iMAML's
            record.inner_loss = model.loss(phi, task.support).item()
            y = scale * v
        else:
            hessian = HessianOperator(lambda p: model.loss(p, task.support), phi)
            record.grad_evals += 1
            record.inner_loss = hessian.value.item()
            solve = conjugate_gradient(self.system(scale, hessian), scale * v, self.cg_steps, self.cg_tolerance)
            record.hvp_evals, record.cg_iterations = hessian.products, solve.iterations
            record.cg_residual, record.negative_curvature = solve.relative_residual, solve.negative_curvature
            y = solve.x if solve.iterations > 0 else scale * v
        d_lambdas = -(phi - network) * (scale * y)  # -(phi - theta)_i g_i, g = Lambda^{-1/2} y
        d_theta = lam.sqrt() * y
        return MetaGradient(torch.cat([d_theta, self._stored_gradient(model, theta, d_lambdas)]), record, phi)

    @staticmethod
    def system(scale: Tensor, hessian_product: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """u -> (I + Lambda^{-1/2} H Lambda^{-1/2}) u from products with H, ``scale`` = Lambda^{-1/2} (a P-vector)."""
        return lambda u: u + scale * hessian_product(scale * u)

    def _stored_gradient(self, model: FunctionalModel, theta: Tensor, d_lambdas: Tensor) -> Tensor:
        """dL/d(stored log lambda) from dL/dlambda_i of every parameter: the chain rule through the exponential and
        the sharing (a scalar's or a layer's lambda is every one of its parameters'), by autograd."""
        (group,) = groups_of(self, model)
        stored = theta.detach()[group_slices(self, model)[group.name]].clone().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.lambdas(model, group.values(stored)), stored, d_lambdas)
        return gradient

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> Tensor:
        with torch.no_grad():
            if model.stacks:
                return model.unpack(self._stacked_inner_solution(model, theta, tasks.support), tasks.size)
            return batched.adapt_over_tasks(lambda th, x, y: self._functional_inner_solution(model, th, x, y), theta,
                                            tasks)

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor,
                              tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """``meta_gradient`` for every task at once: the inner steps and the masked CG on the stacked network where
        the model has one (every task's Hessian-vector products in one forward-over-reverse pass), else per task
        under ``vmap``; the gradients of theta and lambda from the one solve, as per task."""
        network, values = split_meta_parameters(self, model, theta.detach())
        lam = self.lambdas(model, values["lambda"])
        scale = lam.rsqrt()
        stored_gradient = stored_pullback(self, model, theta, lambda group_values: self.lambdas(model, group_values))

        def finish(phi: Tensor, v: Tensor, solve: MaskedCGResult | None) -> Tensor:
            """The whole vector's meta-gradient from phi, grad L_test(phi) and the solve (one task's, or a stack)."""
            y = scale * v if solve is None else torch.where((solve.iterations > 0).unsqueeze(-1), solve.x, scale * v)
            d_lambdas = -(phi - network) * (scale * y)
            d_stored = stored_gradient(d_lambdas) if d_lambdas.dim() == 1 else torch.func.vmap(stored_gradient)(d_lambdas)
            return torch.cat([lam.sqrt() * y, d_stored], dim=-1)

        def counts(solve: MaskedCGResult | None, **scores: Tensor) -> dict[str, Tensor]:
            if solve is None:
                return batched.record(**scores, grad_evals=self.inner_steps + 1)
            return batched.record(**scores, grad_evals=self.inner_steps + 2, hvp_evals=solve.matvecs,
                                  cg_iterations=solve.iterations, cg_residual=solve.relative_residual,
                                  negative_curvature=solve.negative_curvature)

        if model.stacks:
            packed = self._stacked_inner_solution(model, theta, tasks.support)
            phi = model.unpack(packed, tasks.size)
            query_loss, v, accuracy = batched.stacked_query_loss_and_gradient(model, packed, tasks.query)
            solve = None
            if self.cg_steps == 0:
                with torch.no_grad():
                    inner_loss = model.stacked_losses(packed, tasks.support)[0]
            else:
                inner_loss, hessian_product = batched.stacked_losses_and_hessian_product(model, tasks.support, packed)
                solve = masked_conjugate_gradient(self.system(scale, hessian_product), scale * v, self.cg_steps,
                                                  self.cg_tolerance)
            return batched.BatchedMetaGradient(finish(phi, v, solve), counts(
                solve, inner_loss=inner_loss, query_loss=query_loss, query_accuracy=accuracy), phi)

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            phi = self._functional_inner_solution(model, theta, sx, sy)
            query_loss, v, accuracy = batched.query_loss_and_gradient(model, phi, qx, qy)
            solve = None
            if self.cg_steps:
                products_of = batched.support_loss(model, sx, sy, second_order=True)
                solve = masked_conjugate_gradient(
                    self.system(scale, lambda u: forward_over_reverse_hvp(products_of, phi, u)), scale * v,
                    self.cg_steps, self.cg_tolerance)
            return finish(phi, v, solve), counts(solve, inner_loss=batched.support_loss(model, sx, sy)(phi),
                                                 query_loss=query_loss, query_accuracy=accuracy), phi

        return batched.over_tasks(per_task, theta, tasks)

    def _functional_inner_solution(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """``inner_solution``'s phi as a pure function of one task's support tensors (batchable with ``vmap``)."""
        network, values = split_meta_parameters(self, model, theta)
        lam, loss = self.lambdas(model, values["lambda"]), batched.support_loss(model, x, y)
        return gradient_steps(torch.func.grad(lambda phi: loss(phi) + 0.5 * (lam * (phi - network).pow(2)).sum()),
                              network, self.inner_steps, self.inner_lr)

    def _stacked_inner_solution(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        """Every task's phi on the stacked network, packed: the gradient steps on G_t, whose proximal term's gradient
        Lambda (phi - theta) is written out (``batched.with_proximal_term``'s, with a vector of weights)."""
        network, values = split_meta_parameters(self, model, theta.detach())
        tasks = support.x.shape[0]
        start = batched.stacked_start(model, network, tasks)
        weights = model.pack(self.lambdas(model, values["lambda"]).expand(tasks, -1))
        losses_gradient = torch.func.grad(lambda phi: model.stacked_losses(phi, support)[0].sum())
        return gradient_steps(lambda phi: losses_gradient(phi) + weights * (phi - start), start, self.inner_steps,
                              self.inner_lr)
