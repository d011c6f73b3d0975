"""Why the batched engine runs only first-order steps on the stacked network: a diagnostic.

The batched engine maps per-task functions over the meta-batch with ``vmap``; its batching rules add
operations of their own (BatchNorm's affine transform and the convolution biases applied apart). The
stacked network (``ConvNet.stacked_forward``, ``FunctionalModel.stacked_losses``) runs every task side
by side in one pass instead. Here MAML's and first-order MAML's meta-gradients (the Omniglot 5-way
1-shot presets' inner step, 64 filters, random images) are computed both ways in float64: ``vmap`` is the
engine with the stacked network turned off; ``stacked`` is the engine's own first-order MAML, and MAML
written as nested ``torch.func.grad`` through the stacked network. It compares them and counts operations
(``bench.operations``) for a meta-batch of 2 and of 32. Run from the repository root:

    python reports/cpu-operations/stacked_network.py > reports/cpu-operations/stacked_network.txt
"""
from __future__ import annotations

import torch
from random_tasks import meta_batch  # beside this script

from algorithms import Batch, FunctionalModel, TaskBatch, cross_entropy_loss, make_algorithm
from algorithms.batched import stacked_start
from bench.datasets import network
from bench.operations import count_operations
from bench.presets import preset


class MappedOnly(FunctionalModel):
    stacks = False  # the batched engine with every step per task under vmap


torch.manual_seed(0)
stacked = FunctionalModel(network("omniglot", 5).double(), cross_entropy_loss)
mapped = MappedOnly(stacked.module, cross_entropy_loss)
theta = stacked.flat_parameters()


def stacked_maml(batch: TaskBatch, inner_lr: float) -> torch.Tensor:
    """Second-order MAML on the stacked network: the gradient of the sum of the tasks' query losses through
    one inner step (the preset's), every task's own since no parameter is shared."""

    def total(phi: torch.Tensor, part: Batch) -> torch.Tensor:
        return stacked.stacked_losses(phi, part)[0].sum()

    def query_loss_of(th: torch.Tensor) -> torch.Tensor:
        return total(th - inner_lr * torch.func.grad(total)(th, batch.support), batch.query)

    return stacked.unpack(torch.func.grad(query_loss_of)(stacked_start(stacked, theta, batch.size)), batch.size)


print("preset           tasks  engine   operations  convolutions  max relative difference")
for variant in ("maml", "fomaml"):
    settings = preset(f"omniglot-5w1s-{variant}")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    for tasks in (2, 32):
        batch = meta_batch(tasks)
        runs = {"vmap": lambda a=algorithm, b=batch: a.batched_meta_gradient(mapped, theta, b).gradients,
                "stacked": (lambda a=algorithm, b=batch: stacked_maml(b, a.inner_lr)) if variant == "maml" else
                           (lambda a=algorithm, b=batch: a.batched_meta_gradient(stacked, theta, b).gradients)}
        reference, other = runs["vmap"](), runs["stacked"]()
        difference = float(((other - reference).norm(dim=1) / reference.norm(dim=1)).max())
        for engine, run in runs.items():
            counter = count_operations(run)
            shown = f"{difference:.1e}" if engine == "stacked" else ""
            print(f"{variant:16s} {tasks:5d}  {engine:7s}  {counter.total:10d}  {counter.counts['convolution']:12d}  {shown}")
