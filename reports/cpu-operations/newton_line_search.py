"""What Newton-CG on the stacked network runs (README, "Two engines", the bullet "Newton-CG on the stacked network"):
the operations (``bench.operations``) of the Omniglot 5-way 1-shot iMAML-HF preset's inner solve (3 Newton iterations,
5 CG steps each, the Armijo ladder of 31 candidates) for one meta-batch of 32 real training tasks (the project's
class split, from ``../shared/data``; float64), under ``vmap`` as the engine ran it before, and on the stacked network
with each of the three line searches: the whole ladder one candidate after another, the same ending once every task
has its step (the CPU's), and every candidate in one pass (elsewhere: CUDA). The iterates are checked against the
``vmap`` one. Then the whole meta-batch's meta-gradients as the engine runs them on the CPU, and with the line search
that runs elsewhere (derived: the CPU's total less its inner solve, plus the one-pass inner solve). Run from the
repository root:

    python reports/cpu-operations/newton_line_search.py > reports/cpu-operations/newton_line_search.txt
"""
from __future__ import annotations

import torch

from algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from algorithms.batched import stacked_newton_problem
from algorithms.inner_solvers import armijo_ladder, armijo_ladder_at_once, masked_newton_steps
from bench.datasets import network, task_source
from bench.operations import count_operations
from bench.presets import preset
from bench.tasks import EpisodeSpec

settings = preset("omniglot-5w1s-imaml-hf")
algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
spec = EpisodeSpec(settings["ways"], settings["shots"], settings["queries"])
tasks = task_source("omniglot", "train", spec, "../shared/data").tasks
batch = tasks.sample_batch(torch.Generator().manual_seed(0), settings["meta_batch"], torch.float64)
torch.manual_seed(0)
model = FunctionalModel(network("omniglot", settings["ways"]).double(), cross_entropy_loss)
theta = model.flat_parameters()
size = batch.size
print(f"iMAML-HF preset: {settings['hyperparameters']}, {size} tasks, float64")


def counted(run):
    """The operations of ``run`` and its result."""
    result = []
    operations = count_operations(lambda: result.append(run())).total
    return operations, result[0]


def mapped_solve() -> torch.Tensor:
    def one_task(th, x, y):
        return algorithm.functional_inner_solution(model, th, x, y).phi

    return torch.func.vmap(one_task, in_dims=(None, 0, 0))(theta, batch.support.x, batch.support.y)


mapped_solve()  # warm-up (the stacked forms' first call traces their products: host work, no device operations)
mapped_operations, mapped_phi = counted(mapped_solve)
print(f"inner solve under vmap (the engine before):         {mapped_operations:>6,}")
start = theta.expand(size, -1)
linearized, objective, objectives = stacked_newton_problem(model, batch.support, start, algorithm.lam)
searches = {"whole ladder, one candidate after another": armijo_ladder(objective),
            "ending once every task has its step (CPU)": armijo_ladder(objective, stop_early=True),
            "every candidate in one pass (elsewhere)": armijo_ladder_at_once(objectives)}
inner = {}
for name, search in searches.items():
    def solve(search=search):
        return masked_newton_steps(linearized, search, start, algorithm.inner_steps, algorithm.newton_cg_steps)

    solve()  # warm-up
    inner[name], solution = counted(solve)
    difference = ((solution.phi - mapped_phi).norm(dim=-1) / mapped_phi.norm(dim=-1)).max().item()
    print(f"stacked, {name}: {inner[name]:>6,}  (phi against vmap's: {difference:.1e})")
print(f"candidates evaluated per task over the 3 iterations (the reference's count): "
      f"{solution.loss_evals.tolist()}")
algorithm.batched_meta_gradient(model, theta, batch)  # warm-up
total, _ = counted(lambda: algorithm.batched_meta_gradient(model, theta, batch))
cpu, elsewhere = list(searches)[1:]
print(f"meta-batch's meta-gradients, as on the CPU:          {total:>6,}")
print(f"meta-batch's meta-gradients, one-pass line search:   {total - inner[cpu] + inner[elsewhere]:>6,}  (derived)")
