"""`metagrad spectrum`: is iMAML's linear system positive definite at a run's meta-parameters?

For each task of a fixed pool: adapt phi from theta with the run's own inner loop, then estimate the
extreme eigenvalues of H, the support loss's Hessian at phi, by Lanczos with Hessian-vector products
(double backward, float64). The paper's system I + H/lambda is positive definite exactly when
lambda_min(H) > -lambda; ``ritz_below_minus_lam`` counts Ritz values below -lambda, a lower bound on how
many eigenvalues are (Cauchy interlacing: the k-th smallest Ritz value is at least the k-th eigenvalue).

For iMAML each task also gets the run's own meta-gradient solve of that system (its solver and budget, per
task, float64): the relative residual it reaches, its iterations, whether it met p^T A p <= 0, how large
the meta-gradient it returns is against the query gradient v, and the least curvature u^T A u / u^T u
along the vectors it multiplied. A least curvature just above zero is what stopping at p^T A p <= 0
cannot catch: CG then divides by almost nothing, and its meta-gradient can be thousands of times v.

``next_meta_batch`` takes, instead of a fixed pool, the meta-batch the run draws next: the tasks of the
iteration after its checkpoint (from the sampler state the checkpoint holds; at initialization, the first
meta-batch), so that one training step's outlier can be looked at task by task.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from metagrad.algorithms import FunctionalModel, HessianOperator, Task, lanczos_ritz_values, make_algorithm
from metagrad.algorithms.protocol import query_loss_and_gradient
from metagrad.bench.options import MOST_STEPS, MOST_TASKS, option
from metagrad.bench.training.evaluation import TrainedRun, load_trained
from metagrad.errors import require

COLUMNS = ["task", "split", "iteration", "lam", "lambda_min", "lambda_max", "system_min_eigenvalue", "indefinite",
           "ritz_below_minus_lam", "lanczos_steps", "support_loss", "meta_solver", "solver_residual",
           "solver_iterations", "solver_negative_curvature", "meta_gradient_ratio", "least_curvature", "algorithm",
           "preset"]


@dataclass(frozen=True)
class SpectrumConfig:
    tasks: int = option(20, "tasks in the pool", at_most=MOST_TASKS)
    steps: int = option(40, "Lanczos steps per task", at_most=MOST_STEPS)
    split: str = option("train", "the split the tasks come from", choices=("train", "val", "test"))
    seed: int = option(0, "seed of the task pool and the Lanczos start vectors")
    at_init: bool = option(False, "the run's initial meta-parameters (drawn with the run's seed), not its checkpoint")
    next_meta_batch: bool = option(False, "instead of a fixed pool, the training tasks of the iteration after the "
                                   "checkpoint (with --at-init, of the first iteration; --tasks is then the run's "
                                   "meta-batch): one training step's outliers task by task")
    # the run's algorithm hyperparameters changed (train's --set), e.g. meta_solver or cg_steps: another solve of
    # the same systems (or, for inner-loop ones, other systems)
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.tasks >= 1, f"tasks must be >= 1, got {self.tasks}")
        require(not self.next_meta_batch or self.split == "train",
                f"the next meta-batch is of training tasks; split must be train, got {self.split!r}")
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(self.split in ("train", "val", "test"), f"split must be train, val or test, got {self.split!r}")


def run_spectrum(run_dir: Path, config: SpectrumConfig, progress: bool = True) -> pd.DataFrame:
    trained = load_trained(run_dir, "cpu", torch.float64, at_init=config.at_init)
    train_config, algorithm, model, theta, iteration = (trained.config, trained.algorithm, trained.model,
                                                        trained.theta, trained.iteration)
    lam = float(getattr(algorithm, "lam", 0.0))
    if config.hyperparameters:
        algorithm = make_algorithm(train_config.algorithm, **{**train_config.hyperparameters, **config.hyperparameters})
    rows = []
    pool, count = spectrum_tasks(trained, config)
    for index, task in enumerate(tqdm(pool, total=count, desc="spectrum", unit="task", disable=not progress)):
        phi = algorithm.adapt(model, theta, task.support)
        hessian = HessianOperator(lambda p, task=task: model.loss(p, task.support), phi)
        start = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(config.seed + index),
                            dtype=torch.float64)
        ritz = lanczos_ritz_values(hessian, start, config.steps)
        lambda_min, lambda_max = ritz[0].item(), ritz[-1].item()
        rows.append({
            "task": index, "split": config.split, "iteration": iteration, "lam": lam, "lambda_min": lambda_min,
            "lambda_max": lambda_max,
            "system_min_eigenvalue": 1 + lambda_min / lam if lam else float("nan"),
            "indefinite": lambda_min < -lam, "ritz_below_minus_lam": int((ritz < -lam).sum()),
            "lanczos_steps": len(ritz), "support_loss": hessian.value.item(),
            **meta_solve_columns(algorithm, model, phi, hessian, task), "algorithm": train_config.algorithm,
            "preset": train_config.preset,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def spectrum_tasks(trained: TrainedRun, config: SpectrumConfig) -> tuple[Iterator[Task], int]:
    """The tasks to look at, float64, and how many: a fixed pool, or the meta-batch the run draws next."""
    run = trained.config
    if not config.next_meta_batch:
        source = run.task_source(config.split)
        return source.tasks.fixed_pool(config.tasks, config.seed, torch.float64), config.tasks
    require(run.sampler == "host", "--next-meta-batch needs a run whose tasks come from the host sampler (its "
                                   f"state is in the checkpoint); this one's sampler is {run.sampler!r}")
    source = run.task_source("train", run.train_spec)
    generator = torch.Generator().manual_seed(run.seed)  # train()'s, before its first draw
    if not config.at_init:
        generator.set_state(trained.state["sampler"])
    return (source.tasks.sample(generator, torch.float64) for _ in range(run.meta_batch)), run.meta_batch


def meta_solve_columns(algorithm: Any, model: FunctionalModel, phi: Tensor, hessian: HessianOperator,
                       task: Task) -> dict[str, Any]:
    """The run's own meta-gradient solve at phi (iMAML's; NaN for algorithms without one), and the least
    curvature u^T A u / u^T u over the vectors the solver multiplied by A."""
    nan = float("nan")
    if not hasattr(algorithm, "meta_solve"):
        return {"meta_solver": None, "solver_residual": nan, "solver_iterations": nan,
                "solver_negative_curvature": None, "meta_gradient_ratio": nan, "least_curvature": nan}
    if algorithm.cg_steps == 0:  # g = v, no solve (meta_gradient's record has no residual either)
        return {"meta_solver": algorithm.meta_solver, "solver_residual": nan, "solver_iterations": 0,
                "solver_negative_curvature": False, "meta_gradient_ratio": 1.0, "least_curvature": nan}
    _, v, _ = query_loss_and_gradient(model, phi, task.query)
    system = algorithm.system(hessian)
    curvatures: list[float] = []

    def multiplied(u: Tensor) -> Tensor:
        product = system(u)
        curvatures.append((torch.dot(u, product) / torch.dot(u, u)).item())
        return product

    solve = algorithm.meta_solve(multiplied, v)
    gradient = solve.x if solve.iterations > 0 else v  # what meta_gradient returns
    return {"meta_solver": algorithm.meta_solver, "solver_residual": solve.relative_residual,
            "solver_iterations": solve.iterations, "solver_negative_curvature": solve.negative_curvature,
            "meta_gradient_ratio": (gradient.norm() / v.norm()).item(),
            "least_curvature": min(curvatures) if curvatures else nan}


def spectrum_path(run_dir: Path, config: SpectrumConfig) -> Path:
    """Where ``metagrad spectrum`` writes by default: beside the run's other files, named by what it looked at
    (spectrum.csv, spectrum-init.csv, spectrum-next-meta-batch-meta_solver-minres.csv, ...)."""
    parts = ["spectrum", "init" if config.at_init else None, "next-meta-batch" if config.next_meta_batch else None,
             *(f"{key}-{value}" for key, value in config.hyperparameters.items())]
    return run_dir / ("-".join(part for part in parts if part) + ".csv")


def write_spectrum(run_dir: Path, config: SpectrumConfig, out: Path | None = None, progress: bool = True) -> pd.DataFrame:
    from metagrad.bench.atomic import write_csv

    frame = run_spectrum(run_dir, config, progress=progress)
    write_csv(frame, out or spectrum_path(run_dir, config))
    return frame
