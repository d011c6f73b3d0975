"""Few-shot accuracy on a fixed pool of tasks: during training (validation) and from a run's checkpoint
(``metagrad eval``, writing eval.json)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from metagrad.algorithms.batched import query_scores
from metagrad.algorithms.meta_parameters import initial_meta_parameters, network_part
from metagrad.algorithms.registry import batched_adapt, check_returned
from metagrad.bench.atomic import write_text
from metagrad.bench.data.tasks import ImageClassTasks
from metagrad.bench.measure.machine import run_environment
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.config import EvalConfig, TrainConfig
from metagrad.bench.training.distributed import ProcessGroup, process_group
from metagrad.bench.training.engines import default_engine
from metagrad.bench.training.run_folder import Run
from metagrad.errors import ConfigError, DivergenceError, require


def mean_and_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval, 1.96 s / sqrt(n)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(variance / n)


def evaluate(algorithm, model: FunctionalModel, theta: torch.Tensor, tasks: ImageClassTasks, count: int, seed: int,
             engine: str, chunk: int, dtype: torch.dtype, progress: bool = False,
             desc: str = "evaluate", group: ProcessGroup | None = None) -> tuple[float, float, int, float]:
    """Adapt to each task of the fixed pool (``count`` tasks, ``seed``) from theta, score its query set.

    The batched engine adapts ``chunk`` tasks at a time; both engines score the same tasks. Under several
    processes each scores every world-size-th task (or chunk), and the scores are gathered in pool
    order, so the result is the one process's. Returns the mean query accuracy, its 95% CI half-width,
    the number of tasks, and the mean support loss after adaptation (how well the inner solver did its job)."""
    group = group or ProcessGroup()
    device = theta.device
    scores: list[tuple[int, float, float]] = []  # (index in the pool, query accuracy, support loss)
    bar = tqdm(total=count, desc=desc, unit="task", disable=not progress or not group.is_main, leave=False)
    if engine == "batched":
        for number, batch in enumerate(tasks.fixed_pool_batches(count, seed, chunk, dtype)):
            if number % group.world_size == group.rank:
                batch = batch.to(device)
                phi = check_returned(algorithm, "batched_adapt", batched_adapt(algorithm, model, theta, batch),
                                     network_part(model, theta), batch.size)
                accuracy, _, support_loss = query_scores(model, phi, batch)
                scores += [(number * chunk + i, a, s)
                           for i, (a, s) in enumerate(zip(accuracy.tolist(), support_loss.tolist()))]
            bar.update(batch.size)
    else:
        for index, task in enumerate(tasks.fixed_pool(count, seed, dtype)):
            if index % group.world_size == group.rank:
                task = task.to(device)
                phi = check_returned(algorithm, "adapt", algorithm.adapt(model, theta, task.support),
                                     network_part(model, theta))
                with torch.no_grad():
                    _, accuracy = model.loss_and_accuracy(phi, task.query)
                    scores.append((index, accuracy, model.loss(phi, task.support).item()))
            bar.update()
    bar.close()
    scores = sorted(group.gather(scores))
    accuracies = [accuracy for _, accuracy, _ in scores]
    mean, ci = mean_and_ci95(accuracies)
    return mean, ci, len(accuracies), sum(loss for _, _, loss in scores) / len(scores)


def build_model(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> FunctionalModel:
    """The run's network at its initialization: drawn from the run's seed, as ``train`` draws it."""
    torch.manual_seed(config.seed)
    shape = config.image_shape
    return FunctionalModel(network(config.dataset, config.ways, config.filters, config.channels_last, shape.channels,
                                   shape.size).to(device=device, dtype=dtype), cross_entropy_loss)


@dataclass(frozen=True)
class TrainedRun:
    """A run's algorithm, network and meta-parameters, as ``load_trained`` rebuilds them."""

    config: TrainConfig
    algorithm: Any
    model: FunctionalModel
    theta: torch.Tensor
    iteration: int
    state: dict[str, Any]  # the checkpoint's contents (empty at initialization)


def load_trained(out: Path, device: str | None = None, dtype: torch.dtype | None = None,
                 at_init: bool = False) -> TrainedRun:
    """The run in ``out`` at its checkpoint, or with ``at_init`` at the initialization ``train`` drew (same
    seed), on ``device`` (default the run's) in ``dtype`` (default the run's). Refuses non-finite parameters."""
    run = Run(out)
    config, _ = run.read_config()
    dev = torch.device(device or config.device)
    dtype = dtype or getattr(torch, config.dtype)
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    model = build_model(config, dev, dtype)
    if at_init:
        return TrainedRun(config, algorithm, model, initial_meta_parameters(algorithm, model), 0, {})
    state = run.load_checkpoint(dev)
    theta = state["theta"].to(device=dev, dtype=dtype)
    if not bool(torch.isfinite(theta).all()):
        raise DivergenceError(f"{run.checkpoint} holds non-finite parameters: the run diverged")
    return TrainedRun(config, algorithm, model, theta, int(state["iteration"]), state)


def _check_moved_split(config: TrainConfig, source: Any, split: str, recorded: dict[str, str], root: str) -> None:
    """A data set found at a new root must split into the classes the run recorded (its train and validation
    splits' digests): the evaluated split's own where the run has it, else the validation split's."""
    against = split if split in recorded else "val"
    if against not in recorded:
        return
    digest = (source if against == split else config.task_source("val")).split.digest
    require(digest == recorded[against], f"--data-root {root}: its {against} split holds other classes than the run "
            f"trained with (digest {digest}, the run's {recorded[against]}); it is not the run's data set")


def evaluate_run(out: Path, evaluation: EvalConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's last checkpoint on a fixed pool of tasks (``evaluation``, default ``EvalConfig()``); writes
    ``eval.json``."""
    evaluation = evaluation or EvalConfig()
    split, tasks, seed, device = evaluation.split, evaluation.tasks, evaluation.seed, evaluation.device
    config, record = Run(out).read_config()
    root = None if evaluation.data_root is None else str(Path(evaluation.data_root).expanduser().resolve())
    if root is None and config.data_root is not None and not Path(config.data_root).is_dir():
        raise ConfigError(f"the run's data root {config.data_root} is not a folder: give --data-root where its data "
                          "set is now")
    with process_group(device or config.device) as group:
        trained = load_trained(out, str(group.device(device or config.device)))
        config, state, dev = trained.config, trained.state, trained.theta.device
        config = config if root is None else replace(config, data_root=root)
        engine = evaluation.engine or default_engine(str(dev), trained.algorithm, config.spec, evaluation=True)
        source = config.task_source(split)
        if root is not None:
            _check_moved_split(config, source, split, record.get("splits", {}), root)
        started = time.perf_counter()
        accuracy, ci95, n, support_loss = evaluate(trained.algorithm, trained.model, trained.theta, source.tasks, tasks,
                                                   seed, engine, config.meta_batch, trained.theta.dtype,
                                                   progress=progress, desc=f"eval {split}", group=group)
        result = {
            "accuracy": accuracy, "ci95": ci95, "tasks": n, "split": split, "seed": seed,
            "support_loss_after_adaptation": support_loss,
            "split_digest": source.split.digest, "iteration": state["iteration"], "train_time_s": state["train_time_s"],
            "eval_time_s": time.perf_counter() - started, "preset": config.preset, "algorithm": config.algorithm,
            "dataset": config.dataset, "ways": config.ways, "shots": config.shots, "engine": engine,
            **run_environment(dev), **group.describe(),
        }
        if group.is_main:
            write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    return result
