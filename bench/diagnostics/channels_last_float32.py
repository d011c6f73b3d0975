"""How far the batched engine's float32 meta-gradients are from its float64 ones, with the stacked network's
activations in the default memory order and channels last (``--channels-last``): the check (reports/notes/engines.md)
that the layout's larger float32 difference from the per-task engine is rounding, not lost precision. Omniglot
5-way 1-shot presets (64 filters), the diagnostics' random meta-batch."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from metagrad.algorithms.registry import batched_meta_gradient
from metagrad.bench.diagnostics.random_tasks import meta_batch
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.presets import preset


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metagrad.bench.diagnostics.channels_last_float32", description=__doc__)
    parser.add_argument("--tasks", type=int, default=4, help="tasks in the meta-batch (default 4)")
    parser.add_argument("--filters", type=int, default=None, help="ConvNet filters (default the presets', 64)")
    args = parser.parse_args(argv)
    batch = meta_batch(args.tasks)
    print("preset            layout          max over tasks of |g32 - g64| / |g64|")
    for variant in ("maml", "fomaml", "imaml-gd"):
        settings = preset(f"omniglot-5w1s-{variant}")
        algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
        for channels_last in (False, True):
            torch.manual_seed(0)
            module = network("omniglot", 5, args.filters, channels_last)
            model = FunctionalModel(module.double(), cross_entropy_loss)
            theta = model.flat_parameters()
            exact = batched_meta_gradient(algorithm, model, theta, batch).gradients
            model = FunctionalModel(module.float(), cross_entropy_loss)
            rounded = batched_meta_gradient(algorithm, model, theta.float(), batch.to("cpu", torch.float32)).gradients
            difference = ((rounded.double() - exact).norm(dim=1) / exact.norm(dim=1)).max()
            layout = "channels last" if channels_last else "default"
            print(f"{variant:16s}  {layout:14s}  {difference:.4e}")


if __name__ == "__main__":
    main()
