"""The batched engine's common parts: a meta-batch in one ``vmap``, diagnostics as device tensors.

Every algorithm writes its per-task computation once more as a pure ``torch.func`` function of
(theta, support x, support y, query x, query y) that returns the task's meta-gradient and its
diagnostics; ``over_tasks`` maps it over the leading task axis of a ``TaskBatch``. The map is
outermost, ``vmap(grad(f))`` and never ``grad(vmap(f))``, so that BatchNorm's batch statistics are
those of each task's own set, as in the per-task engine. Nothing here reads a value back to the
host: the engine can run a whole iteration without synchronizing, and be captured as a graph.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .functional import Batch, FunctionalModel, TaskBatch
from .inner_solvers import Linearization, ProblemObjective, gradient_steps
from .record import diagnostic_defaults
from .staging import Bound

# (theta, support x, support y, query x, query y) -> (meta-gradient, diagnostics, adapted phi)
PerTask = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, dict[str, Tensor], Tensor]]
# (theta, support x, support y) -> phi
Adapt = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class BatchedMetaGradient:
    """Each task's meta-gradient ([tasks, parameters]) and diagnostics ({field: [tasks]}), on the device."""

    gradients: Tensor
    diagnostics: dict[str, Tensor]
    adapted: Tensor | None = None  # [tasks, parameters]: each task's phi

    @property
    def gradient(self) -> Tensor:
        """The meta-batch's mean meta-gradient: what the outer optimizer steps on."""
        return self.gradients.mean(dim=0)


def support_loss(model: FunctionalModel, x: Tensor, y: Tensor, second_order: bool = False) -> Callable[[Tensor], Tensor]:
    """phi -> L(phi) on the set (x, y) as the batched engine takes it (``FunctionalModel.mapped_loss``; ``second_order``:
    ``FunctionalModel.forward``'s form for differentiating twice)."""
    batch = Batch(x, y)
    return lambda flat: model.mapped_loss(flat, batch, second_order)


def proximal(model: FunctionalModel, x: Tensor, y: Tensor, theta: Tensor, lam: float,
             second_order: bool = False) -> Callable[[Tensor], Tensor]:
    """G(phi) = L(phi) + lam/2 ||phi - theta||^2 (paper Eq. 4). theta is not detached: MAML differentiates
    through it; ``protocol.proximal_objective`` is this with theta held fixed."""
    loss = support_loss(model, x, y, second_order)
    if not lam:
        return loss
    return lambda phi: loss(phi) + 0.5 * lam * (phi - theta).pow(2).sum()


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct labels over the last axis (one task's set; [tasks] for stacked logits), in float64
    as the per-task record has it; nan for regression targets (the record's None)."""
    if y.is_floating_point():
        return torch.full(y.shape[:-1], float("nan"), dtype=torch.float64, device=logits.device)
    return (logits.argmax(dim=-1) == y).to(torch.float64).mean(dim=-1)


def query_loss_and_gradient(model: FunctionalModel, phi: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """L_test(phi), grad L_test(phi) and the query accuracy from one forward and one backward."""

    def loss_with_logits(flat: Tensor) -> tuple[Tensor, Tensor]:
        logits = model.forward(flat, x)
        return model.mapped_loss_fn(logits, y), logits

    grad, (loss, logits) = torch.func.grad_and_value(loss_with_logits, has_aux=True)(phi)
    return loss, grad, accuracy(logits, y)


def record(**values: Tensor | int | float | bool) -> dict[str, Tensor]:
    """A full diagnostics dict from the fields given; the rest take the per-task record's defaults, shaped
    like the given tensors (one task's scalars under ``vmap``, or [tasks] from the stacked network)."""
    defaults = diagnostic_defaults()
    unknown = set(values) - set(defaults)
    if unknown:
        raise KeyError(f"not a diagnostics field: {', '.join(sorted(unknown))}")
    reference = next(v for v in values.values() if isinstance(v, Tensor))
    out = {}
    for name, default in defaults.items():
        value = values.get(name, default)
        if not isinstance(value, Tensor):  # a fill kernel, not a copy from the host: capturable in a CUDA graph
            dtype = torch.bool if isinstance(default, bool) else torch.long if isinstance(default, int) else reference.dtype
            value = torch.full(reference.shape, value, dtype=dtype, device=reference.device)
        out[name] = value
    return out


def over_tasks(per_task: PerTask, theta: Tensor, batch: TaskBatch) -> BatchedMetaGradient:
    """``per_task`` mapped over the batch's tasks, theta shared: one call, no host synchronization."""
    mapped = torch.func.vmap(per_task, in_dims=(None, 0, 0, 0, 0), randomness="error")
    gradients, diagnostics, adapted = mapped(theta.detach(), batch.support.x, batch.support.y, batch.query.x,
                                             batch.query.y)
    return BatchedMetaGradient(gradients, diagnostics, adapted)


def stacked_gradient_descent(model: FunctionalModel, theta: Tensor, support: Batch, lam: float, steps: int,
                             lr: float) -> Tensor:
    """``inner_solvers.functional_gradient_descent`` on every task's G (``proximal``) at once, without ``vmap``:
    phi of every task from theta, in ``FunctionalModel.pack``'s layout, on the stacked network
    (``FunctionalModel.stacks``).

    The gradient of the sum of the tasks' objectives is every task's own gradient, since no parameter is
    shared; the same steps in fewer operations (`bench/measure/operations.py`; reports/notes/engines.md). Only
    for first-order steps: PyTorch's double backward of a grouped convolution loops over its groups."""
    start = stacked_start(model, theta, support.x.shape[0])
    return gradient_steps(stacked_proximal_gradient(model, support, start, lam), start, steps, lr)


def stacked_start(model: FunctionalModel, theta: Tensor, tasks: int) -> Tensor:
    """theta for every task, in ``FunctionalModel.pack``'s layout: where the stacked inner loops start."""
    return model.pack(theta.detach().expand(tasks, -1))


def stacked_proximal_gradient(model: FunctionalModel, support: Batch, anchor: Tensor,
                              lam: float) -> Callable[[Tensor], Tensor]:
    """phi -> the gradient of every task's G_t(phi_t) = L_t(phi_t) + lam/2 ||phi_t - theta||^2 (``proximal`` with
    theta held fixed) on the stacked network, phi and ``anchor`` (theta for every task) packed: the losses'
    gradient by autodiff, the proximal term's in closed form (``with_proximal_term``)."""
    return with_proximal_term(torch.func.grad(lambda phi: model.stacked_losses(phi, support)[0].sum()), anchor, lam)


def with_proximal_term(losses_gradient: Callable[[Tensor], Tensor], anchor: Tensor,
                       lam: float) -> Callable[[Tensor], Tensor]:
    """phi -> losses_gradient(phi) + lam (phi - anchor): the proximal term's gradient in closed form (two
    operations, where differentiating the squared norm takes a dozen)."""
    if not lam:
        return losses_gradient
    return lambda phi: torch.add(losses_gradient(phi), phi - anchor, alpha=lam)


def stacked_losses_and_hessian_product(model: FunctionalModel, support: Batch,
                                       phi: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Every task's support loss at its phi_t [tasks], and u [tasks, parameters] -> each task's H_t u_t, H_t the
    Hessian of its support loss there (phi in ``FunctionalModel.pack``'s layout): forward over reverse
    (``forward_over_reverse_hvp``) on the stacked network, every task's product in one pass
    (``FunctionalModel.stacked_gradient_and_hessian_product``: the products at one phi compute what depends on phi
    alone once, the losses among it). Forward over reverse keeps its operation count whatever the meta-batch
    (tested), where reverse over reverse would loop over a grouped convolution's groups."""
    bound, product = _bound_products(model, support, phi)
    return bound.fixed_output(2, like=phi), product


def stacked_gradient_and_hessian_product(model: FunctionalModel, support: Batch,
                                         phi: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Every task's support-loss gradient at phi (packed, as phi) and ``stacked_losses_and_hessian_product``'s
    product there, from one binding: the gradient is a value of the products' first stage, which computes it
    anyway, so an inner step that will be differentiated through (MAML's) costs no pass of its own. The gradient is the second-order
    form's (``second_order``): the same function as the first-order steps', equal to rounding (tested)."""
    bound, product = _bound_products(model, support, phi)
    return bound.fixed_output(0, like=phi), product


def _bound_products(model: FunctionalModel, support: Batch, phi: Tensor) -> tuple[Bound, Callable[[Tensor], Tensor]]:
    """The staged gradient-and-product bound at phi, and u [tasks, parameters] -> each task's H_t u_t from it."""
    tasks = support.x.shape[0]
    bound = model.stacked_gradient_and_hessian_product.bind(phi, support.x, support.y)
    return bound, lambda u: model.unpack(bound(model.pack(u))[1], tasks)


def reads_back_cheaply(device: torch.device) -> bool:
    """Whether the engine may read a value back to the host within an iteration: on the CPU, outside
    ``torch.compile``, where that costs nothing (there is no GPU to stall and no graph to capture). Where it may,
    Newton-CG's line search evaluates each candidate only for the tasks still searching
    (``inner_solvers.armijo_ladder_searching_only``)."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


def stacked_newton_problem(model: FunctionalModel, support: Batch, theta: Tensor,
                           lam: float) -> tuple[Linearization, ProblemObjective]:
    """Every task's G_t(phi_t) = L_t(phi_t) + lam/2 ||phi_t - theta||^2 (``proximal``, theta [parameters], the tasks',
    held fixed) on the stacked network, for ``inner_solvers.masked_newton_steps`` on the [tasks, parameters] stack of
    Newton problems:

    - the linearization at phi (G, its gradient and u -> its Hessian times u, row by row), from one binding of the
      staged products (``FunctionalModel.stacked_gradient_and_hessian_product``, whose first stage computes the
      losses and the gradient, and whose second the products);
    - the objective for the line searches (``inner_solvers.ProblemObjective``): points [m, parameters] -> G [m] in
      one forward pass of m networks, point i on the set of task rows[i] (``armijo_ladder_searching_only``'s tasks
      still searching), or without rows on that of task i mod tasks (every task: ``armijo_ladder``; every candidate
      of every task: ``armijo_ladder_at_once``).

    The proximal term's value, gradient and product in closed form."""
    tasks = support.x.shape[0]

    def linearized(phi: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        packed, offset = model.pack(phi), phi - theta
        bound, product = _bound_products(model, support, packed)
        losses, gradient = bound.fixed_output(2, like=packed), model.unpack(bound.fixed_output(0, like=packed), tasks)
        return (losses + 0.5 * lam * offset.pow(2).sum(dim=-1), torch.add(gradient, offset, alpha=lam),
                lambda u: torch.add(product(u), u, alpha=lam))

    repeated: dict[int, Batch] = {}  # every task's set once per candidate, made once per solve (a dict: dynamo
    # cannot trace functools.cache)

    def objective(points: Tensor, rows: Tensor | None = None) -> Tensor:
        if rows is not None:
            # a copy per parameter rather than pack's gather, whose permutation would be kept for every number of rows
            packed, sets = model.pack_by_blocks(points), Batch(support.x[rows], support.y[rows])
        else:
            copies = points.shape[0] // tasks
            if copies not in repeated:
                repeated[copies] = Batch(*(t.expand(copies, *t.shape).reshape(copies * tasks, *t.shape[1:])
                                           for t in (support.x, support.y)))
            packed, sets = model.pack(points), repeated[copies]
        return model.stacked_losses(packed, sets)[0] + 0.5 * lam * (points - theta).pow(2).sum(dim=-1)

    return linearized, objective


def stacked_query_loss_and_gradient(model: FunctionalModel, phi: Tensor, query: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """``query_loss_and_gradient`` for every task at once on the stacked network, phi packed: losses [tasks],
    gradients [tasks, parameters], accuracies [tasks]."""

    def total(flat: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        losses, logits = model.stacked_losses(flat, query)
        return losses.sum(), (losses, logits)

    gradients, (losses, logits) = torch.func.grad(total, has_aux=True)(phi)
    return losses, model.unpack(gradients, query.x.shape[0]), accuracy(logits, query.y)


def adapt_over_tasks(adapt: Adapt, theta: Tensor, batch: TaskBatch) -> Tensor:
    """Each task's adapted parameters [tasks, parameters], theta shared."""
    with torch.no_grad():
        return torch.func.vmap(adapt, in_dims=(None, 0, 0), randomness="error")(theta.detach(), batch.support.x,
                                                                                batch.support.y)


def query_scores(model: FunctionalModel, phi: Tensor, batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Per task: query accuracy and loss at phi [tasks, parameters], and the support loss there."""

    def scores(p: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits = model.forward(p, qx)
        return accuracy(logits, qy), model.mapped_loss_fn(logits, qy), support_loss(model, sx, sy)(p)

    with torch.no_grad():
        return torch.func.vmap(scores)(phi, batch.support.x, batch.support.y, batch.query.x, batch.query.y)
