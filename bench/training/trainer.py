"""Meta-training (shared outer loop for every algorithm) and evaluation on a fixed task pool.

Outer loop (paper Algorithm 1): sample a meta-batch of tasks, average their meta-gradients, take
an Adam step on theta. Reptile's "meta-gradient" is theta - phi and goes through the same Adam.
Validation runs every ``validate_every`` iterations on a fixed pool of validation tasks.
Checkpoints hold everything the run depends on (theta, Adam's state, the host sampler's random
state, the metrics so far), so ``--resume`` continues exactly where the checkpoint was written. The
meta-training tasks come from the host sampler (``ImageClassTasks``, a ``torch.Generator``) or the
device sampler (``DeviceTasks``: a function of the seed and the iteration number, drawn on the device
inside the step); validation and evaluation pools always from the host sampler.

Two engines compute the meta-batch's meta-gradients from one task stream: ``per-task`` (the
reference: ``meta_gradient`` task after task) and ``batched`` (``batched_meta_gradient``: the whole
meta-batch at once, on the stacked network or under ``vmap``). Their runs are the same up to floating-point summation order. Diagnostics
accumulate as device tensors and are read once per logged step, so the batched engine's iteration
never waits on the host.
"""
from __future__ import annotations

import json
import math
import platform
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
from algorithms.batched import query_scores
from algorithms.protocol import ConfigError, require
from bench.atomic import atomic_path, write_csv, write_text
from bench.data.device_tasks import DeviceTasks
from bench.data.omniglot import SPLIT_PROTOCOLS
from bench.data.sources import DATASETS, task_source
from bench.data.tasks import EpisodeSpec, ImageClassTasks
from bench.measure.machine import device_name
from bench.nets.convnet import network
from bench.training.distributed import ProcessGroup, StopRequests, process_group
from bench.training.engines import ENGINES, SAMPLERS, default_engine, default_sampler
from bench.training.steps import Window, training_step

CHECKPOINT = "checkpoint.pt"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
STOP_SIGNALS = StopRequests.SIGNALS  # Ctrl-C and SIGTERM, in one process or several
OUTER_OPTIMIZERS = ("adam", "sgd")
METRICS_COLUMNS = ["iteration", "train_time_s", "tasks", "train_query_loss", "train_query_accuracy",
                   "val_accuracy", "val_ci95", "val_tasks", "tasks_per_s", "grad_evals", "hvp_evals",
                   "cg_negative_curvature_fraction", "cg_iterations_mean", "cg_residual_mean",
                   "inner_negative_curvature_fraction", "engine", "world_size"]


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
    outer_optimizer: str = "adam"  # the shared Adam, or "sgd": theta <- theta - meta_lr * mean meta-gradient
    meta_lr_final: float | None = None  # anneal the meta step size linearly to this at `iterations` (Nichol et al.)
    train_shots: int | None = None  # shots per class of the meta-training tasks (None: `shots`; Nichol et al.'s Reptile: 10)
    train_queries: int | None = None  # queries per class of the meta-training tasks (None: `queries`)
    iterations: int = 1000
    validate_every: int = 100
    validation_tasks: int = 100
    checkpoint_every: int = 100
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    seed: int = 0
    split_seed: int = 1
    omniglot_split: str = "random"  # which classes are train / val / test: "random" (the paper's) or "lake"
    validation_seed: int = 1234
    device: str = "cpu"
    data_root: str | None = None
    preset: str | None = None
    engine: str = "per-task"  # per-task (the reference) or batched (the meta-batch at once)
    cuda_graph: bool = False  # batched engine on CUDA: capture the iteration once, replay it (bench/training/steps.py)
    compile: bool = False  # batched engine: the iteration through torch.compile instead (bench/training/steps.py)
    channels_last: bool = False  # batched engine: the stacked network's activations channels last (bench/nets/convnet.py)
    sampler: str = "host"  # who draws the meta-training tasks: host (torch.Generator) or device (bench/data/device_tasks.py)
    dtype: str = "float32"  # float64 for the tests that compare engines and runs exactly

    def __post_init__(self) -> None:
        require(self.omniglot_split in SPLIT_PROTOCOLS,
                f"omniglot split must be one of {', '.join(SPLIT_PROTOCOLS)}, got {self.omniglot_split!r}")
        require(self.omniglot_split == "random" or self.dataset == "omniglot",
                f"the {self.omniglot_split!r} split is Omniglot's; {self.dataset} has its own fixed split")
        require(self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        require(not self.compile or (self.engine == "batched" and not self.cuda_graph),
                "--compile needs the batched engine, and is instead of --cuda-graph, not beside it")
        require(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        require(not self.channels_last or self.engine == "batched",
                "--channels-last lays out the batched engine's stacked network; the per-task engine has none")
        require(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        require(not self.cuda_graph or (self.engine == "batched" and self.device.startswith("cuda")),
                "CUDA graphs need the batched engine on a CUDA device")
        require(self.filters is None or self.filters >= 1, f"filters must be >= 1, got {self.filters}")
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        EpisodeSpec(self.ways, self.shots, self.queries)
        require(self.meta_batch >= 1, f"meta batch must be >= 1, got {self.meta_batch}")
        require(self.meta_lr > 0, f"meta lr must be > 0, got {self.meta_lr}")
        require(self.outer_optimizer in OUTER_OPTIMIZERS,
                f"outer optimizer must be one of {', '.join(OUTER_OPTIMIZERS)}, got {self.outer_optimizer!r}")
        require(self.meta_lr_final is None or self.meta_lr_final >= 0,
                f"meta lr final must be >= 0, got {self.meta_lr_final}")
        require(not self.cuda_graph or (self.outer_optimizer == "adam" and self.meta_lr_final is None),
                "CUDA graphs need the Adam outer step with a constant meta lr")
        EpisodeSpec(self.ways, self.train_shots or self.shots, self.train_queries or self.queries)
        require(self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}")
        require(self.validate_every >= 1, f"validate every must be >= 1, got {self.validate_every}")
        require(self.validation_tasks >= 1, f"validation tasks must be >= 1, got {self.validation_tasks}")
        require(self.checkpoint_every >= 1, f"checkpoint every must be >= 1, got {self.checkpoint_every}")
        require(self.max_minutes is None or self.max_minutes > 0, f"max minutes must be > 0, got {self.max_minutes}")
        make_algorithm(self.algorithm, **self.hyperparameters)  # validates the hyperparameters

    @property
    def spec(self) -> EpisodeSpec:
        """The episodes of validation and evaluation."""
        return EpisodeSpec(self.ways, self.shots, self.queries)

    @property
    def train_spec(self) -> EpisodeSpec:
        """The episodes of meta-training."""
        return EpisodeSpec(self.ways, self.train_shots or self.shots, self.train_queries or self.queries)

    def meta_lr_at(self, iteration: int) -> float:
        """The meta step size of iteration ``iteration`` (0-based): constant, or annealed linearly from
        ``meta_lr`` at 0 to ``meta_lr_final`` at ``iterations`` (Nichol et al.'s schedule)."""
        if self.meta_lr_final is None:
            return self.meta_lr
        done = iteration / self.iterations
        return done * self.meta_lr_final + (1 - done) * self.meta_lr


def train_config(preset_name: str | None = None, hyperparameters: dict[str, Any] | None = None,
                 **fields: Any) -> TrainConfig:
    """What ``metagrad train`` runs: a preset (or none) with the given fields (None: keep the preset's)
    and algorithm hyperparameters laid over it; the engine and the sampler, unless given, the ones faster on
    the device."""
    from bench.training.presets import preset

    base = preset(preset_name) if preset_name else {}
    merged = {**base, **{name: value for name, value in fields.items() if value is not None}}
    merged["hyperparameters"] = {**base.get("hyperparameters", {}), **(hyperparameters or {})}
    merged.setdefault("sampler", default_sampler(merged.get("device", "cpu")))
    if "engine" in merged:
        return TrainConfig(**merged)
    # the default engine depends on the training tasks' size, which the config settles (its defaults included);
    # an option only the batched engine has asks for it
    config = TrainConfig(**merged, engine="batched")
    if config.cuda_graph or config.compile or config.channels_last:
        return config
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    return replace(config, engine=default_engine(config.device, algorithm, config.train_spec))


def resume_config(out: Path, iterations: int | None = None, max_minutes: float | None = None,
                  engine: str | None = None, cuda_graph: bool = False, compile: bool = False,
                  channels_last: bool = False) -> TrainConfig:
    """What ``metagrad train --resume`` runs: the run in ``out`` with its own settings, only how long it trains
    (``iterations``, ``max_minutes``: None keeps the run's) and how its iterations are computed (the engine,
    None keeping the run's; graph capture or compilation, the memory layout) changed."""
    saved, _ = Run(out).read_config()
    limits = {name: value for name, value in (("iterations", iterations), ("max_minutes", max_minutes))
              if value is not None}
    return replace(saved, **limits, engine=engine or saved.engine, cuda_graph=cuda_graph, compile=compile,
                   channels_last=channels_last)


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then raise KeyboardInterrupt: no checkpoint sees half
    an update."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda n, frame: received.append(n)) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or torchrun's stop) raises KeyboardInterrupt, as Ctrl-C does, so that the run
    writes its checkpoint before it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
                phi = algorithm.batched_adapt(model, theta, batch)
                accuracy, _, support_loss = query_scores(model, phi, batch)
                scores += [(number * chunk + i, a, s)
                           for i, (a, s) in enumerate(zip(accuracy.tolist(), support_loss.tolist()))]
            bar.update(batch.size)
    else:
        for index, task in enumerate(tasks.fixed_pool(count, seed, dtype)):
            if index % group.world_size == group.rank:
                task = task.to(device)
                phi = algorithm.adapt(model, theta, task.support)
                with torch.no_grad():
                    _, accuracy = model.loss_and_accuracy(phi, task.query)
                    scores.append((index, accuracy, model.loss(phi, task.support).item()))
            bar.update()
    bar.close()
    scores = sorted(group.gather(scores))
    accuracies = [accuracy for _, accuracy, _ in scores]
    mean, ci = mean_and_ci95(accuracies)
    return mean, ci, len(accuracies), sum(loss for _, _, loss in scores) / len(scores)


# The query loss after adaptation beyond which the inner loop has blown up: a hundred times a uniform guess's
# ln(N). Healthy runs stay within a few times ln(N); an inner step size far past stability reaches 1e5 and
# more while staying finite (measured: first-order MAML with inner_lr 1e6 at 6.8e5 after 10 iterations).
BLOWN_UP_LOSS_FACTOR = 100.0
# How many validation tasks, all at exactly 1/N, prove a collapsed network. A network that looks at its input
# can score exactly 1/N by chance: 5-way with 2 queries a class (10 images), Binomial(10, 1/5) gives 2 right
# with probability 0.30, so 2 tasks do it 9% of the time (a 4-filter test run did, on an Intel CPU whose
# rounding differs from the AMD one it was written on); 10 tasks 6e-6.
COLLAPSE_EVIDENCE_TASKS = 10


def stuck(train_query_loss: float, val_accuracy: float, val_ci95: float, val_tasks: int, ways: int) -> str | None:
    """Why a run whose numbers are finite has nonetheless diverged, or None: its query loss after adaptation
    is a hundred times a uniform guess's, or every one of at least COLLAPSE_EVIDENCE_TASKS validation tasks
    scored exactly 1/N (the adapted network predicts the same class for every image, which a network that
    looks at its input does not do on that many tasks)."""
    if not math.isfinite(train_query_loss):
        return "the query loss is not finite"
    if train_query_loss > BLOWN_UP_LOSS_FACTOR * math.log(ways):
        return (f"the query loss after adaptation is {train_query_loss:.3g}, over {BLOWN_UP_LOSS_FACTOR:g} times a "
                f"uniform guess's ln({ways}) = {math.log(ways):.3g}")
    if val_tasks >= COLLAPSE_EVIDENCE_TASKS and val_ci95 == 0.0 and abs(val_accuracy - 1.0 / ways) < 1e-12:
        return (f"every one of the {val_tasks} validation tasks scored exactly chance (1/{ways}): the adapted "
                "network predicts the same class for every image")
    return None


def _environment(device: torch.device) -> dict[str, Any]:
    return {
        "device_name": device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
    }


CHECKPOINT_KEYS = ("theta", "optimizer", "sampler", "iteration", "train_time_s", "tasks", "window", "rows")


class Run:
    """One training run's folder: config.json, metrics.csv, checkpoint.pt."""

    def __init__(self, out: Path):
        self.out = out

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def read_config(self) -> tuple[TrainConfig, dict[str, Any]]:
        path = self.out / "config.json"
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} is a file, not a run folder")
        if not path.is_file():
            raise ConfigError(f"{self.out} is not a training run (no config.json)")
        try:
            saved = json.loads(path.read_text())
            return TrainConfig(**saved["config"]), saved
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is corrupt or not a metagrad config ({type(error).__name__})") from None

    def write_config(self, config: TrainConfig, extra: dict[str, Any]) -> None:
        write_text(self.out / "config.json", json.dumps({"config": asdict(config), **extra}, indent=2) + "\n")

    def load_checkpoint(self, device: torch.device) -> dict[str, Any]:
        """The checkpoint's contents, or a one-line error naming the file when it is not a whole one."""
        if not self.checkpoint.is_file():
            raise ConfigError(f"{self.out} has no {CHECKPOINT}")
        try:
            state = torch.load(self.checkpoint, map_location=device)
        except Exception as error:  # torch.load raises many kinds on a truncated or foreign file
            raise ConfigError(f"{self.checkpoint} is truncated or not a metagrad checkpoint "
                              f"({type(error).__name__})") from None
        if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
            raise ConfigError(f"{self.checkpoint} is not a checkpoint of this metagrad version (missing keys)")
        return state


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) the run in ``out``; returns the last metrics row.

    Under ``torchrun`` (several processes) the meta-batch is shared out (``bench.training.distributed``), and
    rank 0 alone writes files and shows progress."""
    with process_group(config.device) as group:
        return _train(config, out, resume, progress, group)


def _train(config: TrainConfig, out: Path, resume: bool, progress: bool, group: ProcessGroup) -> dict[str, Any]:
    run = Run(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run")
    if resume:
        saved_config, saved = run.read_config()
        # only how long to train, and which engine computes it, may change on resume
        config = TrainConfig(**{**asdict(saved_config), "iterations": config.iterations,
                                "max_minutes": config.max_minutes, "engine": config.engine,
                                "cuda_graph": config.cuda_graph, "compile": config.compile})
    elif (out / "config.json").exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    require(config.meta_batch >= group.world_size,
            f"the meta-batch ({config.meta_batch} tasks) is smaller than the number of processes ({group.world_size})")
    require(not ((config.cuda_graph or config.compile) and group.active),
            "--cuda-graph and --compile under several processes are not supported yet")

    device = group.device(config.device)
    dtype = DTYPES[config.dtype]
    state = run.load_checkpoint(device) if resume else None
    train_source = task_source(config.dataset, "train", config.train_spec, config.data_root, config.split_seed,
                               config.omniglot_split)
    val_source = task_source(config.dataset, "val", config.spec, config.data_root, config.split_seed,
                             config.omniglot_split)
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    torch.manual_seed(config.seed)
    model = FunctionalModel(network(config.dataset, config.ways, config.filters, config.channels_last)
                            .to(device=device, dtype=dtype), cross_entropy_loss)
    theta = model.flat_parameters().clone()
    if config.outer_optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD([theta], lr=config.meta_lr)
    else:
        optimizer = torch.optim.Adam([theta], lr=config.meta_lr, capturable=config.cuda_graph)
    generator = torch.Generator().manual_seed(config.seed)  # the host sampler's; the device sampler has no state
    window = Window(device)
    rows: list[dict[str, Any]] = []
    start_iteration, train_time, tasks_done = 0, 0.0, 0
    launch = {"iteration": 0, "engine": config.engine, **group.describe()}
    group.barrier()  # every process has checked the folder before rank 0 writes to it

    if state is not None:
        theta.copy_(state["theta"])
        optimizer.load_state_dict(state["optimizer"])
        if config.cuda_graph:  # a checkpoint written without graphs resumes with them, and the reverse
            optimizer.param_groups[0]["capturable"] = True
            for values in optimizer.state.values():
                values["step"] = values["step"].to(device=device, dtype=torch.float32)
        generator.set_state(state["sampler"].cpu())  # map_location moved it to the run's device
        start_iteration, train_time, tasks_done, rows = (state["iteration"], state["train_time_s"], state["tasks"],
                                                         state["rows"])
        if group.is_main:  # rank 0 holds the window's totals; the others add theirs to it
            window.load(state["window"])
            launch["iteration"] = start_iteration
            kept = {key: value for key, value in saved.items() if key != "config"}
            # the limits in force from now on, so that the folder says how long it trains and a plain --resume
            # keeps them; the engine of each launch is in its record
            limits = replace(saved_config, iterations=config.iterations, max_minutes=config.max_minutes)
            run.write_config(limits, {**kept, "launches": [*saved.get("launches", []), launch]})
    elif group.is_main:
        out.mkdir(parents=True, exist_ok=True)
        run.write_config(config, {
            "splits": {"train": train_source.split.digest, "val": val_source.split.digest},
            "parameters": model.num_parameters, **_environment(device), **group.describe(), "launches": [launch],
        })

    def diverged(what: str) -> ConfigError:
        return ConfigError(f"training diverged: {what}; {run.checkpoint} keeps the last finite state (iteration "
                           f"{last_saved[0]}). Try a smaller inner_lr or meta_lr")

    def save_checkpoint(iteration: int) -> None:
        if group.active:
            window.collect(group)  # rank 0's window now counts every process's tasks
        if not bool(torch.isfinite(theta).all()):
            raise diverged(f"the meta-parameters are not finite at iteration {iteration}")
        if group.is_main:
            with atomic_path(run.checkpoint) as tmp:
                torch.save({"theta": theta, "optimizer": optimizer.state_dict(), "sampler": generator.get_state(),
                            "iteration": iteration, "train_time_s": train_time, "tasks": tasks_done, "rows": rows,
                            "window": window.state()}, tmp)
            write_csv(pd.DataFrame(rows, columns=METRICS_COLUMNS), out / "metrics.csv")
        last_saved[0] = iteration

    share = group.share(config.meta_batch)
    source = None
    if config.sampler == "device":  # the step draws each meta-batch itself, on the device
        source = DeviceTasks(train_source.tasks, device, dtype, config.seed, config.meta_batch,
                             share if group.active else None)
        source.seek(start_iteration)
    step = training_step(config.engine, algorithm, model, theta, optimizer, window, graph=config.cuda_graph,
                         group=group, meta_batch=config.meta_batch, source=source, compile=config.compile)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    last_saved = [start_iteration]
    if state is None:  # a run is resumable, and has a finite state to fall back on, from its first moment
        save_checkpoint(0)
    iteration = start_iteration
    in_flight = False
    deadline = None if config.max_minutes is None else config.max_minutes * 60.0
    out_of_time = deadline is not None and train_time >= deadline
    bar = tqdm(total=config.iterations, initial=start_iteration, desc=f"train {config.preset or config.algorithm}",
               unit="it", disable=not progress or not group.is_main)
    # Several processes agree on stopping (signals only set a flag); one process stops at once on Ctrl-C or
    # SIGTERM, keeping the iteration in progress out of the checkpoint.
    stop_requests = StopRequests() if group.active else None
    synchronize()
    # training time is counted between synchronizations, validation and checkpoints excluded
    segment_start: float | None = time.perf_counter()
    try:
        with stop_requests or terminate_as_interrupt():
            while iteration < config.iterations and not out_of_time:
                # what an interrupted iteration must give back: the sampler's draws (the window changes only at
                # the end of a step, which runs whole or not at all)
                sampler_state = generator.get_state()
                in_flight = True
                batch = None if source is not None else train_source.tasks.sample_batch(generator, config.meta_batch, dtype)
                if config.meta_lr_final is not None:
                    optimizer.param_groups[0]["lr"] = config.meta_lr_at(iteration)
                with nullcontext() if group.active else deferred_interrupt():
                    # the step and its bookkeeping happen together or not at all (the device sampler's
                    # counter advances inside the step)
                    step(batch.select(share) if group.active and batch is not None else batch)
                    tasks_done += config.meta_batch
                    iteration += 1
                    in_flight = False
                bar.update()
                elapsed = train_time + time.perf_counter() - segment_start
                interrupted, out_of_time = group.any(stop_requests is not None and stop_requests.requested,
                                                     deadline is not None and elapsed >= deadline)
                last = iteration == config.iterations or out_of_time
                log = iteration % config.validate_every == 0 or last
                if log or iteration % config.checkpoint_every == 0:
                    synchronize()
                    train_time += time.perf_counter() - segment_start
                    segment_start = None
                if log:
                    means, work = window.collect(group)
                    if not math.isfinite(means["train_query_loss"]):
                        raise diverged(f"the query loss is not finite in the iterations up to {iteration}")
                    val, ci, n, _ = evaluate(algorithm, model, theta, val_source.tasks, config.validation_tasks,
                                             config.validation_seed, config.engine, config.meta_batch, dtype,
                                             group=group)
                    reason = stuck(means["train_query_loss"], val, ci, n, config.ways)
                    if reason:
                        raise diverged(f"{reason}, at iteration {iteration}")
                    rows.append({
                        "iteration": iteration, "train_time_s": train_time, "tasks": tasks_done,
                        "train_query_loss": means["train_query_loss"],
                        "train_query_accuracy": means["train_query_accuracy"],
                        "val_accuracy": val, "val_ci95": ci, "val_tasks": n,
                        "tasks_per_s": tasks_done / train_time if train_time else float("nan"),
                        **work, **{k: v for k, v in means.items() if not k.startswith("train_")},
                        "engine": config.engine, "world_size": group.world_size,
                    })
                    window.clear()
                    bar.set_postfix(loss=f"{means['train_query_loss']:.3f}", acc=f"{means['train_query_accuracy']:.3f}")
                    if group.is_main:
                        bar.write(f"iteration {iteration}: validation accuracy {val:.4f} ± {ci:.4f}")
                if log or iteration % config.checkpoint_every == 0:
                    save_checkpoint(iteration)
                    segment_start = time.perf_counter()
                if interrupted:  # every process saw the same flags: all stop here, after the same iteration
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if in_flight:  # drop the unfinished iteration: the resumed run redraws the same tasks
            generator.set_state(sampler_state)
        if segment_start is not None:  # else the interruption came during validation, which is not training time
            synchronize()
            train_time += time.perf_counter() - segment_start
        save_checkpoint(iteration)
        bar.close()
        raise
    bar.close()  # the last iteration wrote its checkpoint
    return rows[-1] if rows else {}


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
    dtype = dtype or DTYPES[config.dtype]
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    torch.manual_seed(config.seed)  # as train() does before building the network
    model = FunctionalModel(network(config.dataset, config.ways, config.filters, config.channels_last)
                            .to(device=dev, dtype=dtype), cross_entropy_loss)
    if at_init:
        return TrainedRun(config, algorithm, model, model.flat_parameters(), 0, {})
    state = run.load_checkpoint(dev)
    theta = state["theta"].to(device=dev, dtype=dtype)
    if not bool(torch.isfinite(theta).all()):
        raise ConfigError(f"{run.checkpoint} holds non-finite parameters: the run diverged")
    return TrainedRun(config, algorithm, model, theta, int(state["iteration"]), state)


@dataclass(frozen=True)
class EvalConfig:
    """What ``metagrad eval`` scores: ``tasks`` tasks of ``split`` drawn from a pool seeded by ``seed``.

    ``device`` defaults to the run's; ``engine`` to the one measured faster on the device (both engines
    score the same tasks)."""

    split: str = "test"
    tasks: int = 600
    seed: int = 0
    device: str | None = None
    engine: str | None = None

    def __post_init__(self) -> None:
        require(self.tasks >= 1, f"tasks must be >= 1, got {self.tasks}")
        require(self.split in ("train", "val", "test"), f"split must be train, val or test, got {self.split!r}")
        require(self.engine is None or self.engine in ENGINES,
                f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")


def evaluate_run(out: Path, evaluation: EvalConfig = EvalConfig(), progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's last checkpoint on a fixed pool of tasks (``evaluation``); writes ``eval.json``."""
    split, tasks, seed, device = evaluation.split, evaluation.tasks, evaluation.seed, evaluation.device
    config, _ = Run(out).read_config()
    with process_group(device or config.device) as group:
        trained = load_trained(out, str(group.device(device or config.device)))
        config, state, dev = trained.config, trained.state, trained.theta.device
        engine = evaluation.engine or default_engine(str(dev), trained.algorithm, config.spec, evaluation=True)
        source = task_source(config.dataset, split, config.spec, config.data_root, config.split_seed,
                             config.omniglot_split)
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
            **_environment(dev), **group.describe(),
        }
        if group.is_main:
            write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    return result
