"""What staging saves a Hessian-vector product of the stacked network (``algorithms/staging.py``): the operations
(``bench.measure.operations``) of one forward-over-reverse product unstaged, of the first stage (once per phi) and of
the second (once per product), on the Omniglot 5-way 1-shot presets' network (64 filters, float64, random tasks),
the staged product checked equal to the unstaged one bit for bit; and the trace's host time (it varies with the
machine's load)."""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from metagrad.algorithms import FunctionalModel, cross_entropy_loss
from metagrad.algorithms.hessian_vector_product import forward_over_reverse_hvp
from metagrad.bench.diagnostics.random_tasks import meta_batch
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.convnet import network


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metagrad.bench.diagnostics.staged_products", description=__doc__)
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the meta-batch (default 8)")
    parser.add_argument("--filters", type=int, default=64, help="ConvNet filters (default 64)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5, args.filters).double(), cross_entropy_loss)
    support = meta_batch(args.tasks).support
    noise = torch.randn(args.tasks, model.num_parameters, dtype=torch.float64)
    phi = model.pack(model.flat_parameters() + 0.01 * noise)
    direction = model.pack(torch.randn(args.tasks, model.num_parameters, dtype=torch.float64))

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
    equal = torch.equal(product(direction), unstaged())
    print(f"operations of one product, unstaged:                {whole}")
    print(f"staged, first stage (once per phi):                  {both - second}")
    print(f"staged, second stage (once per product):             {second}")
    print(f"staged product equal to the unstaged one, bit for bit: {equal}")
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for values in bound._saved.values()
            for t in values if isinstance(t, torch.Tensor)}
    inputs = {t.untyped_storage().data_ptr() for t in (phi, support.x, support.y)}
    print(f"first-stage values a bound point holds:              {sum(len(v) for v in bound._saved.values())}, "
          f"{sum(n for p, n in held.items() if p not in inputs) / 2**20:.1f} MiB (the inputs' storages not counted)")
    print(f"trace (once per shape), host seconds on this run:     {trace_s:.1f}")
    if not equal:
        raise SystemExit("the staged product differs from the unstaged one")


if __name__ == "__main__":
    main()
