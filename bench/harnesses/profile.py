"""Compute and memory profile of meta-gradients against inner steps (paper Figure 2b).

For each algorithm and number of inner steps, one meta-gradient of one task, after a warm-up:
- time: median and interquartile spread of ``repeats`` runs (CUDA synchronized);
- saved bytes: the peak of bytes autograd holds for backward (``memory.SavedTensorPeak``);
- peak memory: on CUDA ``max_memory_allocated`` over the run (reset per configuration) and NVML's
  used memory; on the CPU the peak RSS of a fresh subprocess during the run minus its RSS just
  before, after one warm-up run of the same configuration there;
- work: gradient and Hessian-vector-product evaluations from the algorithm's record, and FLOPs
  from ``torch.utils.flop_counter``;
- batched tasks/s: for the algorithms, the batched engine's ``batched_meta_gradient`` over a meta-batch
  of ``batched_tasks`` copies of the task (the same work per task as the row's), median of ``repeats``,
  beside the per-task engine's 1 / time_s. Memory columns stay per task.
A plain gradient of the support loss and of the query loss is measured the same way (algorithm
``gradient``), so that the ratio to Theorem 1's bound (at most twice one gradient) is a column, and
one Hessian-vector product of the support loss (``hvp``), for its cost relative to a gradient.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from metagrad.algorithms import (
    FunctionalModel,
    Task,
    algorithm_label,
    algorithm_names,
    cross_entropy_loss,
    make_algorithm,
    squared_error_loss,
)
from metagrad.algorithms.meta_parameters import initial_meta_parameters
from metagrad.algorithms.registry import algorithm_color, batched_meta_gradient, hyperparameter_defaults
from metagrad.bench.data.root import DATA_ROOT_DEFAULT, DATA_ROOT_HELP
from metagrad.bench.measure.machine import device_name
from metagrad.bench.measure.memory import available_bytes, count_work, cuda_peak, is_out_of_memory, subprocess_environment
from metagrad.bench.measure.timing import interquartile_range, median_time
from metagrad.bench.options import MOST_FILTERS, MOST_IMAGES, MOST_REPEATS, MOST_STEPS, option
from metagrad.bench.plotting import coinciding, line_style
from metagrad.errors import require

DATASETS = ("omniglot", "synthetic", "random-images")
REFERENCES = ("gradient", "hvp")  # the rows beside the algorithms': one gradient, one Hessian-vector product

COLUMNS = ["algorithm", "inner_steps", "cg_steps", "device", "time_s", "peak_bytes", "saved_bytes", "flops",
           "grad_evals", "hvp_evals", "cg_iterations", "negative_curvature", "sweep", "status", "time_iqr_s",
           "repeats", "rss_delta_bytes",
           "cuda_max_allocated_bytes", "nvml_used_bytes", "gradient_saved_bytes", "saved_over_gradient",
           "peak_over_gradient", "dataset", "ways", "shots", "queries", "filters", "device_name", "torch", "threads",
           "tasks_per_s", "batched_tasks_per_s", "batched_tasks"]


@dataclass(frozen=True)
class ProfileConfig:
    dataset: str = option("omniglot", "omniglot (real characters, from --data-root), random-images (the same shapes, "
                          "random pixels) or synthetic (linear regression)", choices=DATASETS)
    ways: int = option(20, "classes per task", at_most=MOST_IMAGES)
    shots: int = option(5, "support images per class", at_most=MOST_IMAGES)
    queries: int = option(15, "query images per class", at_most=MOST_IMAGES)
    filters: int = option(64, "ConvNet filters", at_most=MOST_FILTERS)
    algorithms: tuple[str, ...] | None = option(None, "comma-separated registered algorithms",
                                                shown="every registered algorithm", choices=algorithm_names)
    inner_steps: tuple[int, ...] = option((1, 2, 4, 8, 16, 32, 64), "comma-separated inner step counts", at_most=MOST_STEPS)
    cg_steps: int = option(5, "CG steps in the inner-step sweep, of algorithms that solve a linear system "
                           "(a cg_steps hyperparameter: iMAML)", at_most=MOST_STEPS)
    cg_sweep: tuple[int, ...] = option((1, 2, 5, 10, 20), "CG steps for the second sweep, of those algorithms", at_most=MOST_STEPS)
    cg_sweep_inner_steps: int = option(16, "inner steps during the CG sweep", at_most=MOST_STEPS)
    lam: float = option(2.0, "lambda of the algorithms with a proximal term by default (iMAML); the others (MAML, "
                        "first-order MAML, Reptile) run without one")
    inner_lr: float = option(0.1, "inner step size")
    repeats: int = option(3, "timed repeats per configuration, the median kept", at_most=MOST_REPEATS)
    rss: bool = option(True, "skip the peak-RSS measure in a fresh subprocess per configuration (CPU); the "
                       "figure's peak-memory panels are then left out", flag="--no-rss")
    device: str = option("cpu", "torch device: cpu or cuda[:N]")
    seed: int = option(0, "random seed")
    data_root: str | None = option(None, DATA_ROOT_HELP, shown=DATA_ROOT_DEFAULT)
    synthetic_dim: int = 50
    batched_tasks: int = option(8, "meta-batch of the batched engine's tasks/s column (copies of the task)",
                                shown="8; 0: not measured", at_most=MOST_IMAGES)

    def __post_init__(self) -> None:
        require(self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        unknown = sorted(set(self.algorithms or ()) - set(algorithm_names()))
        require(not unknown, f"unknown algorithm {', '.join(unknown)}; choose from {', '.join(algorithm_names())}")
        for name in self.algorithms or ():
            require("inner_steps" in hyperparameter_defaults(name), f"{name} has no inner_steps hyperparameter, which "
                    "profile sweeps")
        require(all(k >= 1 for k in self.inner_steps) and self.inner_steps, "inner steps must be >= 1")
        require(self.cg_steps >= 0 and all(k >= 0 for k in self.cg_sweep), "CG steps must be >= 0")
        require(self.cg_sweep_inner_steps >= 1, f"the CG sweep's inner steps must be >= 1, got {self.cg_sweep_inner_steps}")
        require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
        require(self.filters >= 1, f"filters must be >= 1, got {self.filters}")
        require(self.lam > 0, f"lam must be > 0, got {self.lam}")
        require(self.inner_lr > 0, f"inner lr must be > 0, got {self.inner_lr}")
        require(self.batched_tasks >= 0, f"batched tasks must be >= 0, got {self.batched_tasks}")

    @property
    def profiled(self) -> tuple[str, ...]:
        """The algorithms given, else every registered one with inner steps to sweep."""
        return self.algorithms or tuple(name for name in algorithm_names() if "inner_steps" in hyperparameter_defaults(name))


def solves_a_system(name: str) -> bool:
    """Whether the algorithm's meta-gradient solves a linear system in CG steps (a ``cg_steps`` hyperparameter)."""
    return "cg_steps" in hyperparameter_defaults(name)


@dataclass(frozen=True)
class Measure:
    """One configuration to measure: a meta-gradient, or a plain gradient (``algorithm='gradient'``)."""

    algorithm: str
    inner_steps: int = 0
    cg_steps: int = 0
    sweep: str = "inner_steps"
    loss_set: str = "support"  # gradient only: which set's loss


@dataclass
class Problem:
    model: FunctionalModel
    theta: torch.Tensor
    task: Task
    device: torch.device


def build_problem(config: ProfileConfig) -> Problem:
    """The model, meta-parameters and one task, the same for every process with the same config."""
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    if config.dataset == "synthetic":
        from metagrad.bench.data.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task

        task = sample_linear_regression_task(LinearRegressionConfig(dim=config.synthetic_dim), generator).task
        module = LinearRegressor(config.synthetic_dim)
        loss = squared_error_loss
    else:
        from metagrad.bench.data.tasks import EpisodeSpec
        from metagrad.bench.nets.convnet import omniglot_convnet

        spec = EpisodeSpec(config.ways, config.shots, config.queries)
        if config.dataset == "omniglot":
            from metagrad.bench.data.sources import task_source

            task = task_source("omniglot", "train", spec, config.data_root).tasks.sample(generator)
        else:
            from metagrad.algorithms import Batch

            def batch(n: int) -> Batch:
                y = torch.arange(spec.ways).repeat_interleave(n)
                return Batch(torch.rand(len(y), 1, 28, 28, generator=generator), y)

            task = Task(batch(spec.shots), batch(spec.queries))
        module = omniglot_convnet(config.ways, config.filters)
        loss = cross_entropy_loss
    module = module.to(device)
    model = FunctionalModel(module, loss)
    return Problem(model, model.flat_parameters(), task.to(device), device)


def runner(config: ProfileConfig, problem: Problem, measure: Measure) -> Callable[[], dict[str, Any]]:
    """A no-argument function doing the measured work once and returning its work counts."""
    model, theta, task = problem.model, problem.theta, problem.task
    if measure.algorithm == "hvp":
        from metagrad.algorithms import HessianOperator

        batch = task.support
        vector = torch.randn(theta.shape, generator=torch.Generator().manual_seed(0)).to(theta)

        def hessian_vector_product() -> dict[str, Any]:
            # what the first CG iteration costs: the gradient with its graph, then one product through it
            HessianOperator(lambda p: model.loss(p, batch), theta)(vector)
            return {"grad_evals": 1, "hvp_evals": 1, "cg_iterations": 0, "negative_curvature": False}

        return hessian_vector_product
    if measure.algorithm == "gradient":
        batch = task.support if measure.loss_set == "support" else task.query

        def gradient() -> dict[str, Any]:
            phi = theta.detach().requires_grad_(True)
            torch.autograd.grad(model.loss(phi, batch), phi)
            return {"grad_evals": 1, "hvp_evals": 0, "cg_iterations": 0, "negative_curvature": False}

        return gradient
    algorithm = profiled_algorithm(config, measure)
    full = initial_meta_parameters(algorithm, model, theta)  # with the algorithm's own meta-parameters, if any

    def meta_gradient() -> dict[str, Any]:
        record = algorithm.meta_gradient(model, full, task).record
        return {"grad_evals": record.grad_evals, "hvp_evals": record.hvp_evals,
                "cg_iterations": record.cg_iterations, "negative_curvature": record.negative_curvature}

    return meta_gradient


def profiled_algorithm(config: ProfileConfig, measure: Measure):
    """The algorithm a row measures: its inner steps and step size; lambda where its own default has a proximal
    term; its CG steps where it solves a system."""
    defaults = hyperparameter_defaults(measure.algorithm)
    kwargs: dict[str, Any] = {"inner_steps": measure.inner_steps, "inner_lr": config.inner_lr}
    if defaults.get("lam"):
        kwargs["lam"] = config.lam
    if "cg_steps" in defaults:
        kwargs["cg_steps"] = measure.cg_steps
    return make_algorithm(measure.algorithm, **{k: v for k, v in kwargs.items() if k in defaults})


def batched_tasks_per_second(config: ProfileConfig, problem: Problem, measure: Measure, saved_bytes: int) -> float:
    """Tasks per second of ``batched_meta_gradient`` over ``batched_tasks`` copies of the row's task; nan
    where the meta-batch would not fit: ``batched_tasks`` times the reference's ``saved_bytes`` over half the
    memory available (a CPU run past the machine's memory would swap or be killed, not raise), or out of
    memory."""
    from metagrad.algorithms import TaskBatch

    if config.batched_tasks * saved_bytes > available_bytes(problem.device) // 2:
        return float("nan")
    algorithm = profiled_algorithm(config, measure)
    batch = TaskBatch.stack([problem.task] * config.batched_tasks)
    try:
        full = initial_meta_parameters(algorithm, problem.model, problem.theta)
        seconds, _ = median_time(lambda: batched_meta_gradient(algorithm, problem.model, full, batch),
                                 problem.device, config.repeats)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        return float("nan")
    return config.batched_tasks / seconds


def measure_in_process(config: ProfileConfig, problem: Problem, measure: Measure) -> dict[str, Any]:
    run = runner(config, problem, measure)
    device = problem.device
    seconds, times = median_time(run, device, config.repeats)
    row: dict[str, Any] = {
        "time_s": seconds,
        "time_iqr_s": interquartile_range(times),
        "repeats": len(times),
        **count_work(run),
    }
    if measure.algorithm not in REFERENCES:
        row["tasks_per_s"] = 1.0 / seconds
        if config.batched_tasks:
            row.update(batched_tasks_per_s=batched_tasks_per_second(config, problem, measure, row["saved_bytes"]),
                       batched_tasks=config.batched_tasks)
    if device.type == "cuda":
        cuda = cuda_peak(run, device)
        row.update(cuda_max_allocated_bytes=cuda.max_allocated_bytes, nvml_used_bytes=cuda.nvml_used_bytes,
                   peak_bytes=cuda.max_allocated_bytes)
    return row


def measure_rss_in_subprocess(config: ProfileConfig, measure: Measure, timeout_s: float = 3600) -> dict[str, Any]:
    """Peak RSS over the measured run minus RSS just before it, in a fresh ``python`` process."""
    command = [sys.executable, "-m", "metagrad.bench.harnesses.profile_worker", json.dumps(asdict(config)), json.dumps(asdict(measure))]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), timeout=timeout_s)
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        reason = "oom" if done.returncode in (-9, 137) or "MemoryError" in done.stderr else "error"
        return {"status": reason, "error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan(config: ProfileConfig) -> list[Measure]:
    measures = [Measure("gradient", loss_set="support", sweep="gradient"),
                Measure("gradient", loss_set="query", sweep="gradient"),
                Measure("hvp", loss_set="support", sweep="hvp")]
    for name in config.profiled:
        for steps in config.inner_steps:
            measures.append(Measure(name, steps, config.cg_steps if solves_a_system(name) else 0))
    for name in filter(solves_a_system, config.profiled):
        measures += [Measure(name, config.cg_sweep_inner_steps, cg, sweep="cg_steps") for cg in config.cg_sweep]
    return measures


def run_profile(config: ProfileConfig, progress: bool = True,
                on_row: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Every configuration of ``plan(config)``, a row each; ``on_row`` sees the rows so far after each one (so that an
    interrupted profile keeps what it finished)."""
    problem = build_problem(config)
    device = problem.device
    environment = {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dataset": config.dataset, "ways": config.ways, "shots": config.shots, "queries": config.queries,
        "filters": config.filters,
    }
    rows = []
    measures = plan(config)
    for measure in tqdm(measures, desc=f"profile ({device.type})", unit="config", disable=not progress):
        row: dict[str, Any] = {"algorithm": measure.algorithm if measure.algorithm not in REFERENCES
                               else f"{measure.algorithm} ({measure.loss_set})",
                               "inner_steps": measure.inner_steps, "cg_steps": measure.cg_steps,
                               "sweep": measure.sweep, "status": "ok", **environment}
        try:
            row.update(measure_in_process(config, problem, measure))
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            row["status"] = "oom"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if device.type == "cpu" and config.rss and row["status"] == "ok":
            rss = measure_rss_in_subprocess(config, measure)
            row["status"] = rss.get("status", "ok")
            row["rss_delta_bytes"] = rss.get("rss_delta_bytes")
            row["peak_bytes"] = rss.get("rss_delta_bytes")
        rows.append(row)
        if on_row is not None:
            on_row(profile_frame(rows))
    return profile_frame(rows)


def profile_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The CSV's columns from the measured rows, each memory also in units of one gradient's."""
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    gradients = frame[frame["sweep"] == "gradient"]
    gradient_saved = gradients["saved_bytes"].max()
    gradient_peak = pd.to_numeric(gradients["peak_bytes"], errors="coerce").max()
    frame["gradient_saved_bytes"] = gradient_saved
    frame["saved_over_gradient"] = frame["saved_bytes"] / gradient_saved
    frame["peak_over_gradient"] = pd.to_numeric(frame["peak_bytes"], errors="coerce") / gradient_peak
    return frame[COLUMNS]




def profile_title(frame: pd.DataFrame) -> str:
    """The figure's title, from the problem and machine recorded in the rows."""
    first = frame.iloc[0]
    if first["dataset"] == "synthetic":
        title = "Linear regression"
    else:
        title = (f"{int(first['ways'])}-way {int(first['shots'])}-shot ({int(first['queries'])} queries), "
                 f"4-block ConvNet, {int(first['filters'])} filters")
    return title + f", {first['dataset']}, on {first['device_name']} ({first['threads']} threads, torch {first['torch']})"


def plot_profile(frame: pd.DataFrame, title: str):
    """Time, memory and saved bytes against inner steps (one line per algorithm); iMAML's CG sweep below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = frame[frame["status"] == "ok"]
    steps = ok[ok["sweep"] == "inner_steps"]
    cg = ok[ok["sweep"] == "cg_steps"]
    gradient = ok[ok["sweep"] == "gradient"]
    peak_label = "peak CUDA memory (MiB)" if (frame["device"] == "cuda").any() else "peak RSS increase (MiB)"
    panels = [("time_s", "time per task (s)", 1.0), ("peak_bytes", peak_label, 2**20),
              ("saved_bytes", "peak bytes saved for backward (MiB)", 2**20)]
    if pd.to_numeric(frame["peak_bytes"], errors="coerce").isna().all():  # profiled with --no-rss: not measured
        panels.pop(1)
        title += "\n(peak memory not measured: --no-rss; bytes saved for backward only)"
    rows = 2 if len(cg) else 1  # the CG sweep's row only where an algorithm solved a system
    fig, axes = plt.subplots(rows, len(panels), figsize=(5 * len(panels), 4.25 * rows + 0.5 * (rows == 1)),
                             squeeze=False)
    for ax, (column, label, scale) in zip(axes[0], panels):
        curves = [(algorithm_label(name), list(group["inner_steps"]),
                   list(pd.to_numeric(group[column], errors="coerce") / scale))
                  for name, group in steps.groupby("algorithm", sort=False)]
        same = coinciding(curves)  # within 2 %: one line would hide the other; the legend says so
        for nth, ((name, _), (shown, x, values)) in enumerate(zip(steps.groupby("algorithm", sort=False), curves)):
            linestyle, marker = line_style(nth)
            ax.plot(x, values, color=algorithm_color(name), linestyle=linestyle, marker=marker, markersize=4,
                    linewidth=max(0.8, 2.2 - 0.3 * nth),
                    label=f"{shown} (= {same[shown]})" if shown in same else shown)
        if column != "time_s" and len(gradient):
            one = pd.to_numeric(gradient[column], errors="coerce").max() / scale
            if not math.isnan(one):
                ax.axhline(one, color="grey", linestyle=":", label="one gradient")
                ax.axhline(2 * one, color="grey", linestyle="--", label="Theorem 1 bound (2 gradients)")
        oom = frame[(frame["status"] == "oom") & (frame["sweep"] == "inner_steps")]
        for _, row in oom.iterrows():
            ax.axvline(row["inner_steps"], color="red", alpha=0.2)
        ax.set_xscale("log", base=2)
        if (pd.to_numeric(steps[column], errors="coerce") > 0).any():
            ax.set_yscale("log")
        ax.set_xlabel("inner steps")
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[0]:  # each panel its own: which curves coincide differs from panel to panel
        if ax.get_legend_handles_labels()[0]:  # an interrupted profile's figure may have no line yet
            ax.legend(fontsize=8)
    for ax, (column, label, scale) in zip(axes[1] if rows == 2 else (), panels):
        top = 0.0
        for name, group in cg.groupby("algorithm", sort=False):
            values = pd.to_numeric(group[column], errors="coerce") / scale
            ax.plot(group["cg_steps"], values, marker="s", markersize=4, color=algorithm_color(name),
                    label=f"{algorithm_label(name)}, {int(group['inner_steps'].iloc[0])} inner steps")
            top = max(top, values.max()) if values.notna().any() else top
        if top > 0:
            ax.set_ylim(0, 1.2 * top)
        ax.set_xlabel("CG steps allowed (CG stops early on negative curvature)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ratios(frame: pd.DataFrame) -> dict[str, float]:
    """The numbers the README reads off a profile, for each algorithm profiled: its memory at the most inner steps
    over the fewest and over one gradient's, a Hessian-vector product over a gradient, and its time in gradients
    (a gradient of the support loss taking 1)."""
    ok = frame[(frame["status"] == "ok") & (frame["sweep"] == "inner_steps")]

    def over(a: float, b: float) -> float:
        return a / b if b else float("nan")

    def value(algorithm: str, steps: int, column: str) -> float:
        match = ok[(ok["algorithm"] == algorithm) & (ok["inner_steps"] == steps)]
        return float(pd.to_numeric(match[column], errors="coerce").iloc[0]) if len(match) else float("nan")

    lo, hi = min(ok["inner_steps"]), max(ok["inner_steps"])
    every = frame[frame["status"] == "ok"].set_index("algorithm")
    names = list(dict.fromkeys(ok["algorithm"]))
    out = {}
    for name in names:
        out[f"{name}_peak_{hi}_over_{lo}"] = over(value(name, hi, "peak_bytes"), value(name, lo, "peak_bytes"))
        out[f"{name}_saved_{hi}_over_{lo}"] = over(value(name, hi, "saved_bytes"), value(name, lo, "saved_bytes"))
    for name in names:
        out[f"{name}_saved_over_gradient_{hi}"] = value(name, hi, "saved_over_gradient")
        out[f"{name}_peak_over_gradient_{hi}"] = value(name, hi, "peak_over_gradient")
    gradient_time = float("nan")
    if "hvp (support)" in every.index and "gradient (support)" in every.index:
        for column in ("time_s", "flops", "saved_bytes"):
            out[f"hvp_over_gradient_{column}"] = over(float(every.loc["hvp (support)", column]),
                                                      float(every.loc["gradient (support)", column]))
        gradient_time = float(every.loc["gradient (support)", "time_s"])
    for steps in sorted({lo, 16, hi} & set(ok["inner_steps"])):
        for name in names:
            out[f"{name}_time_in_gradients_{steps}"] = over(value(name, steps, "time_s"), gradient_time)
    return out


def write_profile(config: ProfileConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """Run the profile and write ``out/profile.csv`` and ``out/profile.png`` (each atomically)."""
    from metagrad.bench.atomic import save_figure, write_csv

    finished: list[pd.DataFrame] = []

    def keep(frame: pd.DataFrame) -> None:  # the rows so far, on disk as each configuration finishes
        write_csv(frame, out / "profile.csv")
        finished[:] = [frame]

    try:
        frame = run_profile(config, progress=progress, on_row=keep)
    except KeyboardInterrupt:
        if finished:  # the figure of what finished, beside its rows
            save_figure(plot_profile(finished[0], profile_title(finished[0])), out / "profile.png")
        raise
    save_figure(plot_profile(frame, profile_title(frame)), out / "profile.png")
    return frame
