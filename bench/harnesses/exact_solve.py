"""Exact-solve harness (paper Figure 2a): each algorithm's meta-gradient against the closed form.

Error is Definition 3 of the paper: ||g - d/dtheta L_test(Alg*(theta))||, with Alg* the exact
minimizer of the proximal inner objective, on linear-regression tasks where that is known in
closed form. Every algorithm runs gradient descent on the same G with the same step size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from algorithms import FunctionalModel, algorithm_label, make_algorithm, squared_error_loss
from algorithms.registry import require
from bench.data.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task
from bench.options import option

CONVERGED_CG_STEPS = 200  # "CG run to convergence": a cap far above the ~35 iterations it needs at kappa = 50
CONVERGED_CG_TOLERANCE = 1e-14

COLUMNS = ["algorithm", "inner_steps", "cg_steps", "seed", "error", "rel_error", "label", "tasks",
           "cg_iterations", "grad_evals", "hvp_evals", "dim", "lam", "kappa", "distinct_eigenvalues", "inner_lr",
           "diverged"]


@dataclass(frozen=True)
class Variant:
    label: str
    algorithm: str
    cg_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant(algorithm_label("maml"), "maml"),
    Variant(algorithm_label("fomaml"), "fomaml"),
    Variant(algorithm_label("reptile"), "reptile"),
    Variant(f"{algorithm_label('imaml')}, 2 CG steps", "imaml", 2),
    Variant(f"{algorithm_label('imaml')}, 5 CG steps", "imaml", 5),
    Variant(f"{algorithm_label('imaml')}, CG to convergence", "imaml", CONVERGED_CG_STEPS,
            {"cg_tolerance": CONVERGED_CG_TOLERANCE}),
)


@dataclass(frozen=True)
class ExactSolveConfig:
    task: LinearRegressionConfig = option(default_factory=LinearRegressionConfig, nested=True)
    inner_steps: tuple[int, ...] = option((1, 2, 5, 10, 20, 50, 100, 200, 300, 500), "comma-separated inner step counts")
    seed: int = option(0, "the first seed")
    seeds: int = option(3, "number of seeds, from --seed on")
    tasks_per_seed: int = option(4, "tasks per seed, errors averaged", flag="--tasks")
    inner_lr: float | None = option(None, "inner step size", shown="2/(L+mu) of the inner objective, its fastest fixed step")

    def __post_init__(self) -> None:
        require(len(self.inner_steps) > 0 and all(k >= 1 for k in self.inner_steps), "inner steps must be >= 1")
        require(self.seeds >= 1, f"at least one seed is needed, got --seeds {self.seeds}")
        require(self.tasks_per_seed >= 1, f"tasks per seed must be >= 1, got {self.tasks_per_seed}")
        require(self.inner_lr is None or self.inner_lr > 0, f"inner lr must be > 0, got {self.inner_lr}")


def run_exact_solve(config: ExactSolveConfig, progress: bool = True,
                    variants: tuple[Variant, ...] = VARIANTS) -> pd.DataFrame:
    """One row per variant x inner steps x seed: errors averaged over that seed's tasks."""
    cfg = config.task
    lr = config.inner_lr or cfg.default_inner_lr
    # gradient descent on G, a quadratic with largest curvature L, diverges for steps of 2/L or more
    unstable = lr >= 2.0 / cfg.smoothness
    model = FunctionalModel(LinearRegressor(cfg.dim), squared_error_loss)
    rows = []
    seeds = range(config.seed, config.seed + config.seeds)
    total = len(seeds) * config.tasks_per_seed * len(variants) * len(config.inner_steps)
    with tqdm(total=total, desc="exact-solve", unit="meta-grad", disable=not progress) as bar:
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            tasks = []
            for _ in range(config.tasks_per_seed):
                task = sample_linear_regression_task(cfg, generator)
                theta = torch.randn(cfg.dim, generator=generator, dtype=torch.float64) / math.sqrt(cfg.dim)
                tasks.append((task, theta, task.exact_meta_gradient(theta, cfg.lam)))
            for variant in variants:
                for steps in config.inner_steps:
                    kwargs = dict(inner_steps=steps, inner_lr=lr, lam=cfg.lam, **variant.extra)
                    if variant.algorithm == "imaml":
                        kwargs["cg_steps"] = variant.cg_steps
                    algorithm = make_algorithm(variant.algorithm, **kwargs)
                    errors, rel_errors, records = [], [], []
                    for task, theta, exact in tasks:
                        result = algorithm.meta_gradient(model, theta, task.task)
                        error = (result.gradient - exact).norm().item()
                        errors.append(error)
                        rel_errors.append(error / exact.norm().item())
                        records.append(result.record)
                        bar.update()
                    error, rel_error = sum(errors) / len(errors), sum(rel_errors) / len(rel_errors)
                    rows.append({
                        "algorithm": variant.algorithm, "inner_steps": steps, "cg_steps": variant.cg_steps,
                        "seed": seed, "error": error, "rel_error": rel_error,
                        "label": variant.label, "tasks": len(tasks),
                        "cg_iterations": sum(r.cg_iterations for r in records) / len(records),
                        "grad_evals": records[0].grad_evals, "hvp_evals": sum(r.hvp_evals for r in records) / len(records),
                        "dim": cfg.dim, "lam": cfg.lam, "kappa": cfg.kappa,
                        "distinct_eigenvalues": cfg.distinct_eigenvalues, "inner_lr": lr,
                        "diverged": unstable or not (math.isfinite(error) and math.isfinite(rel_error)),
                    })
    return pd.DataFrame(rows, columns=COLUMNS)


def exact_solve_title(frame: pd.DataFrame) -> str:
    """The figure's title, from the problem settings recorded in the rows (older files lack them)."""
    title = "Meta-gradient accuracy on linear regression (paper Fig. 2a)"
    if "dim" not in frame.columns or frame["dim"].isna().all():
        return title
    first = frame.iloc[0]
    title += f"\nd={int(first['dim'])}, lambda={first['lam']:g}, kappa={first['kappa']:g}"
    if first["distinct_eigenvalues"]:
        title += f", {int(first['distinct_eigenvalues'])} distinct eigenvalues"
    return title


def plot_exact_solve(frame: pd.DataFrame, title: str | None = None):
    """Relative error against inner steps, log-log; the line is the mean over seeds, the band min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in frame.groupby("label", sort=False):
        stats = group.groupby("inner_steps")["rel_error"].agg(["mean", "min", "max"])
        line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=label)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inner gradient-descent steps")
    ax.set_ylabel("relative error ||g - g*|| / ||g*||  (Definition 3)")
    ax.set_title(title or "Meta-gradient accuracy on linear regression (paper Fig. 2a)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_exact_solve(config: ExactSolveConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """Run the sweep and write ``out/exact_solve.csv`` and ``out/exact_solve.png`` (each atomically)."""
    from bench.atomic import save_figure, write_csv

    frame = run_exact_solve(config, progress=progress)
    write_csv(frame, out / "exact_solve.csv")
    save_figure(plot_exact_solve(frame, exact_solve_title(frame)), out / "exact_solve.png")
    return frame
