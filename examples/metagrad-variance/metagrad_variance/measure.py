"""The measurement: per-task meta-gradients of every algorithm at one theta, and their spread (with respect to the
network's initialization, for every algorithm alike)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from metagrad import (
    FunctionalModel,
    LinearRegressionConfig,
    LinearRegressor,
    algorithm_label,
    algorithm_names,
    hyperparameter_defaults,
    initial_meta_parameters,
    make_algorithm,
    network_part,
    option,
    require,
    sample_linear_regression_task,
    save_figure,
    squared_error_loss,
    write_csv,
)

COLUMNS = ["algorithm", "label", "tasks", "inner_steps", "mean_norm", "spread", "relative_spread", "dim", "lam",
           "kappa", "seed"]


@dataclass(frozen=True)
class VarianceConfig:
    task: LinearRegressionConfig = option(default_factory=LinearRegressionConfig, nested=True)
    tasks: int = option(32, "tasks whose meta-gradients are compared", at_most=100_000)
    inner_steps: int = option(20, "inner steps, for the algorithms that take them", at_most=100_000)
    seed: int = option(0, "seed of theta and the tasks")
    algorithms: tuple[str, ...] | None = option(None, "comma-separated registered algorithms",
                                                shown="every registered algorithm", choices=algorithm_names)

    def __post_init__(self) -> None:
        require(self.tasks >= 2, f"the spread needs at least 2 tasks, got --tasks {self.tasks}")
        require(self.inner_steps >= 1, f"inner steps must be >= 1, got {self.inner_steps}")
        unknown = sorted(set(self.algorithms or ()) - set(algorithm_names()))
        require(not unknown, f"unknown algorithm {', '.join(unknown)}; choose from {', '.join(algorithm_names())}")


def measure_variance(config: VarianceConfig) -> pd.DataFrame:
    """One row per algorithm: the same theta and the same tasks for each."""
    cfg = config.task
    generator = torch.Generator().manual_seed(config.seed)
    theta = torch.randn(cfg.dim, generator=generator, dtype=torch.float64) / math.sqrt(cfg.dim)
    tasks = [sample_linear_regression_task(cfg, generator).task for _ in range(config.tasks)]
    model = FunctionalModel(LinearRegressor(cfg.dim), squared_error_loss)
    settings = {"inner_steps": config.inner_steps, "inner_lr": cfg.default_inner_lr, "lam": cfg.lam}
    rows = []
    for name in config.algorithms or algorithm_names():
        taken = hyperparameter_defaults(name)
        algorithm = make_algorithm(name, **{key: value for key, value in settings.items() if key in taken})
        # the network's part: an algorithm that learns step sizes or lambda starts them at their initial values
        full = initial_meta_parameters(algorithm, model, theta)
        gradients = torch.stack([network_part(model, algorithm.meta_gradient(model, full, task).gradient)
                                 for task in tasks])
        mean = gradients.mean(0)
        spread = (gradients - mean).pow(2).sum(1).mean().item()
        rows.append({"algorithm": name, "label": algorithm_label(name), "tasks": config.tasks,
                     "inner_steps": config.inner_steps if "inner_steps" in taken else 0,
                     "mean_norm": mean.norm().item(), "spread": spread,
                     "relative_spread": spread / mean.pow(2).sum().item(), "dim": cfg.dim, "lam": cfg.lam,
                     "kappa": cfg.kappa, "seed": config.seed})
    return pd.DataFrame(rows, columns=COLUMNS)


def write_variance(config: VarianceConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """``out/variance.csv`` and ``out/variance.png``, each written whole or not at all."""
    from metagrad_variance.render import plot_variance

    frame = measure_variance(config)
    write_csv(frame, Path(out) / "variance.csv")
    save_figure(plot_variance(frame, "variance"), Path(out) / "variance.png")
    return frame
