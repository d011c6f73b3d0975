"""What staging saves a Hessian-vector product of the stacked network (``algorithms/staging.py``): the operations
(``bench.operations``) of one forward-over-reverse product unstaged, of the first stage (once per phi) and of the
second (once per product), on the Omniglot 5-way 1-shot presets' network (64 filters, float64, 8 random tasks),
the staged product checked equal to the unstaged one bit for bit; and the trace's host time (it varies with
the machine's load). Run from the repository root:

    python reports/cpu-operations/staged_products.py > reports/cpu-operations/staged_products.txt
"""
from __future__ import annotations

import time

import torch
from random_tasks import meta_batch  # beside this script

from algorithms import FunctionalModel, cross_entropy_loss
from algorithms.hessian_vector_product import forward_over_reverse_hvp
from bench.datasets import network
from bench.operations import count_operations

torch.manual_seed(0)
model = FunctionalModel(network("omniglot", 5).double(), cross_entropy_loss)
tasks = 8
support = meta_batch(tasks).support
phi = model.pack(model.flat_parameters() + 0.01 * torch.randn(tasks, model.num_parameters, dtype=torch.float64))
direction = model.pack(torch.randn(tasks, model.num_parameters, dtype=torch.float64))


def unstaged() -> torch.Tensor:
    return forward_over_reverse_hvp(lambda p: model.stacked_losses(p, support, second_order=True)[0].sum(), phi,
                                    direction)


started = time.perf_counter()
model.stacked_gradient_and_hessian_product.bind(phi, support.x, support.y)(direction)  # traces
trace_s = time.perf_counter() - started
bound = model.stacked_gradient_and_hessian_product.bind(phi, support.x, support.y)


def product(direction: torch.Tensor) -> torch.Tensor:
    return bound(direction)[1]


both = count_operations(lambda: product(direction)).total  # the first call: both stages
second = count_operations(lambda: product(direction)).total
whole = count_operations(unstaged).total
assert torch.equal(product(direction), unstaged())
print(f"operations of one product, unstaged:                {whole}")
print(f"staged, first stage (once per phi):                  {both - second}")
print(f"staged, second stage (once per product):             {second}")
print(f"staged product equal to the unstaged one, bit for bit: {torch.equal(product(direction), unstaged())}")
held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for values in bound._saved.values() for t in values
        if isinstance(t, torch.Tensor)}
inputs = {t.untyped_storage().data_ptr() for t in (phi, support.x, support.y)}
print(f"first-stage values a bound point holds:              {sum(len(v) for v in bound._saved.values())}, "
      f"{sum(n for p, n in held.items() if p not in inputs) / 2**20:.1f} MiB (the inputs' storages not counted)")
print(f"trace (once per shape), host seconds on this run:     {trace_s:.1f}")
