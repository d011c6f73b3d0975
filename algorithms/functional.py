"""A network seen as a pure function of one flat parameter vector.

Every algorithm works on flat vectors: the conjugate-gradient solver, the Hessian-vector
product and the outer optimizer then need no knowledge of the network's structure, and a
meta-gradient is one tensor that can be compared, averaged and checked by finite differences.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .hessian_vector_product import gradient_and_forward_over_reverse_hvp
from .staging import Staged

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Batch:
    """Inputs and targets of one set (support or query) of a task."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        x = self.x.to(device=device, dtype=dtype if dtype is not None and self.x.is_floating_point() else None)
        y = self.y.to(device=device, dtype=dtype if dtype is not None and self.y.is_floating_point() else None)
        return Batch(x, y)


@dataclass(frozen=True)
class Task:
    """One task: the support (training) set the inner loop adapts on, the query (test) set it is judged on."""

    support: Batch
    query: Batch

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Task:
        return Task(self.support.to(device, dtype), self.query.to(device, dtype))


@dataclass(frozen=True)
class TaskBatch:
    """A meta-batch of tasks with one spec: each set's tensors stacked along a leading task axis.

    ``support.x`` is [tasks, support size, ...], ``support.y`` [tasks, support size], and so on: the
    unit the batched engine works on (one ``vmap`` over the leading axis). ``task(i)`` is task i as
    the per-task engine sees it, so both engines can be handed the very same tasks.
    """

    support: Batch
    query: Batch

    @property
    def size(self) -> int:
        return self.support.x.shape[0]

    def task(self, index: int) -> Task:
        return Task(Batch(self.support.x[index], self.support.y[index]), Batch(self.query.x[index], self.query.y[index]))

    def tasks(self) -> list[Task]:
        return [self.task(i) for i in range(self.size)]

    def select(self, indices: range) -> TaskBatch:
        """Tasks ``indices`` (a contiguous range) of the batch: one process's share of a meta-batch."""
        part = slice(indices.start, indices.stop)
        return TaskBatch(Batch(self.support.x[part], self.support.y[part]), Batch(self.query.x[part], self.query.y[part]))

    @staticmethod
    def stack(tasks: list[Task]) -> TaskBatch:
        """The batch of ``tasks``, which must share their shapes (one episode spec)."""

        def stacked(batches: list[Batch]) -> Batch:
            return Batch(torch.stack([b.x for b in batches]), torch.stack([b.y for b in batches]))

        return TaskBatch(stacked([t.support for t in tasks]), stacked([t.query for t in tasks]))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        return TaskBatch(self.support.to(device, dtype), self.query.to(device, dtype))


def squared_error_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """0.5 * mean squared error: the paper's regression loss (Appendix F.1)."""
    return 0.5 * (prediction.reshape(target.shape) - target).pow(2).mean()


def cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, target)


def stacked_cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Every task's ``cross_entropy_loss`` [tasks] from logits [tasks, images, classes] and labels [tasks, images]:
    one log-softmax and one negative log-likelihood, where ``vmap`` decomposes the latter into a dozen operations."""
    per_image = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return per_image.view(target.shape).mean(dim=-1)


def gathered_cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``cross_entropy_loss`` as log-softmax, gather and mean: the same function, in three operations under ``vmap``,
    whose batching rule for the negative log-likelihood decomposes it into a dozen (its derivatives into more)."""
    return -logits.log_softmax(dim=-1).gather(-1, target.unsqueeze(-1)).mean()


# losses with a form that runs in fewer operations under vmap (the batched engine's per-task functions)
MAPPED_LOSSES: dict[LossFn, LossFn] = {cross_entropy_loss: gathered_cross_entropy_loss}
# losses with a form for a stack of tasks that needs no vmap; the others are mapped over the tasks
STACKED_LOSSES: dict[LossFn, LossFn] = {cross_entropy_loss: stacked_cross_entropy_loss}


def stacked_loss(loss: LossFn) -> LossFn:
    """``loss`` for a stack of tasks: [tasks, images, ...] predictions and targets -> [tasks]."""
    return STACKED_LOSSES.get(loss) or torch.func.vmap(loss)


class FunctionalModel:
    """Wraps an ``nn.Module`` and a loss so that both are functions of a flat parameter vector.

    The module must not keep state between calls that the meta-gradient depends on: BatchNorm
    layers are expected with ``track_running_stats=False`` (batch statistics always), which is the
    transductive setting of MAML and iMAML and keeps every loss a pure function of the parameters.
    """

    def __init__(self, module: nn.Module, loss: LossFn):
        self.module = module
        self.loss_fn = loss
        self.mapped_loss_fn = MAPPED_LOSSES.get(loss, loss)  # the same loss, for functions mapped over tasks
        named = list(module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.has_second_order_form = "second_order" in inspect.signature(module.forward).parameters
        self._pack_permutations: dict[tuple[int, torch.device], Tensor] = {}  # pack's, by meta-batch size and device
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                raise ValueError(
                    "BatchNorm with running statistics makes the loss depend on call history; "
                    "build it with track_running_stats=False"
                )

    @property
    def num_parameters(self) -> int:
        return sum(self.numels)

    def flat_parameters(self) -> Tensor:
        """The module's current parameters as one detached vector (the meta-parameters theta)."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Differentiable views of ``flat`` shaped like the module's parameters, in order."""
        return [chunk.view(shape) for chunk, shape in zip(torch.split(flat, self.numels), self.shapes)]

    def forward(self, flat: Tensor, x: Tensor, second_order: bool = False) -> Tensor:
        """The module's output at parameters ``flat``. ``second_order``: the module's form for being differentiated
        twice where it has one (a ``second_order`` argument of its ``forward``, as the ConvNet's, whose BatchNorm
        then has derivatives that differentiate in fewer operations); the same function either way."""
        params = dict(zip(self.names, self.unflatten(flat)))
        if second_order and self.has_second_order_form:
            return functional_call(self.module, params, (x,), {"second_order": True})
        return functional_call(self.module, params, (x,))

    def loss(self, flat: Tensor, batch: Batch) -> Tensor:
        return self.loss_fn(self.forward(flat, batch.x), batch.y)

    def mapped_loss(self, flat: Tensor, batch: Batch, second_order: bool = False) -> Tensor:
        """``loss`` as the batched engine's per-task functions (mapped over tasks with ``vmap``) take it: with
        ``mapped_loss_fn``, and ``forward``'s ``second_order`` form where asked; the same function."""
        return self.mapped_loss_fn(self.forward(flat, batch.x, second_order), batch.y)

    @property
    def stacks(self) -> bool:
        """Whether the module runs a meta-batch's tasks side by side (it has ``stacked_forward``, as the
        ConvNet has): the batched engine's first-order inner loops then run on it instead of ``vmap``."""
        return hasattr(self.module, "stacked_forward")

    def pack(self, flat: Tensor) -> Tensor:
        """Every task's parameters ``flat`` [tasks, parameters] in the stacked network's layout: parameter by
        parameter, each a [tasks, its size] block, the blocks flattened one after another. Each parameter of every
        task is then one contiguous view, so the network reads it without a copy, and a gradient step on all of
        them is one operation (``algorithms.batched.stacked_gradient_descent``).

        One gather (``torch.take``, which reads ``flat`` through its strides: theta expanded over the tasks is not
        copied first) by the layout's permutation, made once per meta-batch size and device; where a block-by-block
        copy would be a copy per parameter (every Hessian-vector product of the stacked network packs its
        direction). Under ``torch.compile`` the blocks are copied, which inductor fuses."""
        if torch.compiler.is_compiling():
            return self.pack_by_blocks(flat)
        key = (flat.shape[0], flat.device)
        if key not in self._pack_permutations:
            grid = torch.arange(flat.numel(), device=flat.device).view(flat.shape)
            self._pack_permutations[key] = self.pack_by_blocks(grid)
        return torch.take(flat, self._pack_permutations[key])

    def pack_by_blocks(self, flat: Tensor) -> Tensor:
        """``pack`` as a copy per parameter: no permutation kept, where ``flat``'s number of rows varies."""
        return torch.cat([chunk.reshape(-1) for chunk in torch.split(flat, self.numels, dim=1)])

    def unpack(self, packed: Tensor, tasks: int) -> Tensor:
        """``pack``'s inverse: [tasks, parameters] from the stacked layout."""
        return torch.cat([block.view(tasks, -1) for block in torch.split(packed, self._block_sizes(tasks))], dim=1)

    def _block_sizes(self, tasks: int) -> list[int]:
        return [tasks * numel for numel in self.numels]

    def stacked_losses(self, packed: Tensor, batch: Batch, second_order: bool = False) -> tuple[Tensor, Tensor]:
        """Each task's loss [tasks] and logits, from its parameters ``packed`` (``pack``'s layout) and its set
        ``batch`` (x [tasks, images, ...], y [tasks, images]), in one pass of ``stacked_forward`` (``second_order``:
        the form of it written for Hessian-vector products, the same function)."""
        tasks = batch.x.shape[0]
        parameters = [block.view(tasks, *shape) for block, shape in zip(torch.split(packed, self._block_sizes(tasks)),
                                                                        self.shapes)]
        logits = self.module.stacked_forward(parameters, batch.x, second_order)
        return stacked_loss(self.loss_fn)(logits, batch.y), logits

    @functools.cached_property
    def stacked_gradient_and_hessian_product(self) -> Staged:
        """(phi, x, y, u) -> (every task's gradient g_t, every task's Hessian-vector product H_t u_t, every task's
        loss L_t), g_t, H_t and L_t those of task t's loss on its set (x [tasks, images, ...], y) at its phi_t, phi, u,
        g and Hu in ``pack``'s layout: forward over reverse on the stacked network (``second_order``), all tasks in
        one pass (the gradient is the ``jvp``'s primal output), staged (``Staged``) so that the products at one phi
        share what depends on phi and the set alone (their forward and backward passes, the gradient and the losses
        among them).

        The products' first stage computes the gradient and the losses anyway, so MAML's inner steps and iMAML's
        Newton iterations take them from there (``Bound.fixed_output``) rather than from a pass of their own
        (``batched.stacked_gradient_and_hessian_product``)."""

        def gradient_product_and_losses(phi: Tensor, x: Tensor, y: Tensor,
                                        direction: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            batch = Batch(x, y)

            def total(p: Tensor) -> tuple[Tensor, Tensor]:
                losses = self.stacked_losses(p, batch, second_order=True)[0]
                return losses.sum(), losses

            return gradient_and_forward_over_reverse_hvp(total, phi, direction, has_aux=True)

        return Staged(gradient_product_and_losses)

    def loss_and_accuracy(self, flat: Tensor, batch: Batch) -> tuple[Tensor, float | None]:
        """The loss and, for classification targets (integer labels), the accuracy."""
        out = self.forward(flat, batch.x)
        loss = self.loss_fn(out, batch.y)
        if batch.y.dtype in (torch.int64, torch.int32):
            return loss, (out.argmax(dim=-1) == batch.y).double().mean().item()
        return loss, None
