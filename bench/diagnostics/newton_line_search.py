"""What Newton-CG on the stacked network runs (reports/notes/engines.md, the bullet "Newton-CG on the stacked
network"): the operations (``bench.measure.operations``) of the Omniglot 5-way 1-shot iMAML-HF preset's inner solve (3
Newton iterations, 5 CG steps each, the Armijo ladder of 31 candidates) for one meta-batch of real training tasks
(the project's class split; float64), under ``vmap``, and on the stacked network with each of the three line
searches: the whole ladder one candidate after another, each candidate for the tasks still searching only (the
CPU's), and every candidate in one pass (elsewhere: CUDA), with the number of task-candidates each evaluates
(forward passes of one task's network). The iterates are checked against the ``vmap`` one. Then the whole
meta-batch's meta-gradients as the engine runs them on the CPU, and with the line search that runs elsewhere
(derived: the CPU's total less its inner solve, plus the one-pass inner solve)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from metagrad.algorithms.batched import stacked_newton_problem
from metagrad.algorithms.inner_solvers import (
    armijo_ladder,
    armijo_ladder_at_once,
    armijo_ladder_searching_only,
    masked_newton_steps,
)
from metagrad.algorithms.registry import batched_meta_gradient
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.presets import preset


def counted(run):
    """The operations of ``run`` and its result."""
    result = []
    operations = count_operations(lambda: result.append(run())).total
    return operations, result[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metagrad.bench.diagnostics.newton_line_search", description=__doc__)
    parser.add_argument("--tasks", type=int, default=None, help="tasks in the meta-batch (default the preset's, 32)")
    parser.add_argument("--filters", type=int, default=None, help="ConvNet filters (default the preset's, 64)")
    parser.add_argument("--data-root", default=None, help="data folder (default $METAGRAD_DATA, else the user's data folder)")
    args = parser.parse_args(argv)
    settings = preset("omniglot-5w1s-imaml-hf")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    spec = EpisodeSpec(settings["ways"], settings["shots"], settings["queries"])
    tasks = task_source("omniglot", "train", spec, args.data_root).tasks
    batch = tasks.sample_batch(torch.Generator().manual_seed(0), args.tasks or settings["meta_batch"], torch.float64)
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", settings["ways"], args.filters).double(), cross_entropy_loss)
    theta = model.flat_parameters()
    size = batch.size
    print(f"iMAML-HF preset: {settings['hyperparameters']}, {size} tasks, float64")

    def mapped_solve() -> torch.Tensor:
        def one_task(th, x, y):
            return algorithm.functional_inner_solution(model, th, x, y).phi

        return torch.func.vmap(one_task, in_dims=(None, 0, 0))(theta, batch.support.x, batch.support.y)

    mapped_solve()  # warm-up (the stacked forms' first call traces their products: host work, no device operations)
    mapped_operations, mapped_phi = counted(mapped_solve)
    print(f"inner solve under vmap:                              {mapped_operations:>6,}")
    start = theta.expand(size, -1)
    evaluated: dict[str, int] = {}

    def counting(name: str, objective):
        """``objective``, counting the task-candidates it evaluates under ``name``."""

        def counted_objective(points: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            evaluated[name] = evaluated.get(name, 0) + points.shape[0]
            return objective(points, rows)

        return counted_objective

    searches = {"whole ladder, one candidate after another": armijo_ladder,
                "each candidate for the tasks still searching (CPU)": armijo_ladder_searching_only,
                "every candidate in one pass (elsewhere)": armijo_ladder_at_once}
    inner = {}
    for name, form in searches.items():
        def solve(name=name, form=form):  # the problem and its search made afresh, as the engine makes them
            linearized, objective = stacked_newton_problem(model, batch.support, theta, algorithm.lam)
            return masked_newton_steps(linearized, form(counting(name, objective)), start, algorithm.inner_steps,
                                       algorithm.newton_cg_steps)

        solve()  # warm-up
        evaluated[name] = 0
        inner[name], solution = counted(solve)
        difference = ((solution.phi - mapped_phi).norm(dim=-1) / mapped_phi.norm(dim=-1)).max().item()
        print(f"stacked, {name}: {inner[name]:>6,} operations, {evaluated[name]:>5,} task-candidates  "
              f"(phi against vmap's: {difference:.1e})")
    print(f"candidates evaluated per task over the 3 iterations (the reference's count; sum "
          f"{solution.loss_evals.sum().item()}): {solution.loss_evals.tolist()}")
    batched_meta_gradient(algorithm, model, theta, batch)  # warm-up
    total, _ = counted(lambda: batched_meta_gradient(algorithm, model, theta, batch))
    cpu, elsewhere = list(searches)[1:]
    print(f"meta-batch's meta-gradients, as on the CPU:          {total:>6,}")
    print(f"meta-batch's meta-gradients, one-pass line search:   {total - inner[cpu] + inner[elsewhere]:>6,}  (derived)")


if __name__ == "__main__":
    main()
