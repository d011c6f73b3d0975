"""Meta-training: the outer loop shared by every algorithm (paper Algorithm 1), as a trainer in phases.

Sample a meta-batch of tasks, average their meta-gradients, take an Adam step on theta (Reptile's "meta-gradient"
is theta - phi and goes through the same step). Validation runs every ``validate_every`` iterations on a fixed
pool of validation tasks. Checkpoints hold everything the run depends on (theta, the optimizer's state, the host
sampler's random state, the metrics so far), so ``--resume`` continues exactly where the checkpoint was written.
The meta-training tasks come from the host sampler (``ImageClassTasks``, a ``torch.Generator``) or the device
sampler (``DeviceTasks``: a function of the seed and the iteration number, drawn on the device inside the step);
validation pools always from the host sampler.

Two engines compute the meta-batch's meta-gradients from one task stream: ``per-task`` (the reference:
``meta_gradient`` task after task) and ``batched`` (``batched_meta_gradient``: the whole meta-batch at once).
Their runs are the same up to floating-point summation order. Diagnostics accumulate as device tensors and are
read once per logged step, so the batched engine's iteration never waits on the host.

The phases, each a method of ``Trainer``: ``set_up`` (a new run, or a resumed one from its checkpoint),
``iterate`` (one outer step), ``validate`` (the logged step: training diagnostics, validation, divergence checks),
``save`` (the checkpoint) and ``run`` (the loop, and when it stops: iterations, time, Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metagrad.algorithms import make_algorithm
from metagrad.algorithms.meta_parameters import groups_of, initial_meta_parameters, learned_values
from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.data.sources import read_line
from metagrad.bench.measure.machine import run_environment
from metagrad.bench.measure.timing import synchronize
from metagrad.bench.training.config import TrainConfig
from metagrad.bench.training.distributed import ProcessGroup, StopRequests, process_group
from metagrad.bench.training.evaluation import build_model, evaluate
from metagrad.bench.training.interrupts import deferred_interrupt, terminate_as_interrupt
from metagrad.bench.training.run_folder import Run
from metagrad.bench.training.steps import Window, training_step
from metagrad.errors import ConfigError, DivergenceError, require

# The query loss after adaptation beyond which the inner loop has blown up: a hundred times a uniform guess's
# ln(N). Healthy runs stay within a few times ln(N); an inner step size far past stability reaches 1e5 and
# more while staying finite (measured: first-order MAML with inner_lr 1e4 at 6.8e3 after 10 iterations).
BLOWN_UP_LOSS_FACTOR = 100.0
# How many validation tasks, all at exactly 1/N, prove a collapsed network. A network that looks at its input
# can score exactly 1/N by chance: 5-way with 2 queries a class (10 images), Binomial(10, 1/5) gives 2 right
# with probability 0.30, so 2 tasks do it 9% of the time (a 4-filter run can, depending on the CPU's rounding);
# 10 tasks 6e-6.
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


class Progress:
    """The progress bar: in iterations, or, where the run has a time limit, in seconds of training up to it (what
    ends the run first, iterations or time, sets the end, so that the ETA is honest either way)."""

    def __init__(self, config: TrainConfig, iteration: int, train_time: float, enabled: bool):
        self.iterations = config.iterations
        self.deadline = None if config.max_minutes is None else config.max_minutes * 60.0
        self.values: dict[str, str] = {}
        description = f"train {config.preset or config.algorithm}"
        if self.deadline is None:
            self.bar = tqdm(total=self.iterations, initial=iteration, desc=description, unit="it", disable=not enabled)
        else:
            self.bar = tqdm(total=round(self.deadline), initial=round(min(train_time, self.deadline)), desc=description,
                            unit="s", disable=not enabled,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of training [{elapsed}<{remaining}{postfix}]")
        self.advance(iteration, train_time)

    def advance(self, iteration: int, train_time: float) -> None:
        if self.deadline is None:
            self.bar.update(iteration - self.bar.n)
            return
        done = min(train_time, self.deadline)
        if iteration >= self.iterations:  # the iterations ran out first: the bar ends here
            self.bar.total = max(round(done), 1)
        self.values["iteration"] = f"{iteration}/{self.iterations}"
        self._postfix()
        self.bar.update(round(done) - self.bar.n)

    def show(self, **values: str) -> None:
        """The last logged step's numbers, beside the iteration."""
        self.values.update(values)
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(", ".join(f"{key} {value}" for key, value in self.values.items()), refresh=False)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()


class Trainer:
    """One run in ``out``: ``set_up`` builds (or resumes) it, ``run`` trains it to its end."""

    def __init__(self, config: TrainConfig, out: Path, resume: bool, progress: bool, group: ProcessGroup):
        self.config, self.out, self.resume, self.progress, self.group = config, out, resume, progress, group
        self.folder = Run(out)
        self.rows: list[dict[str, Any]] = []
        self.iteration, self.train_time, self.tasks_done = 0, 0.0, 0
        self.last_saved = 0
        self.in_flight = False

    # set-up or resume
    def set_up(self) -> None:
        config, group, out = self.config, self.group, self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder for the run")
        saved = None
        if self.resume:
            saved_config, saved = self.folder.read_config()
            # only how long to train, and which engine computes it, may change on resume
            config = self.config = TrainConfig(**{**asdict(saved_config), "iterations": config.iterations,
                                                  "max_minutes": config.max_minutes, "engine": config.engine,
                                                  "cuda_graph": config.cuda_graph, "compile": config.compile})
        elif (out / "config.json").exists():
            raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")
        require(config.meta_batch >= group.world_size,
                f"the meta-batch ({config.meta_batch} tasks) is smaller than the number of processes "
                f"({group.world_size})")
        require(not ((config.cuda_graph or config.compile) and group.active),
                "--cuda-graph and --compile under several processes are not supported yet")
        self.device = device = group.device(config.device)
        self.dtype = getattr(torch, config.dtype)
        state = self.folder.load_checkpoint(device) if self.resume else None
        self.train_source = config.task_source("train", config.train_spec)
        self.val_source = config.task_source("val")
        if group.is_main:
            print(read_line(config.dataset, config.data_root, {"train": self.train_source, "val": self.val_source}),
                  flush=True)
        self.algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
        self.model = build_model(config, device, self.dtype)
        # the network's parameters, then the algorithm's own meta-parameters (algorithms.meta_parameters)
        self.theta = theta = initial_meta_parameters(self.algorithm, self.model).clone()
        if config.outer_optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD([theta], lr=config.meta_lr)
        else:
            self.optimizer = torch.optim.Adam([theta], lr=config.meta_lr, capturable=config.cuda_graph)
        self.generator = torch.Generator().manual_seed(config.seed)  # the host sampler's; the device one has no state
        self.window = Window(device)
        launch = {"iteration": 0, "engine": config.engine, **group.describe()}
        group.barrier()  # every process has checked the folder before rank 0 writes to it
        if state is not None:
            self._restore(state, saved, launch)
        elif group.is_main:
            out.mkdir(parents=True, exist_ok=True)
            self.folder.write_config(config, {
                "splits": {"train": self.train_source.split.digest, "val": self.val_source.split.digest},
                "parameters": self.model.num_parameters,
                "meta_parameters": {g.name: g.size for g in groups_of(self.algorithm, self.model)},
                **run_environment(device), **group.describe(),
                "launches": [launch],
            })
        self.share = group.share(config.meta_batch)
        self.source = None
        if config.sampler == "device":  # the step draws each meta-batch itself, on the device
            self.source = DeviceTasks(self.train_source.tasks, device, self.dtype, config.seed, config.meta_batch,
                                      self.share if group.active else None)
            self.source.seek(self.iteration)
        self.step = training_step(config.engine, self.algorithm, self.model, theta, self.optimizer, self.window,
                                  graph=config.cuda_graph, group=group, meta_batch=config.meta_batch,
                                  source=self.source, compile=config.compile)
        self.last_saved = self.iteration
        if state is None:  # a run is resumable, and has a finite state to fall back on, from its first moment
            self.save()

    def _restore(self, state: dict[str, Any], saved: dict[str, Any], launch: dict[str, Any]) -> None:
        """A resumed run's state from its checkpoint, and its launch recorded in config.json."""
        config, device = self.config, self.device
        self.theta.copy_(state["theta"])
        self.optimizer.load_state_dict(state["optimizer"])
        if config.cuda_graph:  # a checkpoint written without graphs resumes with them, and the reverse
            self.optimizer.param_groups[0]["capturable"] = True
            for values in self.optimizer.state.values():
                values["step"] = values["step"].to(device=device, dtype=torch.float32)
        self.generator.set_state(state["sampler"].cpu())  # map_location moved it to the run's device
        self.iteration, self.train_time, self.tasks_done, self.rows = (state["iteration"], state["train_time_s"],
                                                                       state["tasks"], state["rows"])
        if self.group.is_main:  # rank 0 holds the window's totals; the others add theirs to it
            self.window.load(state["window"])
            launch["iteration"] = self.iteration
            kept = {key: value for key, value in saved.items() if key != "config"}
            # the limits in force from now on, so that the folder says how long it trains and a plain --resume
            # keeps them; the engine of each launch is in its record
            limits = replace(TrainConfig(**saved["config"]), iterations=config.iterations,
                             max_minutes=config.max_minutes)
            self.folder.write_config(limits, {**kept, "launches": [*saved.get("launches", []), launch]})

    # one iteration
    def iterate(self) -> None:
        """One outer step, whole or not at all: the step and its bookkeeping happen together (the device sampler's
        counter advances inside the step)."""
        config, group = self.config, self.group
        # what an interrupted iteration must give back: the sampler's draws (the window changes only at the end of
        # a step, which runs whole or not at all)
        self.sampler_state = self.generator.get_state()
        self.in_flight = True
        batch = None if self.source is not None else self.train_source.tasks.sample_batch(
            self.generator, config.meta_batch, self.dtype)
        if config.meta_lr_final is not None:
            self.optimizer.param_groups[0]["lr"] = config.meta_lr_at(self.iteration)
        with nullcontext() if group.active else deferred_interrupt():
            self.step(batch.select(self.share) if group.active and batch is not None else batch)
            self.tasks_done += config.meta_batch
            self.iteration += 1
            self.in_flight = False

    # logging and validation
    def validate(self) -> dict[str, Any]:
        """The logged step: the training window's means, validation on the fixed pool, the divergence checks; a
        row of metrics.csv."""
        config, group = self.config, self.group
        means, work = self.window.collect(group)
        if not math.isfinite(means["train_query_loss"]):
            raise self._diverged(f"the query loss is not finite in the iterations up to {self.iteration}")
        val, ci, n, _ = evaluate(self.algorithm, self.model, self.theta, self.val_source.tasks, config.validation_tasks,
                                 config.validation_seed, config.engine, config.meta_batch, self.dtype, group=group)
        reason = stuck(means["train_query_loss"], val, ci, n, config.ways)
        if reason:
            raise self._diverged(f"{reason}, at iteration {self.iteration}")
        row = {
            "iteration": self.iteration, "train_time_s": self.train_time, "tasks": self.tasks_done,
            "train_query_loss": means["train_query_loss"], "train_query_accuracy": means["train_query_accuracy"],
            "val_accuracy": val, "val_ci95": ci, "val_tasks": n,
            "tasks_per_s": self.tasks_done / self.train_time if self.train_time else float("nan"),
            **work, **{k: v for k, v in means.items() if not k.startswith("train_")},
            "engine": config.engine, "world_size": group.world_size,
        }
        self.rows.append(row)
        self.window.clear()
        return row

    def _diverged(self, what: str) -> DivergenceError:
        return DivergenceError(f"training diverged: {what}; {self.folder.checkpoint} keeps the last finite state "
                           f"(iteration {self.last_saved}). Try a smaller inner_lr or meta_lr")

    # checkpoint
    def save(self) -> None:
        if self.group.active:
            self.window.collect(self.group)  # rank 0's window now counts every process's tasks
        if not bool(torch.isfinite(self.theta).all()):
            raise self._diverged(f"the meta-parameters are not finite at iteration {self.iteration}")
        if self.group.is_main:
            self.folder.save_checkpoint({
                "theta": self.theta, "optimizer": self.optimizer.state_dict(), "sampler": self.generator.get_state(),
                "iteration": self.iteration, "train_time_s": self.train_time, "tasks": self.tasks_done,
                "rows": self.rows, "window": self.window.state()})
            if groups_of(self.algorithm, self.model):  # the learned values by name, beside the checkpoint
                start = initial_meta_parameters(self.algorithm, self.model)
                self.folder.write_learned(learned_values(self.algorithm, self.model, self.theta),
                                          learned_values(self.algorithm, self.model, start), self.iteration)
        self.last_saved = self.iteration

    # the loop, and when it stops
    def run(self) -> dict[str, Any]:
        """Train until the iterations or the time run out, or a stop is asked for (Ctrl-C, SIGTERM: the
        checkpoint is written first, the unfinished iteration left out); returns the last metrics row."""
        config, group = self.config, self.group
        deadline = None if config.max_minutes is None else config.max_minutes * 60.0
        out_of_time = deadline is not None and self.train_time >= deadline
        progress = Progress(config, self.iteration, self.train_time, self.progress and group.is_main)
        # Several processes agree on stopping (signals only set a flag); one process stops at once on Ctrl-C or
        # SIGTERM, keeping the iteration in progress out of the checkpoint.
        stop_requests = StopRequests() if group.active else None
        synchronize(self.device)
        # training time is counted between synchronizations, validation and checkpoints excluded
        segment_start: float | None = time.perf_counter()
        try:
            with stop_requests or terminate_as_interrupt():
                while self.iteration < config.iterations and not out_of_time:
                    self.iterate()
                    elapsed = self.train_time + time.perf_counter() - segment_start
                    progress.advance(self.iteration, elapsed)
                    interrupted, out_of_time = group.any(stop_requests is not None and stop_requests.requested,
                                                         deadline is not None and elapsed >= deadline)
                    last = self.iteration == config.iterations or out_of_time
                    log = self.iteration % config.validate_every == 0 or last
                    checkpoint = log or self.iteration % config.checkpoint_every == 0
                    if checkpoint:
                        synchronize(self.device)
                        self.train_time += time.perf_counter() - segment_start
                        segment_start = None
                    if log:
                        row = self.validate()
                        progress.show(loss=f"{row['train_query_loss']:.3f}", acc=f"{row['train_query_accuracy']:.3f}")
                        if group.is_main:
                            progress.write(f"iteration {self.iteration}: validation accuracy {row['val_accuracy']:.4f}"
                                           f" ± {row['val_ci95']:.4f}")
                    if checkpoint:
                        self.save()
                        segment_start = time.perf_counter()
                    if interrupted:  # every process saw the same flags: all stop here, after the same iteration
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if self.in_flight:  # drop the unfinished iteration: the resumed run redraws the same tasks
                self.generator.set_state(self.sampler_state)
            if segment_start is not None:  # else the interruption came during validation, which is not training time
                synchronize(self.device)
                self.train_time += time.perf_counter() - segment_start
            self.save()
            progress.close()
            raise
        progress.close()  # the last iteration wrote its checkpoint
        return self.rows[-1] if self.rows else {}


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or continue) the run in ``out``; returns the last metrics row.

    Under ``torchrun`` (several processes) the meta-batch is shared out (``bench.training.distributed``), and
    rank 0 alone writes files and shows progress."""
    with process_group(config.device) as group:
        trainer = Trainer(config, out, resume, progress, group)
        trainer.set_up()
        return trainer.run()
