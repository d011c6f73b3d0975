"""Implicit MAML (paper Algorithm 2).

1. phi ~ argmin G(phi) = L_train(phi) + lam/2 ||phi - theta||^2, from theta, by gradient descent,
   Hessian-free Newton-CG, or Nesterov's accelerated method where G's L and mu are known (the
   paper's Theorem 2); no graph is kept, only the end point is used.
2. v = grad L_test(phi).
3. g solves (I + H/lam) g = v by conjugate gradient, H the Hessian of L_train at phi, used through
   Hessian-vector products only.

Beside the paper's CG (``meta_solver="cg"``, which stops where it meets non-positive curvature of
I + H/lam), ``meta_solver="minres"`` minimizes the residual over the same Krylov space and never
divides by curvature, and ``damping = mu > 0`` solves the Levenberg-Marquardt system
(I + H/lam + mu I) g = v instead, which is positive definite once mu exceeds -(1 + lambda_min(H)/lam).
Either way the budget is ``cg_steps`` products and the record's ``cg_*`` fields describe the solve
(for ``damping > 0``, of the damped system).

``cg_steps = 0`` returns g = v, the identity approximation of (I + H/lam)^-1: first-order MAML on
the same inner problem, exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from metagrad.errors import require

from . import batched
from .conjugate_gradient import CGResult, conjugate_gradient, masked_conjugate_gradient
from .functional import Batch, FunctionalModel, Task, TaskBatch
from .hessian_vector_product import HessianOperator, forward_over_reverse_hvp
from .inner_solvers import (
    InnerSolution,
    MaskedInnerSolution,
    armijo_ladder_at_once,
    armijo_ladder_searching_only,
    functional_gradient_descent,
    functional_nesterov_accelerated_gradient,
    gradient_descent,
    masked_newton_cg,
    masked_newton_steps,
    nesterov_accelerated_gradient,
    newton_cg,
)
from .minres import masked_minres, minres
from .protocol import (
    MetaGradient,
    MetaGradientRecord,
    MetaObjective,
    proximal_objective,
    query_loss_after_adaptation,
    query_loss_and_gradient,
    validate_inner_loop,
)
from .registry import register

INNER_SOLVERS = ("gd", "newton-cg", "nesterov")
STACKED_INNER_SOLVERS = ("gd", "newton-cg")  # the inner solvers the batched engine runs on the stacked network
META_SOLVERS = {"cg": (conjugate_gradient, masked_conjugate_gradient), "minres": (minres, masked_minres)}


@register
@dataclass(frozen=True)
class IMAML:
    name: ClassVar[str] = "imaml"
    label: ClassVar[str] = "iMAML"
    order: ClassVar[int] = 3
    color: ClassVar[str] = "C3"
    # the implicit meta-gradient is exact where phi is the minimizer and the linear system is solved
    exact_when: ClassVar[dict] = {"lam": 10.0, "inner_steps": 300, "cg_steps": 200, "cg_tolerance": 1e-14}
    lam: float = 2.0
    inner_solver: str = "gd"  # "gd", "newton-cg" (Hessian-free) or "nesterov" (accelerated; needs L and mu)
    inner_steps: int = 16  # GD or Nesterov steps, or Newton iterations for newton-cg
    inner_lr: float = 0.4  # GD only
    smoothness: float = 0.0  # nesterov only: L, the largest curvature of G (its step is 1/L)
    strong_convexity: float = 0.0  # nesterov only: mu, the least curvature of G (momentum from kappa = L/mu)
    newton_cg_steps: int = 5  # CG steps for each Newton direction (newton-cg only)
    cg_steps: int = 5  # CG steps for the meta-gradient
    cg_tolerance: float = 0.0  # stop the meta-gradient CG once ||r|| <= tol ||v||
    meta_solver: str = "cg"  # the paper's "cg", or "minres" (symmetric indefinite systems)
    damping: float = 0.0  # mu: solve (I + H/lam + mu I) g = v

    @classmethod
    def presets(cls, dataset: str, ways: int, shots: int) -> dict[str, dict[str, Any]]:
        """The paper's settings (Appendix F): lambda 2 on Omniglot, 0.5 on Mini-ImageNet; gradient descent inside
        for 16 steps (5-way Omniglot), 25 (20-way) or 10 (Mini-ImageNet), or Hessian-free (3 Newton iterations of 5
        CG steps with a line search); 5 CG steps for every meta-gradient. Ours where it is silent: the inner step
        size (0.03 on Omniglot: with 0.1 a 30-minute run's inner loop stopped reducing the support loss and its
        validation accuracy fell, reports/cpu-training/; 0.02 on Mini-ImageNet). ``imaml-gd-minres``, ours too:
        MINRES for the meta-gradient, which trained better than CG at every lambda of the curvature study."""
        omniglot = dataset == "omniglot"
        lam = 2.0 if omniglot else 0.5
        gd = {"lam": lam, "inner_solver": "gd", "inner_steps": (16 if ways == 5 else 25) if omniglot else 10,
              "inner_lr": 0.03 if omniglot else 0.02, "cg_steps": 5}
        return {
            f"{cls.name}-gd": {"hyperparameters": gd},
            f"{cls.name}-hf": {"hyperparameters": {"lam": lam, "inner_solver": "newton-cg", "inner_steps": 3,
                                                   "newton_cg_steps": 5, "cg_steps": 5}},
            f"{cls.name}-gd-minres": {"hyperparameters": {**gd, "meta_solver": "minres"}},
        }

    def __post_init__(self) -> None:
        validate_inner_loop(self.name, self.inner_steps, self.inner_lr, self.lam, lam_positive=True)
        require(self.inner_solver in INNER_SOLVERS,
                f"imaml: inner_solver must be one of {', '.join(INNER_SOLVERS)}, got {self.inner_solver!r}")
        require(isinstance(self.cg_steps, int) and self.cg_steps >= 0, f"imaml: cg_steps must be an integer >= 0, got {self.cg_steps!r}")
        require(isinstance(self.newton_cg_steps, int) and self.newton_cg_steps >= 1,
                f"imaml: newton_cg_steps must be an integer >= 1, got {self.newton_cg_steps!r}")
        require(self.cg_tolerance >= 0, f"imaml: cg_tolerance must be >= 0, got {self.cg_tolerance!r}")
        require(self.meta_solver in META_SOLVERS,
                f"imaml: meta_solver must be one of {', '.join(META_SOLVERS)}, got {self.meta_solver!r}")
        require(self.damping >= 0, f"imaml: damping must be >= 0, got {self.damping!r}")
        if self.inner_solver == "nesterov":
            require(0 < self.strong_convexity <= self.smoothness,
                    "imaml: inner_solver nesterov needs 0 < strong_convexity (mu) <= smoothness (L) of G, got "
                    f"mu={self.strong_convexity!r}, L={self.smoothness!r}")

    @property
    def cpu_batched_max_step_images(self) -> int:
        """The batched engine's limit on the CPU by inner solver (bench/training/engines.py says how it was measured);
        Nesterov's steps run under ``vmap``, never faster there."""
        return {"gd": 25, "newton-cg": 5}.get(self.inner_solver, 0)

    def inner_solution(self, model: FunctionalModel, theta: Tensor, support: Batch) -> InnerSolution:
        objective = proximal_objective(model, support, theta, self.lam)
        if self.inner_solver == "gd":
            return gradient_descent(objective, theta, self.inner_steps, self.inner_lr)
        if self.inner_solver == "nesterov":
            return nesterov_accelerated_gradient(objective, theta, self.inner_steps, self.smoothness,
                                                 self.strong_convexity)
        return newton_cg(objective, theta, self.inner_steps, self.newton_cg_steps)

    def adapt(self, model: FunctionalModel, theta: Tensor, support: Batch) -> Tensor:
        return self.inner_solution(model, theta, support).phi

    def meta_objective(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaObjective:
        """theta -> L_test(Alg*(theta)), Alg* this configuration's inner solver (the minimizer, where it converges)."""
        return MetaObjective(query_loss_after_adaptation(self, model, task), theta)

    def meta_gradient(self, model: FunctionalModel, theta: Tensor, task: Task) -> MetaGradient:
        inner = self.inner_solution(model, theta, task.support)
        phi = inner.phi
        query_loss, v, accuracy = query_loss_and_gradient(model, phi, task.query)
        record = MetaGradientRecord(
            query_loss=query_loss,
            query_accuracy=accuracy,
            grad_evals=inner.grad_evals + 1,
            hvp_evals=inner.hvp_evals,
            loss_evals=inner.loss_evals,
            inner_negative_curvature=inner.negative_curvature,
        )
        if self.cg_steps == 0:
            record.inner_loss = model.loss(phi, task.support).item()
            return MetaGradient(v, record, phi)
        hessian = HessianOperator(lambda p: model.loss(p, task.support), phi)
        record.grad_evals += 1
        record.inner_loss = hessian.value.item()
        solve = self.meta_solve(self.system(hessian), v)
        record.hvp_evals += hessian.products
        record.cg_iterations = solve.iterations
        record.cg_residual = solve.relative_residual
        record.negative_curvature = solve.negative_curvature
        gradient = solve.x if solve.iterations > 0 else v
        return MetaGradient(gradient, record, phi)

    def system(self, hessian_product: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """u -> (I + H/lam + damping I) u, the meta-gradient's linear system, from products with H."""
        return lambda u: (1.0 + self.damping) * u + hessian_product(u) / self.lam

    def meta_solve(self, matvec: Callable[[Tensor], Tensor], v: Tensor) -> CGResult:
        """The per-task solve of ``matvec`` g = v with this configuration's solver and budget."""
        return META_SOLVERS[self.meta_solver][0](matvec, v, self.cg_steps, self.cg_tolerance)

    def functional_inner_solution(self, model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor) -> MaskedInnerSolution:
        """``inner_solution`` as a pure function of one task's support tensors (the batched engine's)."""
        objective = batched.proximal(model, x, y, theta, self.lam)
        if self.inner_solver == "gd":
            return functional_gradient_descent(objective, theta, self.inner_steps, self.inner_lr)
        if self.inner_solver == "nesterov":
            return functional_nesterov_accelerated_gradient(objective, theta, self.inner_steps, self.smoothness,
                                                            self.strong_convexity)
        return masked_newton_cg(objective, theta, self.inner_steps, self.newton_cg_steps,
                                product_objective=batched.proximal(model, x, y, theta, self.lam, second_order=True))

    def batched_adapt(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> Tensor:
        if self._stacks(model):
            with torch.no_grad():
                return self._stacked_inner_solution(model, theta, tasks.support)[1]
        return batched.adapt_over_tasks(lambda th, x, y: self.functional_inner_solution(model, th, x, y).phi, theta, tasks)

    def batched_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """``meta_gradient`` for every task at once: the masked CG and forward-over-reverse products, on the
        stacked network where it runs (gradient descent or Newton-CG inside), else per task under ``vmap``."""

        def finish(inner: MaskedInnerSolution, query_loss: Tensor, v: Tensor, accuracy: Tensor, sx: Tensor, sy: Tensor):
            """One task's meta-gradient from its inner solution and query gradient v."""
            phi = inner.phi
            support_loss = batched.support_loss(model, sx, sy)
            counts = dict(inner_loss=support_loss(phi), query_loss=query_loss, query_accuracy=accuracy,
                          grad_evals=inner.grad_evals + 1, hvp_evals=inner.hvp_evals, loss_evals=inner.loss_evals,
                          inner_negative_curvature=inner.negative_curvature)
            if self.cg_steps == 0:
                return v, batched.record(**counts), phi
            products_of = batched.support_loss(model, sx, sy, second_order=True)
            solve = META_SOLVERS[self.meta_solver][1](
                self.system(lambda u: forward_over_reverse_hvp(products_of, phi, u)), v, self.cg_steps,
                self.cg_tolerance)
            counts.update(grad_evals=counts["grad_evals"] + 1, hvp_evals=counts["hvp_evals"] + solve.matvecs,
                          cg_iterations=solve.iterations, cg_residual=solve.relative_residual,
                          negative_curvature=solve.negative_curvature)
            return torch.where(solve.iterations > 0, solve.x, v), batched.record(**counts), phi

        if self._stacks(model):  # every task at once on the stacked network, no vmap
            return self._stacked_meta_gradient(model, theta, tasks)

        def per_task(theta: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            inner = self.functional_inner_solution(model, theta, sx, sy)
            query_loss, v, accuracy = batched.query_loss_and_gradient(model, inner.phi, qx, qy)
            return finish(inner, query_loss, v, accuracy, sx, sy)

        return batched.over_tasks(per_task, theta, tasks)

    def _stacks(self, model: FunctionalModel) -> bool:
        """Whether the batched engine runs this configuration on the stacked network (Nesterov's steps stay under
        ``vmap``)."""
        return model.stacks and self.inner_solver in STACKED_INNER_SOLVERS

    def _stacked_inner_solution(self, model: FunctionalModel, theta: Tensor,
                                support: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor | int]]:
        """Every task's phi, in ``FunctionalModel.pack``'s layout and as rows [tasks, parameters], and the inner
        loop's counts (``batched.record``'s fields), on the stacked network: gradient descent's steps
        (``batched.stacked_gradient_descent``), or Newton-CG's iterations on the [tasks, parameters] stack of Newton
        problems (``masked_newton_steps`` with ``batched.stacked_newton_problem``: the line search's candidates one
        after another for the tasks still searching on the CPU, else all in one pass)."""
        tasks = support.x.shape[0]
        if self.inner_solver == "gd":
            packed = batched.stacked_gradient_descent(model, theta, support, self.lam, self.inner_steps, self.inner_lr)
            return packed, model.unpack(packed, tasks), dict(grad_evals=self.inner_steps)
        theta = theta.detach()
        linearized, objective = batched.stacked_newton_problem(model, support, theta, self.lam)
        if batched.reads_back_cheaply(theta.device):  # each candidate for the tasks still searching (a read back)
            line_search = armijo_ladder_searching_only(objective)
        else:  # every candidate in one pass, and nothing read back, so that a CUDA graph can capture the iteration
            line_search = armijo_ladder_at_once(objective)
        inner = masked_newton_steps(linearized, line_search, theta.expand(tasks, -1), self.inner_steps,
                                    self.newton_cg_steps)
        return model.pack(inner.phi), inner.phi, dict(grad_evals=inner.grad_evals, hvp_evals=inner.hvp_evals,
                                                      loss_evals=inner.loss_evals,
                                                      inner_negative_curvature=inner.negative_curvature)

    def _stacked_meta_gradient(self, model: FunctionalModel, theta: Tensor, tasks: TaskBatch) -> batched.BatchedMetaGradient:
        """``meta_gradient`` for the whole meta-batch on the stacked network: the inner loop
        (``_stacked_inner_solution``), the query gradients, and the masked solver on the [tasks, parameters] stack of
        systems, each task's Hessian-vector products all in one forward-over-reverse pass
        (``batched.stacked_losses_and_hessian_product``, whose first stage gives the support losses too)."""
        phi, adapted, counts = self._stacked_inner_solution(model, theta, tasks.support)
        query_loss, v, accuracy = batched.stacked_query_loss_and_gradient(model, phi, tasks.query)
        counts.update(query_loss=query_loss, query_accuracy=accuracy, grad_evals=counts["grad_evals"] + 1)
        if self.cg_steps == 0:
            with torch.no_grad():
                counts.update(inner_loss=model.stacked_losses(phi, tasks.support)[0])
            return batched.BatchedMetaGradient(v, batched.record(**counts), adapted)
        inner_loss, hessian_product = batched.stacked_losses_and_hessian_product(model, tasks.support, phi)
        solve = META_SOLVERS[self.meta_solver][1](self.system(hessian_product), v, self.cg_steps, self.cg_tolerance)
        counts.update(inner_loss=inner_loss, grad_evals=counts["grad_evals"] + 1,
                      hvp_evals=counts.get("hvp_evals", 0) + solve.matvecs, cg_iterations=solve.iterations,
                      cg_residual=solve.relative_residual, negative_curvature=solve.negative_curvature)
        gradients = torch.where((solve.iterations > 0).unsqueeze(-1), solve.x, v)
        return batched.BatchedMetaGradient(gradients, batched.record(**counts), adapted)
