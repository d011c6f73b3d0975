"""Would a network written for the whole meta-batch (no vmap) run fewer device operations? A diagnostic.

The batched engine maps per-task functions over the meta-batch with ``vmap``; its batching rules add
operations of their own (BatchNorm's affine transform and the convolution biases applied apart, weights
copied into grouped layouts). Here the same ConvNet is written once for all tasks side by side: the
activations as [images, tasks x channels, height, width], each layer one grouped convolution with its
bias, one BatchNorm with every task's scale and shift, so per-task statistics come for free; per-task
gradients are the gradient of the sum of the tasks' losses (the tasks share no parameter). It computes
MAML's and first-order MAML's meta-gradients (the Omniglot 5-way 1-shot presets' inner step, 64 filters,
random images) both ways in float64, compares them, and counts operations (``bench.operations``) for a
meta-batch of 2 and of 32. (The batched engine now runs its first-order steps this way: ``vmap`` here is
the engine with the stacked network turned off.) Run from the repository root:

    python reports/cpu-operations/stacked_network.py > reports/cpu-operations/stacked_network.txt
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms import Batch, FunctionalModel, TaskBatch, cross_entropy_loss, make_algorithm
from bench.datasets import network
from bench.operations import count_operations
from bench.presets import preset


class MappedOnly(FunctionalModel):
    stacks = False  # the batched engine as it was: every step per task under vmap


torch.manual_seed(0)
model = MappedOnly(network("omniglot", 5).double(), cross_entropy_loss)
theta = model.flat_parameters()


def stacked_logits(parameters: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Every task's logits [tasks, images, classes] from its parameters [tasks, P] and images [tasks, images, 1, 28, 28]."""
    tasks, images = x.shape[:2]
    split = [chunk.reshape(tasks, *shape) for chunk, shape in zip(torch.split(parameters, model.numels, dim=1),
                                                                    model.shapes)]
    h = x.transpose(0, 1).reshape(images, tasks * x.shape[2], *x.shape[3:])
    for block in range(4):
        weight, bias, scale, shift = split[4 * block:4 * block + 4]
        h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), stride=2, padding=1, groups=tasks)
        h = F.relu(F.batch_norm(h, None, None, scale.reshape(-1), shift.reshape(-1), training=True))
    weight, bias = split[16:]
    return torch.baddbmm(bias.unsqueeze(1), h.reshape(images, tasks, -1).transpose(0, 1), weight.transpose(1, 2))


def stacked_loss(parameters: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum over tasks of each task's mean cross-entropy: its gradient holds every task's own gradient."""
    logits = stacked_logits(parameters, x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1).sum()


def stacked_meta_gradients(batch: TaskBatch, inner_lr: float, second_order: bool) -> torch.Tensor:
    start = theta.repeat(batch.size, 1)

    def adapted(th: torch.Tensor) -> torch.Tensor:
        step = torch.func.grad(stacked_loss)(th, batch.support.x, batch.support.y)
        return th - inner_lr * step

    if second_order:
        return torch.func.grad(lambda th: stacked_loss(adapted(th), batch.query.x, batch.query.y))(start)
    return torch.func.grad(stacked_loss)(adapted(start), batch.query.x, batch.query.y)


def meta_batch(tasks: int) -> TaskBatch:
    generator = torch.Generator().manual_seed(tasks)
    support = Batch(torch.rand(tasks, 5, 1, 28, 28, generator=generator, dtype=torch.float64),
                    torch.arange(5).repeat(tasks, 1))
    query = Batch(torch.rand(tasks, 75, 1, 28, 28, generator=generator, dtype=torch.float64),
                  torch.arange(5).repeat_interleave(15).repeat(tasks, 1))
    return TaskBatch(support, query)


print("preset           tasks  engine   operations  convolutions  max relative difference")
for variant in ("maml", "fomaml"):
    settings = preset(f"omniglot-5w1s-{variant}")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    for tasks in (2, 32):
        batch = meta_batch(tasks)
        reference = algorithm.batched_meta_gradient(model, theta, batch).gradients
        stacked = stacked_meta_gradients(batch, algorithm.inner_lr, variant == "maml")
        difference = float(((stacked - reference).norm(dim=1) / reference.norm(dim=1)).max())
        for engine, run in (("vmap", lambda a=algorithm, b=batch: a.batched_meta_gradient(model, theta, b)),
                            ("stacked", lambda a=algorithm, b=batch, v=variant: stacked_meta_gradients(
                                b, a.inner_lr, v == "maml"))):
            counter = count_operations(run)
            shown = f"{difference:.1e}" if engine == "stacked" else ""
            print(f"{variant:16s} {tasks:5d}  {engine:7s}  {counter.total:10d}  {counter.counts['convolution']:12d}  {shown}")
