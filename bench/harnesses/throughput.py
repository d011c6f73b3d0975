"""Tasks per second of whole training iterations, per preset and engine (``metagrad throughput``).

One iteration is what ``metagrad train`` does between two logged steps: sample a meta-batch from the
preset's training split, compute its meta-gradients with the engine, take the Adam step. After
``warmup`` iterations, ``iterations`` are timed together (CUDA synchronized once at each end, as
training does). Work per task (gradient and Hessian-vector-product evaluations) comes from the
engine's own diagnostics. Each batched row also says how far its meta-gradients are from the
per-task reference on one meta-batch, the largest relative difference over the tasks, in float64
(``max_rel_diff_vs_per_task``) and in float32 (``max_rel_diff_float32``); TF32 off while comparing. Every row
counts the computing device operations of one meta-batch's meta-gradients, run eagerly
(``operations_per_meta_batch``, ``bench/measure/operations.py``): deterministic, and the same whether the iteration
is captured or not (on CUDA most launch one kernel each; cuDNN adds its own inside convolutions).

With ``trace``, after the timed iterations, as many more run under ``torch.profiler`` (apart, so that the
profiler's own cost stays out of tasks/s): each row then counts, per iteration, the kernel launches (a
graph's replay is one), the host synchronizations and the host-device copies the CUDA runtime saw, and
``trace-{preset}-{engine}.txt`` holds the operators and kernels that took the time. That is where a missed
target is explained.

The CSV is rewritten (atomically) after every row, so a run that is stopped keeps the rows it finished.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from metagrad.algorithms import FunctionalModel, TaskBatch, cross_entropy_loss, make_algorithm
from metagrad.algorithms.meta_parameters import initial_meta_parameters
from metagrad.algorithms.registry import algorithm_names, batched_meta_gradient, has_batched_form
from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.data.root import DATA_ROOT_DEFAULT, DATA_ROOT_HELP
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec, ImageClassTasks
from metagrad.bench.measure.machine import device_name
from metagrad.bench.measure.operations import count_operations
from metagrad.bench.measure.timing import synchronize
from metagrad.bench.nets.convnet import network
from metagrad.bench.options import MOST_FILTERS, MOST_IMAGES, MOST_REPEATS, option
from metagrad.bench.training.engines import CHANNELS_LAST_HELP, COMPILE_HELP, CUDA_GRAPH_HELP, ENGINES, SAMPLER_HELP, SAMPLERS
from metagrad.bench.training.presets import preset, setting_defaults, setting_presets
from metagrad.bench.training.presets import presets as preset_names
from metagrad.bench.training.steps import GRAPH_WARMUP, Window, training_step
from metagrad.errors import require

COLUMNS = ["preset", "algorithm", "engine", "device", "device_name", "meta_batch", "tasks_per_s", "iteration_s",
           "grad_evals", "hvp_evals", "max_rel_diff_vs_per_task", "max_rel_diff_float32", "cuda_graph", "compiled",
           "channels_last", "warmup_s", "sampler", "iterations", "filters", "torch", "threads", "operations_per_meta_batch",
           "kernel_launches_per_iteration", "host_syncs_per_iteration", "copies_per_iteration", "task_by_task"]
# CUDA runtime calls, as torch.profiler names them: launches (a graph's replay counts one), calls that make the
# host wait for the device, and copies between them (an asynchronous copy from pageable memory waits too)
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
                "cudaLaunchCooperativeKernel")
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cudaStreamWaitEvent_host")
COPY_CALLS = ("cudaMemcpy", "cudaMemcpyAsync", "cudaMemcpy2DAsync")
DEFAULT_SETTING = "omniglot-5w1s"
DEFAULTS = "-defaults"  # the suffix of an algorithm's row at its default hyperparameters


@dataclass(frozen=True)
class ThroughputConfig:
    presets: tuple[str, ...] | None = option(None, "comma-separated presets", choices=lambda: sorted(preset_names()),
                                             shown=f"{DEFAULT_SETTING}'s preset of each row of Table 2 and of each "
                                             "plug-in algorithm")
    algorithms: tuple[str, ...] | None = option(None, f"comma-separated algorithms, each at its default "
                                                f"hyperparameters on {DEFAULT_SETTING}'s tasks (any registered "
                                                "algorithm, with or without presets; a row named "
                                                f"{DEFAULT_SETTING}-NAME-defaults)", choices=algorithm_names,
                                                shown="none")
    engines: tuple[str, ...] = option(ENGINES, "comma-separated engines", choices=ENGINES)
    meta_batch: int | None = option(None, "tasks per iteration", shown="each preset's", at_most=MOST_IMAGES)
    filters: int | None = option(None, "ConvNet filters", shown="each preset's network", at_most=MOST_FILTERS)
    iterations: int = option(5, "timed iterations per row", at_most=MOST_REPEATS)
    warmup: int = option(1, "untimed iterations first", at_most=MOST_REPEATS)
    device: str = option("cpu", "torch device: cpu or cuda[:N]")
    cuda_graph: bool = option(False, "batched rows: " + CUDA_GRAPH_HELP)
    sampler: str = option("host", SAMPLER_HELP, choices=SAMPLERS)
    compile: bool = option(False, "batched rows: " + COMPILE_HELP + "; warmup_s holds the compile time")
    channels_last: bool = option(False, "batched rows: " + CHANNELS_LAST_HELP)
    seed: int = option(0, "random seed")
    data_root: str | None = option(None, DATA_ROOT_HELP, shown=DATA_ROOT_DEFAULT)
    trace: bool = option(False, "after the timed iterations, profile as many more (torch.profiler): kernel launches, "
                         "host synchronizations and copies per iteration in the CSV, and OUT/trace-PRESET-ENGINE.txt "
                         "with the operators and kernels that took the time")
    # the comparison does not depend on the sampler or the capture, so a second run of the same presets can skip it
    check_tasks: int | None = option(None, "batched rows: compare this many tasks' meta-gradients with the per-task "
                                     "engine's", shown="the whole meta-batch; 0 skips the comparison and leaves its "
                                     "columns empty", at_most=MOST_IMAGES)

    @property
    def measured_presets(self) -> tuple[str, ...]:
        """The rows' names: the presets given and the algorithms' default rows, else the default setting's presets;
        captured (a CUDA graph, torch.compile) only those whose algorithm has a batched engine of its own, the rest
        having no captured form."""
        given = (*(self.presets or ()), *(f"{DEFAULT_SETTING}-{name}{DEFAULTS}" for name in self.algorithms or ()))
        if given:
            return given
        return tuple(name for name in setting_presets(DEFAULT_SETTING)
                     if not (self.cuda_graph or self.compile) or has_batched_form(preset(name)["algorithm"]))

    def __post_init__(self) -> None:
        require(not self.cuda_graph or self.device.startswith("cuda"), "CUDA graphs need a CUDA device")
        require(not (self.cuda_graph and self.compile), "--cuda-graph and --compile are two ways to capture the "
                "iteration: choose one")
        require(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        for name in self.algorithms or ():
            require(name in algorithm_names(), f"unknown algorithm {name!r}; registered: {', '.join(algorithm_names())}")
        for name in self.measured_presets:
            algorithm = row_settings(name)["algorithm"]  # an unknown preset is a ConfigError naming the known ones
            require(not (self.cuda_graph or self.compile) or has_batched_form(algorithm),
                    f"{algorithm} (preset {name}) has no batched engine of its own, which --cuda-graph and --compile "
                    "capture")
        unknown = sorted(set(self.engines) - set(ENGINES))
        require(not unknown and self.engines, f"engines must be among {', '.join(ENGINES)}, got {', '.join(self.engines)}")
        require(self.meta_batch is None or self.meta_batch >= 1, f"meta batch must be >= 1, got {self.meta_batch}")
        require(self.filters is None or self.filters >= 1, f"filters must be >= 1, got {self.filters}")
        require(self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}")
        require(self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}")
        require(self.check_tasks is None or self.check_tasks >= 0,
                f"check tasks must be >= 0, got {self.check_tasks}")


def _gradients(engine: str, algorithm, model: FunctionalModel, theta: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Each task's meta-gradient [tasks, parameters] by the engine."""
    if engine == "batched":
        return batched_meta_gradient(algorithm, model, theta, batch).gradients
    return torch.stack([algorithm.meta_gradient(model, theta, task).gradient for task in batch.tasks()])


def max_relative_difference(algorithm, model: FunctionalModel, theta: torch.Tensor, batch: TaskBatch,
                            dtype: torch.dtype) -> float:
    """The largest relative difference, over the batch's tasks, between the engines' meta-gradients, computed
    in ``dtype`` (the network's BatchNorm keeps no buffers, so float64 parameters and images are all it takes).

    In float64 it measures whether the engines compute the same thing; in float32 it also shows how far
    rounding moves the solvers' discrete decisions (where CG meets curvature, which Armijo step passes)."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    theta, batch = theta.to(dtype), batch.to(theta.device, dtype)
    try:
        reference = _gradients("per-task", algorithm, model, theta, batch)
        batched = _gradients("batched", algorithm, model, theta, batch)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return float(((batched - reference).norm(dim=1) / reference.norm(dim=1).clamp_min(1e-300)).max())


def row_settings(name: str) -> dict[str, Any]:
    """A row's settings: a preset's, or ``SETTING-ALGORITHM-defaults``, the algorithm at its defaults on the
    setting's tasks."""
    if name.endswith(DEFAULTS) and name.startswith(f"{DEFAULT_SETTING}-"):
        return setting_defaults(DEFAULT_SETTING, name[len(DEFAULT_SETTING) + 1:-len(DEFAULTS)])
    return preset(name)


def preset_tasks(config: ThroughputConfig, name: str) -> ImageClassTasks:
    """The row's training tasks, loaded once for both engines' rows."""
    settings = row_settings(name)
    spec = EpisodeSpec(settings["ways"], settings["shots"], settings["queries"])
    return task_source(settings["dataset"], "train", spec, config.data_root).tasks


# the CSV's columns of counts, and the CUDA runtime calls each counts
RUNTIME_COUNTS = {"kernel_launches_per_iteration": LAUNCH_CALLS, "host_syncs_per_iteration": SYNC_CALLS,
                  "copies_per_iteration": COPY_CALLS}


def traced(profiler: torch.profiler.profile, device: torch.device, iterations: int) -> tuple[dict[str, float], str]:
    """Per iteration, how many times the profiled code called each group of CUDA runtime functions (the CSV's
    columns), and the table of operators and kernels that took the time, most first, under those counts."""
    averages = profiler.key_averages()
    counts = {column: sum(event.count for event in averages if event.key in names) / iterations
              for column, names in RUNTIME_COUNTS.items()}
    head = "\n".join(f"{column.replace('_', ' ')}: {value:g}" for column, value in counts.items())
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return counts, f"{head}\n\n{averages.table(sort_by=sort_by, row_limit=30)}\n"


def measure(config: ThroughputConfig, name: str, engine: str, tasks: ImageClassTasks) -> tuple[dict[str, Any], str | None]:
    """One row of the CSV, and with ``trace`` its profile table."""
    settings = row_settings(name)
    device = torch.device(config.device)
    meta_batch = config.meta_batch or settings["meta_batch"]
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    torch.manual_seed(config.seed)
    layout = config.channels_last and engine == "batched"
    module = network(settings["dataset"], settings["ways"], config.filters, layout).to(device)
    model = FunctionalModel(module, cross_entropy_loss)
    theta = initial_meta_parameters(algorithm, model).clone()
    graph = config.cuda_graph and engine == "batched"
    optimizer = torch.optim.Adam([theta], lr=settings["meta_lr"], capturable=graph)
    generator = torch.Generator().manual_seed(config.seed)
    window = Window(device)
    source = DeviceTasks(tasks, device, torch.float32, config.seed, meta_batch) if config.sampler == "device" else None
    compiled = config.compile and engine == "batched"
    step = training_step(engine, algorithm, model, theta, optimizer, window, graph=graph, source=source,
                         compile=compiled)

    def iteration() -> None:
        step(tasks.sample_batch(generator, meta_batch) if source is None else None)

    # a graph is captured, or the iteration compiled, in the warm-up: that time is reported apart
    # (compiled: one eager call, then inductor's CUDA graphs warm up and record in the first compiled calls)
    warmup_started = time.perf_counter()
    for _ in range(config.warmup + (GRAPH_WARMUP + 1 if graph else 4 if compiled else 0)):
        iteration()
    work_before = window.work.clone()
    synchronize(device)
    warmup_s = time.perf_counter() - warmup_started
    started = time.perf_counter()
    for _ in range(config.iterations):
        iteration()
    synchronize(device)
    elapsed = time.perf_counter() - started
    grad_evals, hvp_evals = ((window.work - work_before).double() / (config.iterations * meta_batch)).tolist()
    counts, trace = ({column: float("nan") for column in RUNTIME_COUNTS}, None)
    if config.trace:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            for _ in range(config.iterations):
                iteration()
            synchronize(device)
        counts, trace = traced(profiler, device, config.iterations)
    differences = {torch.float64: 0.0, torch.float32: 0.0}
    check_tasks = meta_batch if config.check_tasks is None else min(config.check_tasks, meta_batch)
    if engine == "batched" and check_tasks == 0:
        differences = {dtype: float("nan") for dtype in differences}
    elif engine == "batched":
        batch = tasks.sample_batch(generator, check_tasks, torch.float64)
        differences = {dtype: max_relative_difference(algorithm, model, theta, batch, dtype) for dtype in differences}
    # the computing operations of one meta-batch's meta-gradients, eagerly: a graph's replay hides them
    counted = tasks.sample_batch(generator, meta_batch).to(device)
    operations = count_operations(lambda: _gradients(engine, algorithm, model, theta, counted)).total
    return {
        "preset": name, "algorithm": settings["algorithm"], "engine": engine, "device": device.type,
        "device_name": device_name(device), "meta_batch": meta_batch,
        "tasks_per_s": config.iterations * meta_batch / elapsed, "iteration_s": elapsed / config.iterations,
        "grad_evals": grad_evals, "hvp_evals": hvp_evals, "max_rel_diff_vs_per_task": differences[torch.float64],
        "max_rel_diff_float32": differences[torch.float32],
        "cuda_graph": graph, "compiled": compiled, "channels_last": layout, "warmup_s": warmup_s, "sampler": config.sampler,
        "iterations": config.iterations,
        "filters": module.features[0].out_channels, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "operations_per_meta_batch": operations, **counts,
        # a batched row of an algorithm without a batched engine of its own runs its per-task engine task by task:
        # the same code as the per-task row, so the two rows' ratio is no speed-up
        "task_by_task": engine == "batched" and not has_batched_form(settings["algorithm"]),
    }, trace


def measured_rows(config: ThroughputConfig, progress: bool = True) -> Iterator[tuple[pd.DataFrame, str, str | None]]:
    """After each row: the rows so far, the row's trace file name and its profile table (None without
    ``trace``)."""
    rows = []
    with tqdm(total=len(config.measured_presets) * len(config.engines), desc="throughput", unit="row",
              disable=not progress) as bar:
        for name in config.measured_presets:
            tasks = preset_tasks(config, name)
            for engine in config.engines:
                row, trace = measure(config, name, engine, tasks)
                rows.append(row)
                bar.update()
                yield pd.DataFrame(rows, columns=COLUMNS), f"trace-{name}-{engine}.txt", trace


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Batched over per-task tasks/s, one row per preset (where both engines ran)."""
    table = frame.pivot_table(index="preset", columns="engine", values="tasks_per_s", sort=False)
    if not set(ENGINES) <= set(table.columns):
        return pd.DataFrame(columns=["preset", "per-task", "batched", "batched_over_per_task"])
    table["batched_over_per_task"] = table["batched"] / table["per-task"]
    return table.reset_index()[["preset", "per-task", "batched", "batched_over_per_task"]]


def plot_throughput(frame: pd.DataFrame):
    """Tasks per second per preset, one bar per engine, on a linear axis (a ratio reads as the bars' lengths); a
    batched bar that runs the per-task engine task by task is hatched and says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(dict.fromkeys(frame["preset"]))
    engines = [e for e in ENGINES if e in set(frame["engine"])]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(presets) * len(engines) + 2.0))
    height = 0.8 / len(engines)
    top = 0.0
    for k, engine in enumerate(engines):
        rows = frame[frame["engine"] == engine].set_index("preset")
        for i, name in enumerate(presets):
            if name not in rows.index:
                continue
            row = rows.loc[name]
            value, y = float(row["tasks_per_s"]), i + k * height
            task_by_task = "task_by_task" in row and str(row["task_by_task"]).lower() in ("true", "1", "1.0")
            ax.barh(y, value, height=height, color=f"C{k}", hatch="//" if task_by_task else None,
                    edgecolor="white" if task_by_task else None)
            shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
            ax.text(value, y, f" {shown}" + (" (task by task)" if task_by_task else ""), va="center", fontsize=8)
            top = max(top, value)
    ax.set_yticks([i + height * (len(engines) - 1) / 2 for i in range(len(presets))], presets, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.3 * top if top else 1)
    ax.set_xlabel("tasks per second (whole training iterations: sampling, meta-gradients, Adam)")
    first = frame.iloc[0]
    ax.set_title(f"{first['device_name']}, torch {first['torch']}, {first['threads']} threads, "
                 f"meta-batch {', '.join(str(b) for b in dict.fromkeys(frame['meta_batch']))}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{k}") for k in range(len(engines))]
    fig.legend(handles, [f"{engine} engine" for engine in engines], loc="lower center", ncol=len(engines), fontsize=8,
               frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def write_throughput(config: ThroughputConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """Measure and write ``out/throughput.csv`` and ``out/throughput.png`` (and with ``trace`` each row's
    ``trace-*.txt``), each atomically."""
    from metagrad.bench.atomic import save_figure, write_csv, write_text

    frame = pd.DataFrame(columns=COLUMNS)
    for frame, file_name, trace in measured_rows(config, progress):  # a stopped run keeps its finished rows
        if trace is not None:
            write_text(out / file_name, trace)
        write_csv(frame, out / "throughput.csv")
    save_figure(plot_throughput(frame), out / "throughput.png")
    return frame
