"""`metagrad spectrum`: is iMAML's linear system positive definite at a run's meta-parameters?

For each task of a fixed pool: adapt phi from theta with the run's own inner loop, then estimate the
extreme eigenvalues of H, the support loss's Hessian at phi, by Lanczos with Hessian-vector products
(double backward, float64). The paper's system I + H/lambda is positive definite exactly when
lambda_min(H) > -lambda; ``ritz_below_minus_lam`` counts Ritz values below -lambda, a lower bound on how
many eigenvalues are (Cauchy interlacing: the k-th smallest Ritz value is at least the k-th eigenvalue).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from algorithms import HessianOperator, lanczos_ritz_values
from algorithms.protocol import require

from .datasets import task_source
from .train import load_trained

COLUMNS = ["task", "split", "iteration", "lam", "lambda_min", "lambda_max", "system_min_eigenvalue", "indefinite",
           "ritz_below_minus_lam", "lanczos_steps", "support_loss", "algorithm", "preset"]


@dataclass(frozen=True)
class SpectrumConfig:
    tasks: int = 20
    steps: int = 40  # Lanczos steps per task
    split: str = "train"
    seed: int = 0  # the task pool's, and the Lanczos start vectors'
    at_init: bool = False  # the run's initial meta-parameters (same seed as training) instead of its checkpoint

    def __post_init__(self) -> None:
        require(self.tasks >= 1, f"tasks must be >= 1, got {self.tasks}")
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(self.split in ("train", "val", "test"), f"split must be train, val or test, got {self.split!r}")


def run_spectrum(run_dir: Path, config: SpectrumConfig, progress: bool = True) -> pd.DataFrame:
    trained = load_trained(run_dir, "cpu", torch.float64, at_init=config.at_init)
    train_config, algorithm, model, theta, iteration = (trained.config, trained.algorithm, trained.model,
                                                        trained.theta, trained.iteration)
    lam = float(getattr(algorithm, "lam", 0.0))
    source = task_source(train_config.dataset, config.split, train_config.spec, train_config.data_root,
                         train_config.split_seed, train_config.omniglot_split)
    rows = []
    pool = source.tasks.fixed_pool(config.tasks, config.seed, torch.float64)
    for index, task in enumerate(tqdm(pool, total=config.tasks, desc="spectrum", unit="task", disable=not progress)):
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
            "lanczos_steps": len(ritz), "support_loss": hessian.value.item(), "algorithm": train_config.algorithm,
            "preset": train_config.preset,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def spectrum_path(run_dir: Path, config: SpectrumConfig) -> Path:
    """Where ``metagrad spectrum`` writes by default: beside the run's other files."""
    return run_dir / ("spectrum-init.csv" if config.at_init else "spectrum.csv")


def write_spectrum(run_dir: Path, config: SpectrumConfig, out: Path | None = None, progress: bool = True) -> pd.DataFrame:
    from .atomic import write_csv

    frame = run_spectrum(run_dir, config, progress=progress)
    write_csv(frame, out or spectrum_path(run_dir, config))
    return frame
