"""Meta-training (shared outer loop for every algorithm) and evaluation on a fixed task pool.

Outer loop (paper Algorithm 1): sample a meta-batch of tasks, average their meta-gradients, take
an Adam step on theta. Reptile's "meta-gradient" is theta - phi and goes through the same Adam.
Validation runs every ``validate_every`` iterations on a fixed pool of validation tasks.
Checkpoints hold everything the run depends on (theta, Adam's state, the task sampler's random
state, the metrics so far), so ``--resume`` continues exactly where the checkpoint was written.
"""
from __future__ import annotations

import json
import math
import platform
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from algorithms import FunctionalModel, Task, cross_entropy_loss, make_algorithm
from algorithms.protocol import ConfigError, require

from .atomic import atomic_path, write_csv, write_text
from .datasets import DATASETS, network, task_source
from .machine import device_name
from .tasks import EpisodeSpec

CHECKPOINT = "checkpoint.pt"
METRICS_COLUMNS = ["iteration", "train_time_s", "tasks", "train_query_loss", "train_query_accuracy",
                   "val_accuracy", "val_ci95", "val_tasks", "tasks_per_s", "grad_evals", "hvp_evals"]


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "omniglot"
    ways: int = 5
    shots: int = 1
    queries: int = 15
    algorithm: str = "imaml"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    filters: int | None = None  # None: 64 on Omniglot, 32 on Mini-ImageNet
    meta_batch: int = 32
    meta_lr: float = 1e-3
    iterations: int = 1000
    validate_every: int = 100
    validation_tasks: int = 100
    checkpoint_every: int = 100
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    seed: int = 0
    split_seed: int = 1
    validation_seed: int = 1234
    device: str = "cpu"
    data_root: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        EpisodeSpec(self.ways, self.shots, self.queries)
        require(self.meta_batch >= 1, f"meta batch must be >= 1, got {self.meta_batch}")
        require(self.meta_lr > 0, f"meta lr must be > 0, got {self.meta_lr}")
        require(self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}")
        require(self.validate_every >= 1, f"validate every must be >= 1, got {self.validate_every}")
        require(self.validation_tasks >= 1, f"validation tasks must be >= 1, got {self.validation_tasks}")
        require(self.checkpoint_every >= 1, f"checkpoint every must be >= 1, got {self.checkpoint_every}")
        require(self.max_minutes is None or self.max_minutes > 0, f"max minutes must be > 0, got {self.max_minutes}")
        make_algorithm(self.algorithm, **self.hyperparameters)  # validates the hyperparameters

    @property
    def spec(self) -> EpisodeSpec:
        return EpisodeSpec(self.ways, self.shots, self.queries)


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, then raise it: no checkpoint sees half an update."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def mean_and_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval, 1.96 s / sqrt(n)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(variance / n)


def evaluate(algorithm, model: FunctionalModel, theta: torch.Tensor, tasks: Iterable[Task], device: torch.device,
             count: int, progress: bool = False, desc: str = "evaluate") -> tuple[float, float, int, float]:
    """Adapt to each task's support set from theta, score the query set.

    Returns the mean query accuracy, its 95% CI half-width, the number of tasks, and the mean support
    loss after adaptation (how well the inner solver did its job)."""
    accuracies, support_losses = [], []
    for task in tqdm(tasks, total=count, desc=desc, unit="task", disable=not progress, leave=False):
        task = task.to(device)
        phi = algorithm.adapt(model, theta, task.support)
        with torch.no_grad():
            _, accuracy = model.loss_and_accuracy(phi, task.query)
            support_losses.append(model.loss(phi, task.support).item())
        accuracies.append(accuracy)
    mean, ci = mean_and_ci95(accuracies)
    return mean, ci, len(accuracies), sum(support_losses) / len(support_losses)


def _environment(device: torch.device) -> dict[str, Any]:
    return {
        "device_name": device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
    }


class Run:
    """One training run's folder: config.json, metrics.csv, checkpoint.pt."""

    def __init__(self, out: Path):
        self.out = out

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def read_config(self) -> tuple[TrainConfig, dict[str, Any]]:
        path = self.out / "config.json"
        if not path.is_file():
            raise ConfigError(f"{self.out} is not a training run (no config.json)")
        saved = json.loads(path.read_text())
        return TrainConfig(**saved["config"]), saved

    def write_config(self, config: TrainConfig, extra: dict[str, Any]) -> None:
        write_text(self.out / "config.json", json.dumps({"config": asdict(config), **extra}, indent=2) + "\n")


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) the run in ``out``; returns the last metrics row."""
    run = Run(out)
    if resume:
        saved_config, _ = run.read_config()
        if not run.checkpoint.is_file():
            raise ConfigError(f"nothing to resume in {out}: no {CHECKPOINT}")
        # only how long to train may change on resume
        config = TrainConfig(**{**asdict(saved_config), "iterations": config.iterations,
                                "max_minutes": config.max_minutes})
    elif (out / "config.json").exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")

    device = torch.device(config.device)
    train_source = task_source(config.dataset, "train", config.spec, config.data_root, config.split_seed)
    val_source = task_source(config.dataset, "val", config.spec, config.data_root, config.split_seed)
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    torch.manual_seed(config.seed)
    model = FunctionalModel(network(config.dataset, config.ways, config.filters).to(device), cross_entropy_loss)
    theta = model.flat_parameters().clone()
    optimizer = torch.optim.Adam([theta], lr=config.meta_lr)
    sampler = torch.Generator().manual_seed(config.seed)
    rows: list[dict[str, Any]] = []
    window: list[tuple[float, float]] = []  # (query loss, accuracy) of each task since the last validation
    start_iteration, train_time, totals = 0, 0.0, {"tasks": 0, "grad_evals": 0, "hvp_evals": 0}

    if resume:
        state = torch.load(run.checkpoint, map_location=device)
        theta.copy_(state["theta"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        start_iteration, train_time, totals, rows = state["iteration"], state["train_time_s"], state["totals"], state["rows"]
        window = state["window"]
    else:
        out.mkdir(parents=True, exist_ok=True)
        run.write_config(config, {
            "splits": {"train": train_source.split.digest, "val": val_source.split.digest},
            "parameters": model.num_parameters, **_environment(device),
        })

    def save_checkpoint(iteration: int) -> None:
        with atomic_path(run.checkpoint) as tmp:
            torch.save({"theta": theta, "optimizer": optimizer.state_dict(), "sampler": sampler.get_state(),
                        "iteration": iteration, "train_time_s": train_time, "totals": totals, "rows": rows,
                        "window": window}, tmp)
        write_csv(pd.DataFrame(rows, columns=METRICS_COLUMNS), out / "metrics.csv")

    iteration = start_iteration
    in_flight = False
    deadline = None if config.max_minutes is None else config.max_minutes * 60.0
    bar = tqdm(total=config.iterations, initial=start_iteration, desc=f"train {config.preset or config.algorithm}",
               unit="it", disable=not progress)
    try:
        while iteration < config.iterations and (deadline is None or train_time < deadline):
            # what an interrupted iteration must give back: the sampler's draws and its counts
            sampler_state, totals_before, window_before = sampler.get_state(), dict(totals), len(window)
            in_flight = True
            started = time.perf_counter()
            total = torch.zeros_like(theta)
            for _ in range(config.meta_batch):
                task = train_source.tasks.sample(sampler).to(device)
                result = algorithm.meta_gradient(model, theta, task)
                total += result.gradient
                record = result.record
                window.append((record.query_loss, record.query_accuracy))
                totals["grad_evals"] += record.grad_evals
                totals["hvp_evals"] += record.hvp_evals
            with deferred_interrupt():  # the step and its bookkeeping happen together or not at all
                optimizer.zero_grad()
                theta.grad = total / config.meta_batch
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                train_time += time.perf_counter() - started
                totals["tasks"] += config.meta_batch
                iteration += 1
                in_flight = False
            bar.update()
            bar.set_postfix(loss=f"{window[-1][0]:.3f}", acc=f"{sum(a for _, a in window) / len(window):.3f}")
            last = iteration == config.iterations or (deadline is not None and train_time >= deadline)
            if iteration % config.validate_every == 0 or last:
                val, ci, n, _ = evaluate(algorithm, model, theta, val_source.tasks.fixed_pool(
                    config.validation_tasks, config.validation_seed), device, config.validation_tasks)
                rows.append({
                    "iteration": iteration, "train_time_s": train_time, "tasks": totals["tasks"],
                    "train_query_loss": sum(loss for loss, _ in window) / len(window),
                    "train_query_accuracy": sum(a for _, a in window) / len(window),
                    "val_accuracy": val, "val_ci95": ci, "val_tasks": n,
                    "tasks_per_s": totals["tasks"] / train_time if train_time else float("nan"),
                    "grad_evals": totals["grad_evals"], "hvp_evals": totals["hvp_evals"],
                })
                window.clear()
                bar.write(f"iteration {iteration}: validation accuracy {val:.4f} ± {ci:.4f}")
            if iteration % config.checkpoint_every == 0 or last:
                save_checkpoint(iteration)
    except KeyboardInterrupt:
        if in_flight:  # drop the unfinished iteration: the resumed run redraws the same tasks
            sampler.set_state(sampler_state)
            totals.clear()
            totals.update(totals_before)
            del window[window_before:]
        save_checkpoint(iteration)
        bar.close()
        raise
    bar.close()  # the last iteration wrote its checkpoint
    return rows[-1] if rows else {}


def evaluate_run(out: Path, split: str = "test", tasks: int = 600, seed: int = 0, device: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's last checkpoint on a fixed pool of ``tasks`` tasks; writes ``eval.json``."""
    run = Run(out)
    config, saved = run.read_config()
    if not run.checkpoint.is_file():
        raise ConfigError(f"{out} has no {CHECKPOINT} to evaluate")
    require(tasks >= 1, f"tasks must be >= 1, got {tasks}")
    require(split in ("train", "val", "test"), f"split must be train, val or test, got {split!r}")
    dev = torch.device(device or config.device)
    state = torch.load(run.checkpoint, map_location=dev)
    source = task_source(config.dataset, split, config.spec, config.data_root, config.split_seed)
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    model = FunctionalModel(network(config.dataset, config.ways, config.filters).to(dev), cross_entropy_loss)
    started = time.perf_counter()
    accuracy, ci95, n, support_loss = evaluate(algorithm, model, state["theta"].to(dev), source.tasks.fixed_pool(tasks, seed), dev,
                                 tasks, progress=progress, desc=f"eval {split}")
    result = {
        "accuracy": accuracy, "ci95": ci95, "tasks": n, "split": split, "seed": seed,
        "support_loss_after_adaptation": support_loss,
        "split_digest": source.split.digest, "iteration": state["iteration"], "train_time_s": state["train_time_s"],
        "eval_time_s": time.perf_counter() - started, "preset": config.preset, "algorithm": config.algorithm,
        "dataset": config.dataset, "ways": config.ways, "shots": config.shots, **_environment(dev),
    }
    write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    return result
