"""`metagrad report`: every figure and table, rendered from recorded result folders.

Reads what the other commands wrote (``exact_solve.csv``, ``profile.csv``, training runs'
``config.json`` + ``metrics.csv`` + ``eval.json``), anywhere below the result folders, and writes
``OUT/index.md``, ``OUT/figures/*.png`` and ``OUT/tables/*.md``. Nothing is computed that a result
file does not hold: a table cell without a run says "missing". The tables are a pure function of the
result files, so regenerating from the same files gives the same bytes.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from algorithms import make_algorithm
from bench.atomic import save_figure, write_text
from bench.plotting import line_style
from bench.reporting.paper import PAPER_ACCURACY, TABLES
from bench.training.config import TrainConfig
from bench.training.presets import (
    ALGORITHM_LABELS,
    META_SOLVER_VARIANTS,
    SETTINGS,
    preset,
    variant_color,
    variant_label,
    variant_of,
)

FIGURES, TABLES_DIR = "figures", "tables"
# Runs below a folder of this name are the study of iMAML's indefinite systems (bench/reporting/regenerate.py,
# CURVATURE): reduced networks and changed lambdas, shown in their own table and figures, never as a
# cell of Tables 2 and 3.
CURVATURE_STUDY = "cpu-curvature"


@dataclass(frozen=True)
class TrainingRun:
    name: str  # the folder, relative to its results root
    config: dict[str, Any]
    environment: dict[str, Any]  # config.json's other fields: device_name, torch, threads, ...
    metrics: pd.DataFrame
    evaluation: dict[str, Any] | None  # eval.json on the test split
    spectra: dict[str, pd.DataFrame] = field(default_factory=dict)  # "init" / "end": metagrad spectrum's CSVs
    lake: dict[str, Any] | None = None  # lake_runs.json: metagrad lake-runs

    @property
    def in_curvature_study(self) -> bool:
        return CURVATURE_STUDY in Path(self.name).parts

    @property
    def setting(self) -> str:
        c = self.config
        return f"{c['dataset']}-{c['ways']}w{c['shots']}s"

    @property
    def variant(self) -> str:
        if self.config.get("preset"):
            return self.config["preset"][len(self.setting) + 1:]
        return variant_of(self.config["algorithm"], self.config["hyperparameters"])

    @property
    def differences(self) -> list[str]:
        """Where the run's settings depart from its preset's (as the preset stands today)."""
        name = self.config.get("preset")
        if not name:
            return ["no preset"]
        reference = preset(name)
        out = []
        for key, value in sorted(self.config["hyperparameters"].items()):
            expected = reference["hyperparameters"].get(key)
            if value != expected:
                out.append(f"{key} {value:g} (preset {expected:g})" if isinstance(value, float) and
                           isinstance(expected, float) else f"{key} {value} (preset {expected})")
        for key in ("meta_batch", "meta_lr", "queries", "outer_optimizer", "meta_lr_final", "train_shots",
                    "train_queries"):
            default = TrainConfig.__dataclass_fields__[key].default  # what a run or preset without the key ran
            if self.config.get(key, default) != reference.get(key, default):
                out.append(f"{key} {self.config.get(key, default)} (preset {reference.get(key, default)})")
        if self.config.get("filters") is not None:
            out.append(f"filters {self.config['filters']} (preset: the dataset's default)")
        return out

    @property
    def on_gpu(self) -> bool:
        return str(self.config.get("device", "cpu")).startswith("cuda")

    @property
    def device(self) -> str:
        name = self.environment.get("device_name", self.config.get("device", "?"))
        if self.on_gpu:
            return name
        threads = (self.evaluation or {}).get("threads", self.environment.get("threads"))
        return f"{name} ({threads} thread{'s' if threads != 1 else ''})"

    @property
    def iterations(self) -> int:
        if self.evaluation:
            return int(self.evaluation["iteration"])
        return int(self.metrics["iteration"].max()) if len(self.metrics) else 0

    @property
    def train_minutes(self) -> float:
        if self.evaluation:
            return self.evaluation["train_time_s"] / 60
        return float(self.metrics["train_time_s"].max()) / 60 if len(self.metrics) else 0.0


@dataclass
class Results:
    exact_solve: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    profiles: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    runs: list[TrainingRun] = field(default_factory=list)
    benchmarks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # saved pytest-benchmark runs
    throughputs: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # metagrad throughput
    complexities: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # metagrad complexity


def _name(root: Path, path: Path, prefix: str) -> str:
    relative = path.relative_to(root).as_posix()
    name = relative if relative != "." else root.name
    return f"{prefix}/{name}" if prefix else name


def _training_run(folder: Path, name: str) -> TrainingRun | None:
    saved = json.loads((folder / "config.json").read_text())
    if "config" not in saved:
        return None
    evaluation = None
    if (folder / "eval.json").is_file():
        evaluation = json.loads((folder / "eval.json").read_text())
        if evaluation.get("split") != "test":
            evaluation = None
    environment = {k: v for k, v in saved.items() if k != "config"}
    spectra = {key: pd.read_csv(folder / filename) for key, filename in (("init", "spectrum-init.csv"),
                                                                         ("end", "spectrum.csv"))
               if (folder / filename).is_file()}
    lake = json.loads((folder / "lake_runs.json").read_text()) if (folder / "lake_runs.json").is_file() else None
    return TrainingRun(name, saved["config"], environment, pd.read_csv(folder / "metrics.csv"), evaluation, spectra,
                       lake)


def discover(roots: list[Path]) -> Results:
    """Every result below ``roots``, in one walk; names are paths relative to the root (prefixed by the
    root's own name when there are several roots). The report's own figures/ and tables/ are skipped."""
    results = Results()
    for root in roots:
        prefix = root.name if len(roots) > 1 else ""
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in (FIGURES, TABLES_DIR))
            folder = Path(folder)
            name = _name(root, folder, prefix)
            if "exact_solve.csv" in files:
                results.exact_solve.append((name, pd.read_csv(folder / "exact_solve.csv")))
            if "profile.csv" in files:
                results.profiles.append((name, pd.read_csv(folder / "profile.csv")))
            if "throughput.csv" in files:
                results.throughputs.append((name, pd.read_csv(folder / "throughput.csv")))
            if "complexity.csv" in files:
                results.complexities.append((name, pd.read_csv(folder / "complexity.csv")))
            if "config.json" in files and "metrics.csv" in files:
                run = _training_run(folder, name)
                if run is not None:
                    results.runs.append(run)
            for filename in files:
                if re.fullmatch(r"\d{4}_.+\.json", filename):  # pytest-benchmark's --benchmark-save names
                    saved = json.loads((folder / filename).read_text())
                    if "benchmarks" in saved and "machine_info" in saved:
                        results.benchmarks.append((_name(root, folder / filename, prefix), saved))
    for found in (results.exact_solve, results.profiles, results.benchmarks, results.throughputs,
                  results.complexities):
        found.sort(key=lambda item: item[0])
    results.runs.sort(key=lambda run: run.name)
    return results


def _slug(name: str) -> str:
    return name.replace("/", "--")


def setting_label(setting: str) -> str:
    dataset, ways, shots, _ = SETTINGS[setting]
    return f"{'Omniglot' if dataset == 'omniglot' else 'Mini-ImageNet'} {ways}-way {shots}-shot"


def representative_run(runs: list[TrainingRun], setting: str, variant: str) -> TrainingRun | None:
    """The run shown in a table cell: evaluated, of this setting and variant; those matching the
    preset as it stands first, then the longest (meta-iterations, then training time), then by name."""
    candidates = [r for r in runs if r.evaluation and r.setting == setting and r.variant == variant]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (bool(r.differences), -r.iterations, -r.train_minutes, r.name))


# ---------------------------------------------------------------- tables

def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _training(run: TrainingRun) -> str:
    planned = int(run.config.get("iterations", 0))
    minutes = run.train_minutes
    return f"{run.iterations:,} of {planned:,} it, {minutes:.1f} min" if minutes < 10 else \
        f"{run.iterations:,} of {planned:,} it, {minutes:.0f} min"


def table_runs(results: Results) -> list[TrainingRun]:
    """The runs that may stand for a cell of Tables 2 and 3, and in the validation and test figures."""
    return [run for run in results.runs if not run.in_curvature_study
            and run.config.get("omniglot_split", "random") == "random"]  # Lake's split tests other characters


def accuracy_table(results: Results, key: str) -> str:
    """The paper's accuracy per cell beside ours, one column group per kind of device (CPU, GPU): each
    group shows its own representative run, so a short GPU run never hides behind a long CPU run."""
    title, settings = TABLES[key]
    groups = (("CPU", False), ("GPU", True))
    header = ["Setting", "Algorithm", "Paper (%)"]
    for group, _ in groups:
        header += [f"{group}: ours (%)", f"{group}: ours − paper", f"{group}: 95% CI (test tasks)", f"{group}: device",
                   f"{group}: training", f"{group}: run"]
    rows, filled = [], {group: 0 for group, _ in groups}
    for setting in settings:
        for variant, label in ALGORITHM_LABELS.items():
            paper = PAPER_ACCURACY[(setting, variant)]
            row = [setting_label(setting), label, f"{paper.mean} ± {paper.ci}"]
            for group, gpu in groups:
                runs = [r for r in table_runs(results) if r.on_gpu == gpu]
                run = representative_run(runs, setting, variant)
                if run is None:
                    unevaluated = [r.name for r in runs if r.setting == setting and r.variant == variant]
                    note = "not evaluated: " + ", ".join(unevaluated) if unevaluated else "no run"
                    row += ["missing", "—", "—", "—", "—", note]
                    continue
                filled[group] += 1
                ours = 100 * run.evaluation["accuracy"]
                differences = run.differences
                name = f"`{run.name}`" + (" (" + "; ".join(differences) + ")" if differences else "")
                row += [f"{ours:.2f}", f"{ours - paper.value:+.2f}",
                        f"± {100 * run.evaluation['ci95']:.2f} ({run.evaluation['tasks']})", run.device,
                        _training(run), name]
            rows.append(row)
    cells = len(settings) * len(ALGORITHM_LABELS)
    intro = (
        f"# {title}: the paper's accuracy beside ours\n\n"
        f"Of {cells} cells, {filled['CPU']} have an evaluated CPU run of ours and {filled['GPU']} an evaluated GPU "
        "run. \"Paper\" is the value printed in the paper (± its 95% confidence interval); \"ours\" is the mean "
        "test accuracy of our run over a fixed pool of test tasks (`metagrad eval`), with its 95% confidence "
        "half-width. Each device group shows one run per cell: where several exist, the one matching the preset "
        "as it stands today (bench/training/presets.py), then the longest; every run is listed in [runs.md](runs.md). The "
        "paper trained 60,000 meta-iterations; the \"training\" columns give ours: a short run is not a "
        "reproduction.\n\n"
    )
    return intro + _markdown_table(header, rows)


def runs_table(results: Results) -> str:
    header = ["Run", "Setting", "Algorithm", "Departs from preset", "Device", "Training", "Best validation (%)",
              "Last validation (%)", "Test (%)", "Support loss after adaptation"]
    rows = []
    for run in results.runs:
        metrics = run.metrics.dropna(subset=["val_accuracy"]) if len(run.metrics) else run.metrics
        if len(metrics):
            best = metrics.loc[metrics["val_accuracy"].idxmax()]
            last = metrics.iloc[-1]
            best_text = f"{100 * best['val_accuracy']:.2f} (it {int(best['iteration'])})"
            last_text = f"{100 * last['val_accuracy']:.2f} ± {100 * last['val_ci95']:.2f}"
        else:
            best_text = last_text = "—"
        if run.evaluation:
            test = f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}"
            loss = run.evaluation.get("support_loss_after_adaptation")
            loss_text = f"{loss:.3f}" if loss is not None else "—"
        else:
            test, loss_text = "not evaluated", "—"
        label = setting_label(run.setting) if run.setting in SETTINGS else run.setting
        rows.append([f"`{run.name}`", label, variant_label(run.variant),
                     "; ".join(run.differences) or "—", run.device, _training(run), best_text, last_text, test,
                     loss_text])
    intro = (f"# Training runs\n\n{len(results.runs)} runs found. Validation accuracy is on a fixed pool of "
             "validation tasks; test accuracy on 600 fixed test tasks unless the run's eval.json says otherwise.\n\n")
    return intro + (_markdown_table(header, rows) if rows else "No training runs were found.\n")


def profile_ratios_table(results: Results) -> str:
    from bench.harnesses.profile import ratios

    columns = {name: ratios(frame) for name, frame in results.profiles}
    keys = list(dict.fromkeys(key for values in columns.values() for key in values))
    rows = [[key] + [(f"{columns[name][key]:.3g}" if key in columns[name] and not math.isnan(columns[name][key])
                      else "—") for name in columns] for key in keys]
    intro = ("# Figure 2b in numbers\n\nRatios read off each profile (bench/harnesses/profile.py `ratios`), for each "
             "algorithm profiled: its memory at the most inner steps over the fewest and over one gradient's, and its "
             "time in gradients of the support loss; and a Hessian-vector product over a gradient.\n\n")
    if not columns:
        return intro + "No profiles were found.\n"
    return intro + _markdown_table(["Ratio"] + [f"`{name}`" for name in columns], rows)


def ratio(ratios: pd.DataFrame, preset_name: str, batched: pd.DataFrame, other_per_task: float | None) -> str:
    """Batched over per-task tasks/s: from the row's own result, else (marked *) from another result's
    per-task row on the same device."""
    if preset_name in ratios.index:
        return f"{float(ratios.loc[preset_name, 'batched_over_per_task']):.2f}"
    if len(batched) and other_per_task:
        return f"{float(batched['tasks_per_s'].iloc[0]) / other_per_task:.1f}*"
    return "—"


def throughput_table(results: Results) -> str:
    """Tasks per second of each engine per preset and device, and their ratio, from each throughput.csv."""
    from bench.harnesses.throughput import speedups

    intro = ("# Tasks per second, per-task engine against batched\n\n"
             "Whole training iterations (sampling, meta-gradients, Adam) per second times the meta-batch, per "
             "engine (`metagrad throughput`). The last columns are the batched engine's largest relative "
             "difference from the per-task reference over one meta-batch: in float64 (do the engines compute "
             "the same thing?) and in float32 (how far does rounding move the solvers' discrete decisions?); "
             "— where the run did not compare (`--check-tasks 0`). A batched row whose result has no per-task "
             "row of its preset takes its ratio from the per-task row of the same device and preset in another "
             "result (marked *): the per-task engine runs one task at a time, so its tasks/s does not depend on "
             "the meta-batch. Operations are the computing device operations of one meta-batch's meta-gradients "
             "(`bench/measure/operations.py`, counted eagerly; on CUDA most launch one kernel each), — where the result predates "
             "the count.\n\n")
    # per-task tasks/s per (device name, preset), from every result: for results that measured only batched rows
    per_task = {(row["device_name"], row["preset"]): float(row["tasks_per_s"])
                for _, frame in results.throughputs for _, row in frame[frame["engine"] == "per-task"].iterrows()}

    def difference(batched: pd.DataFrame, column: str) -> str:
        if not len(batched) or column not in batched or pd.isna(batched[column].iloc[0]):
            return "—"
        return f"{float(batched[column].iloc[0]):.1e}"

    def operations(group: pd.DataFrame, engine: str) -> str:
        rows = group[group["engine"] == engine]
        if not len(rows) or "operations_per_meta_batch" not in rows or pd.isna(rows["operations_per_meta_batch"].iloc[0]):
            return "—"
        return f"{int(rows['operations_per_meta_batch'].iloc[0]):,}"

    rows = []
    for name, frame in results.throughputs:
        ratios = speedups(frame).set_index("preset")
        for preset_name, group in frame.groupby("preset", sort=False):
            first = group.iloc[0]
            batched = group[group["engine"] == "batched"]
            graph = bool(batched["cuda_graph"].any()) if "cuda_graph" in batched else False
            compiled = bool(batched["compiled"].any()) if "compiled" in batched else False
            layout = ", channels last" if "channels_last" in batched and bool(batched["channels_last"].any()) else ""
            rows.append([
                f"`{name}`", preset_name, f"{first['device_name']} ({first['threads']} threads)"
                if first["device"] == "cpu" else str(first["device_name"]), str(int(first["meta_batch"])),
                *(f"{float(group[group['engine'] == e]['tasks_per_s'].iloc[0]):.3g}" if (group["engine"] == e).any()
                  else "—" for e in ("per-task", "batched")),
                ratio(ratios, preset_name, batched, per_task.get((first["device_name"], preset_name))),
                *(operations(group, e) for e in ("per-task", "batched")),
                ("CUDA graph" if graph else "torch.compile" if compiled else "none") + layout,
                str(first["sampler"]) if "sampler" in group else "host",
                difference(batched, "max_rel_diff_vs_per_task"), difference(batched, "max_rel_diff_float32"),
            ])
    if not rows:
        return intro + "No throughput results.\n"
    return intro + _markdown_table(["Result", "Preset", "Device", "Meta-batch", "Per-task (tasks/s)",
                                    "Batched (tasks/s)", "Batched / per-task", "Operations, per-task",
                                    "Operations, batched", "Captured by", "Sampler", "Max rel. diff (float64)",
                                    "Max rel. diff (float32)"], rows)


def complexity_table(results: Results) -> str:
    """The paper's Table 1 beside its measurement: fitted exponents of kappa in the least work and the memory."""
    from bench.harnesses.complexity import METHODS, fitted_exponents

    intro = ("# Table 1, measured: work and memory for an eps-accurate meta-gradient\n\n"
             "From `metagrad complexity` on linear regression in float64: for each kappa and eps, each method's "
             "least work (gradients + Hessian-vector products) whose relative error against the exact "
             "meta-gradient (Definition 3) is at most eps. *Exponent*: the least-squares slope of log work (or "
             "log memory) against log kappa. *Memory*: peak saved bytes over one gradient's, at the largest kappa "
             "and smallest eps.\n\n")
    blocks = []
    for name, frame in results.complexities:
        exponents = fitted_exponents(frame)
        epsilons = sorted(frame["epsilon"].unique(), reverse=True)
        reached = frame[frame["reached"].astype(bool)]
        rows = []
        for method in METHODS:
            mine = exponents[exponents["method"] == method.key].set_index("epsilon")
            if not len(mine):
                continue
            hardest = reached[reached["method"] == method.key].sort_values(["kappa", "epsilon"],
                                                                          ascending=[False, True])
            memory = f"{hardest['memory_gradients'].iloc[0]:.3g} (kappa {hardest['kappa'].iloc[0]:g}, " \
                     f"eps {hardest['epsilon'].iloc[0]:g})" if len(hardest) else "—"
            rows.append([method.label, method.compute_theory, f"{method.exponent:g}",
                         *(f"{mine.loc[e, 'work_exponent']:.2f}" if e in mine.index else "—" for e in epsilons),
                         method.memory_theory,
                         *(f"{mine.loc[e, 'memory_exponent']:.2f}" if e in mine.index else "—" for e in epsilons),
                         memory])
        first = frame.iloc[0]
        header = (f"## `{name}`\n\nd = {int(first['dim'])}, lambda = {first['lam']:g}, kappa from "
                  f"{frame['kappa'].min():g} to {frame['kappa'].max():g}, {int(first['tasks'])} task(s) per kappa; "
                  f"{int((~frame['reached'].astype(bool)).sum())} of {len(frame)} cells not reached.\n\n")
        blocks.append(header + _markdown_table(
            ["Method", "Compute (paper)", "Theory exponent", *(f"Work exponent, eps {e:g}" for e in epsilons),
             "Memory (paper)", *(f"Memory exponent, eps {e:g}" for e in epsilons), "Memory (gradients)"], rows))
    if not blocks:
        return intro + "No complexity results.\n"
    return intro + "\n".join(blocks)


def _imaml(run: TrainingRun):
    """The run's iMAML with every hyperparameter, those the run left at their defaults included."""
    return make_algorithm(run.config["algorithm"], **run.config["hyperparameters"])


def _curvature_key(run: TrainingRun) -> tuple:
    imaml = _imaml(run)
    return (run.setting, float(imaml.lam), imaml.meta_solver, float(imaml.damping))


def _solver_name(run: TrainingRun) -> str:
    imaml = _imaml(run)
    return f"{imaml.meta_solver}, damping {imaml.damping:g}" if imaml.damping else imaml.meta_solver


def lake_table(results: Results) -> str:
    """Runs trained on Lake's split: Lake's 20 one-shot runs and the 600 tasks of his evaluation alphabets."""
    from bench.harnesses.lake_runs import PUBLISHED_ERROR

    intro = ("# Lake et al.'s one-shot benchmark\n\nRuns meta-trained on Lake's background alphabets "
             "(`--omniglot-split lake`), scored by `metagrad lake-runs` on his 20 runs of 20-way one-shot "
             "classification (error rate over the runs, 95% interval) and by `metagrad eval` on 600 tasks of the "
             "evaluation alphabets. Published error rates: "
             + ", ".join(f"{who} {100 * rate:.1f}%" for who, rate in PUBLISHED_ERROR.items()) + ".\n\n")
    runs = [run for run in results.runs if run.config.get("omniglot_split", "random") == "lake"]
    if not runs:
        return intro + "No runs on Lake's split were found.\n"
    rows = [[f"`{run.name}`", variant_label(run.variant),
             f"{100 * run.lake['error_rate']:.1f} ± {100 * run.lake['ci95']:.1f}" if run.lake else "not scored",
             f"{100 * (1 - run.evaluation['accuracy']):.1f} ± {100 * run.evaluation['ci95']:.1f}" if run.evaluation
             else "not evaluated", run.device, _training(run)] for run in runs]
    return intro + _markdown_table(["Run", "Algorithm", "Lake's 20 runs: error (%)",
                                    "600 evaluation-alphabet tasks: error (%)", "Device", "Training"], rows)


def _dips(validated: pd.DataFrame, column: str, spec: str) -> str:
    """'N: a / b': the N validations that fell from the one before (dips), and the mean of ``column`` over the
    logged windows that ended in a dip (a) against the windows that ended rising (b); '—' where none logged it."""
    change = validated["val_accuracy"].diff()

    def mean_over(mask: pd.Series) -> str:
        values = validated.loc[mask, column].dropna() if column in validated else []
        return format(values.mean(), spec) if len(values) else "—"

    return f"{int((change < 0).sum())}: {mean_over(change < 0)} / {mean_over(change >= 0)}"


def full_size_imaml_runs(results: Results) -> list[TrainingRun]:
    """iMAML-GD runs of a preset as it stands, the paper's CG (``imaml-gd``) or MINRES (``imaml-gd-minres``),
    outside the curvature study: the two meta-gradient solvers at full size, seeds told apart."""
    runs = [r for r in results.runs if not r.in_curvature_study and r.variant in META_SOLVER_VARIANTS
            and not r.differences]
    return sorted(runs, key=lambda r: (r.setting, _solver_name(r), int(r.config.get("seed", 0)), r.name))


def full_size_table(runs: list[TrainingRun]) -> str:
    """Per full-size run: its seed, how often its solve met non-positive curvature, its residual (the mean
    over the logged windows, how many windows averaged above 1: a returned meta-gradient that solves the
    system worse than g = 0, and the residual of the windows that ended in a validation dip against the
    others'), and the accuracy it reached."""
    intro = ("## The presets at full size: the paper's CG against MINRES\n\nEvery run of an iMAML-GD preset as "
             "it stands (full network and meta-batch) outside the study above, CG (the paper's) or MINRES for the "
             "meta-gradient; runs of one seed saw the same tasks. 'Residual > 1' counts the logged windows "
             "whose mean relative residual was above 1; 'dips' counts the validations that fell from the one "
             "before, and compares the mean residual of the windows that ended in a dip with that of the "
             "others.\n\n")
    if not runs:
        return intro + "No such runs were found.\n"
    rows = []
    for run in runs:
        metrics = run.metrics
        validated = metrics.dropna(subset=["val_accuracy"])
        best = validated.loc[validated["val_accuracy"].idxmax()] if len(validated) else None
        residual = metrics["cg_residual_mean"].dropna() if "cg_residual_mean" in metrics else pd.Series(dtype=float)
        fraction = metrics.get("cg_negative_curvature_fraction")
        rows.append([
            run.setting, _solver_name(run), str(run.config.get("seed", 0)), run.device, _training(run),
            f"{fraction.mean():.3f}" if fraction is not None else "—",
            f"{residual.mean():.3g}" if len(residual) else "—",
            f"{int((residual > 1).sum())} of {len(residual)}" if len(residual) else "—",
            _dips(validated, "cg_residual_mean", ".3g"),
            f"{100 * best['val_accuracy']:.1f} (it {int(best['iteration'])})" if best is not None else "—",
            f"{100 * validated['val_accuracy'].iloc[-1]:.1f}" if len(validated) else "—",
            f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}" if run.evaluation
            else "not evaluated", f"`{run.name}`"])
    return intro + _markdown_table(["Setting", "Solver", "Seed", "Device", "Training", "Indefinite (all)",
                                    "Residual", "Residual > 1", "Dips: residual in dip / other windows",
                                    "Best validation (%)", "Last validation (%)", "Test (%)", "Run"], rows)


def curvature_table(results: Results) -> str:
    """The curvature study: per run, how often the meta-gradient system met non-positive curvature, the
    solve's residual, the spectrum at the start and the end, and the accuracy reached; then the full-size
    runs of the two solvers (``full_size_table``)."""
    full_size = "\n" + full_size_table(full_size_imaml_runs(results))
    runs = sorted((r for r in results.runs if r.in_curvature_study), key=_curvature_key)
    intro = ("# iMAML's meta-gradient system when it is indefinite\n\nEach run: iMAML with gradient descent inside, "
             "one lambda and one meta-gradient solver, equal iterations and seeds (so the same tasks). "
             "'Indefinite' is the fraction of training tasks whose solve met p^T A p <= 0 (CG stops there; for "
             "MINRES a Lanczos vector with v^T A v <= 0), over the whole run and over its last quarter; 'residual' "
             "is the mean relative residual of the system solved; 'spectrum' is the share of `metagrad spectrum`'s "
             "tasks whose I + H/lambda has a negative eigenvalue, at initialization and at the end. 'Dips' counts "
             "the validations that fell from the one before, and compares the indefinite share of the training "
             "windows that ended in a dip with that of the others.\n\n")
    if not runs:
        return intro + "No runs of the study were found.\n" + full_size
    rows = []
    for run in runs:
        metrics = run.metrics.dropna(subset=["val_accuracy"])
        fraction = metrics.get("cg_negative_curvature_fraction")
        quarter = metrics[metrics["iteration"] > 0.75 * metrics["iteration"].max()] if len(metrics) else metrics
        last_val = metrics["val_accuracy"].iloc[-1] if len(metrics) else float("nan")
        best = metrics.loc[metrics["val_accuracy"].idxmax()] if len(metrics) else None

        def share(key: str, run: TrainingRun = run) -> str:
            spectrum = run.spectra.get(key)
            return f"{int(spectrum['indefinite'].sum())}/{len(spectrum)}" if spectrum is not None else "—"

        test = (f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}"
                if run.evaluation else "not evaluated")
        rows.append([
            run.setting, f"{_curvature_key(run)[1]:g}", _solver_name(run), f"{run.iterations:,}",
            f"{fraction.mean():.2f}" if fraction is not None else "—",
            f"{quarter['cg_negative_curvature_fraction'].mean():.2f}" if fraction is not None else "—",
            f"{metrics['cg_residual_mean'].mean():.3g}" if "cg_residual_mean" in metrics else "—",
            f"{share('init')} → {share('end')}",
            _dips(metrics, "cg_negative_curvature_fraction", ".2f"),  # a dip's window's curvature against the others'
            f"{100 * best['val_accuracy']:.1f} (it {int(best['iteration'])})" if best is not None else "—",
            f"{100 * last_val:.1f}", test, f"`{run.name}`",
        ])
    return intro + _markdown_table(["Setting", "λ", "Solver", "Iterations", "Indefinite (all)", "Indefinite (last ¼)",
                                    "Residual", "Spectrum: indefinite", "Dips: indefinite in dip / other windows",
                                    "Best validation (%)",
                                    "Last validation (%)", "Test (%)", "Run"], rows) + full_size


def plot_curvature(runs: list[TrainingRun], setting: str):
    """Validation accuracy and the share of tasks meeting non-positive curvature against iterations: one
    color per lambda, one line style per solver."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    lambdas = sorted({_curvature_key(r)[1] for r in runs})
    solvers = sorted({_solver_name(r) for r in runs})
    styles = {solver: line_style(i) for i, solver in enumerate(solvers)}
    for run in sorted(runs, key=_curvature_key):
        metrics = run.metrics.dropna(subset=["val_accuracy"])
        color = f"C{lambdas.index(_curvature_key(run)[1])}"
        style, marker = styles[_solver_name(run)]
        label = f"λ {_curvature_key(run)[1]:g}, {_solver_name(run)}"
        axes[0].plot(metrics["iteration"], 100 * metrics["val_accuracy"], color=color, linestyle=style, marker=marker,
                     markersize=3, label=label)
        axes[1].plot(metrics["iteration"], metrics["cg_negative_curvature_fraction"], color=color, linestyle=style,
                     marker=marker, markersize=3, label=label)
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].set_ylabel("share of training tasks whose solve met p^T A p <= 0")
    for ax in axes:
        ax.set_xlabel("meta-iterations")
        ax.grid(True, alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"iMAML-GD, {setting_label(setting)}: lambda and meta-gradient solver (CPU, reduced network)")
    fig.tight_layout()
    return fig


def plot_full_size(runs: list[TrainingRun], setting: str):
    """The full-size iMAML-GD runs (``full_size_imaml_runs``) that logged their solve's residual: validation
    accuracy and the mean relative residual against meta-iterations, one color per solver, one line style per
    run of a solver."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    solvers = sorted({_solver_name(r) for r in runs})
    seen: dict[str, int] = {}
    for run in runs:
        seed, solver = int(run.config.get("seed", 0)), _solver_name(run)
        color = f"C{solvers.index(solver)}"
        nth = seen[solver] = seen.get(solver, -1) + 1
        style, marker = line_style(nth)
        label = f"{_solver_name(run)}, seed {seed}: {run.name} ({run.device})"
        validated = run.metrics.dropna(subset=["val_accuracy"])
        axes[0].plot(validated["iteration"], 100 * validated["val_accuracy"], color=color, linestyle=style,
                     marker=marker, markersize=3, label=label)
        if "cg_residual_mean" in run.metrics:
            logged = run.metrics.dropna(subset=["cg_residual_mean"])
            axes[1].plot(logged["iteration"], logged["cg_residual_mean"], color=color, linestyle=style, marker=marker,
                         markersize=3, label=label)
    axes[1].axhline(1.0, color="grey", linestyle="-.", linewidth=0.8, label="residual of g = 0")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].set_ylabel("mean relative residual of the meta-gradient system")
    for ax in axes:
        ax.set_xlabel("meta-iterations")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"iMAML-GD, {setting_label(setting)}, the preset at full size: CG (the paper's) against MINRES")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    handles += axes[1].get_legend_handles_labels()[0][-1:]  # the line of g = 0
    labels += axes[1].get_legend_handles_labels()[1][-1:]
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    return fig


def _natural(text: str) -> list:
    """Sort key that puts "maml-4" before "maml-16"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def benchmarks_table(results: Results) -> str:
    intro = ("# Saved benchmark runs (pytest-benchmark)\n\nEach saved run of `pytest tests/benchmarks --benchmark-only "
             "--benchmark-save=NAME`: median time per call and calls per second, with the deterministic counters "
             "the benchmark recorded (gradient and Hessian-vector-product evaluations, FLOPs, peak bytes saved for "
             "backward) and the machine it ran on.\n\n")
    if not results.benchmarks:
        return intro + "No saved benchmark runs were found.\n"
    sections = []
    for name, saved in results.benchmarks:
        machine = saved["machine_info"]
        fingerprint = machine.get("metagrad", {})
        described = (f"{fingerprint.get('cpu') or machine.get('cpu', {}).get('brand_raw', '?')}, "
                     f"{fingerprint.get('threads', '?')} threads, torch {fingerprint.get('torch', '?')}"
                     + (f", GPUs: {', '.join(fingerprint['gpus'])}" if fingerprint.get("gpus") else ""))
        rows = []
        for bench in sorted(saved["benchmarks"], key=lambda b: _natural(b["fullname"])):
            info, stats = bench.get("extra_info", {}), bench["stats"]

            def count(key: str, info: dict = info) -> str:
                return f"{info[key]:,}" if key in info else "—"

            rows.append([f"`{bench['name']}`", f"{1000 * stats['median']:.2f}", f"{stats['ops']:.1f}",
                         count("grad_evals"), count("hvp_evals"), count("flops"), count("saved_bytes"),
                         count("images")])
        sections.append(f"## `{name}`\n\n{described}; saved {saved.get('datetime', '?')[:10]}.\n\n"
                        + _markdown_table(["Benchmark", "Median (ms)", "Per second", "Gradients", "HVPs", "FLOPs",
                                           "Saved bytes", "Images"], rows))
    return intro + "\n".join(sections)


# ---------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_validation(runs: list[TrainingRun], setting: str):
    """Validation accuracy against meta-iterations and against training time, one line per run,
    colored by algorithm; the paper's test accuracy dotted in the same color."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    minutes: list[float] = []
    iterations: list[float] = []
    seen: dict[str, int] = {}
    for run in runs:
        metrics = run.metrics.dropna(subset=["val_accuracy"])
        if not len(metrics):
            continue
        color = variant_color(run.variant)
        nth = seen[run.variant] = seen.get(run.variant, -1) + 1  # runs of one algorithm: same color, own style
        style, marker = line_style(nth)
        label = f"{variant_label(run.variant)}: {run.name} ({run.device})"
        x_time = metrics["train_time_s"] / 60
        minutes += list(x_time)
        iterations += list(metrics["iteration"])
        for ax, x in ((axes[0], metrics["iteration"]), (axes[1], x_time)):
            y, band = 100 * metrics["val_accuracy"], 100 * metrics["val_ci95"]
            ax.plot(x, y, color=color, linestyle=style, marker=marker, markersize=4, label=label)
            ax.fill_between(x, y - band, y + band, color=color, alpha=0.12)
    for variant in sorted({run.variant for run in runs}):
        paper = PAPER_ACCURACY.get((setting, variant))
        if paper:
            for ax in axes:
                ax.axhline(paper.value, color=variant_color(variant), linestyle=":", linewidth=1.2,
                           label=f"paper, {ALGORITHM_LABELS[variant]} (test)" if ax is axes[0] else None)
    ways = SETTINGS[setting][1]
    for ax in axes:
        ax.axhline(100 / ways, color="grey", linestyle="-.", linewidth=0.8, label="chance" if ax is axes[0] else None)
        ax.grid(True, alpha=0.3)
    for ax, values in ((axes[0], iterations), (axes[1], minutes)):
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 30:  # runs of seconds beside runs of hours
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xlabel("meta-iterations")
    axes[1].set_xlabel("training time (minutes, wall clock; validation excluded)")
    axes[0].set_ylabel("validation accuracy (%), band: 95% CI")
    fig.suptitle(f"{setting_label(setting)}: validation accuracy during meta-training")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    return fig


def plot_test_accuracy(runs: list[TrainingRun]):
    """Per setting, each algorithm's test accuracy with its 95% CI (every evaluated run), the paper's value
    marked; a row without a run says so."""
    plt = _pyplot()
    settings = list(SETTINGS)
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4.2), sharey=True)
    variants = list(ALGORITHM_LABELS)
    for ax, setting in zip(axes, settings):
        for row, variant in enumerate(variants):
            paper = PAPER_ACCURACY[(setting, variant)]
            ax.errorbar(paper.value, row + 0.15, xerr=paper.half_width, fmt="x", color="black", capsize=3,
                        label="paper" if row == 0 else None)
            # the run each device group of Tables 2 and 3 shows: two markers at most, each in its own place of the
            # algorithm's row
            ours = [run for gpu in (False, True)
                    if (run := representative_run([r for r in runs if r.on_gpu == gpu], setting, variant))]
            for run in ours:
                gpu = run.on_gpu
                accuracy, y = 100 * run.evaluation["accuracy"], row - (0.35 if gpu else 0.12)
                ax.errorbar(accuracy, y, xerr=100 * run.evaluation["ci95"], fmt="s" if gpu else "o", capsize=3,
                            color=variant_color(variant), markersize=6, markerfacecolor="white" if gpu else None)
                ax.annotate(f"{accuracy:.1f}", (accuracy, y), xytext=(6, -2), textcoords="offset points", fontsize=7,
                            va="center")
            if not ours:
                ax.text(0.5, row - 0.1, "no run of ours", transform=ax.get_yaxis_transform(), fontsize=8,
                        color="grey", va="center", ha="center")
        chance = 100 / SETTINGS[setting][1]
        ax.axvline(chance, color="grey", linestyle="-.", linewidth=0.8)
        ax.set_xlim(chance - 5, 101)
        ax.set_title(setting_label(setting), fontsize=10)
        ax.set_xlabel("test accuracy (%)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(variants)), [ALGORITHM_LABELS[v] for v in variants])
    axes[0].set_ylim(len(variants) - 0.5, -0.7)  # first algorithm on top, room for its markers
    handles = [plt.Line2D([], [], marker="x", color="black", linestyle="", label="paper ± 95% CI"),
               plt.Line2D([], [], marker="o", color="grey", linestyle="", label="ours, CPU ± 95% CI"),
               plt.Line2D([], [], marker="s", color="grey", markerfacecolor="white", linestyle="",
                          label="ours, GPU ± 95% CI"),
               plt.Line2D([], [], color="grey", linestyle="-.", label="chance")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.suptitle("Few-shot test accuracy: ours (the run Tables 2 and 3 show per device; see tables/) against the "
                 "paper's")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the report

def _index(results: Results, figures: list[tuple[str, str]], tables: list[tuple[str, str]], notes: bool) -> str:
    """The report's index; ``notes``: a notes/ folder (the full accounts) lies beside it, so that every link
    resolves wherever the report is written."""
    lines = ["# metagrad reports", "",
             "Generated by `metagrad report` from the result folders listed below; regenerate with "
             "`metagrad report --out` and this folder (the commands that produced each result are in the README"
             + (" and, with the full account of each measurement, in [notes/](notes/))." if notes else ")."), ""]
    lines += ["## Tables", ""] + [f"- [{title}]({path})" for path, title in tables] + [""]
    lines += ["## Figures", ""] + [f"- [{title}]({path})" for path, title in figures] + [""]
    lines += ["## Results found", ""]
    lines += [f"- exact-solve: `{name}`" for name, _ in results.exact_solve] or ["- exact-solve: none"]
    lines += [f"- profile: `{name}`" for name, _ in results.profiles] or ["- profile: none"]
    lines += [f"- benchmark run: `{name}`" for name, _ in results.benchmarks] or ["- benchmark runs: none"]
    lines += [f"- throughput: `{name}`" for name, _ in results.throughputs] or ["- throughput: none"]
    lines += [f"- complexity: `{name}`" for name, _ in results.complexities] or ["- complexity: none"]
    for run in results.runs:
        state = "evaluated" if run.evaluation else "not evaluated"
        lines.append(f"- training run: `{run.name}` ({state})")
    if not results.runs:
        lines.append("- training runs: none")
    missing = []
    if not results.exact_solve:
        missing.append("Figure 2a (no exact_solve.csv)")
    if not results.profiles:
        missing.append("Figure 2b (no profile.csv)")
    if not results.runs:
        missing.append("accuracy plots (no training runs)")
    if missing:
        lines += ["", "## Missing", ""] + [f"- {item}" for item in missing]
    return "\n".join(lines) + "\n"


def render_report(roots: list[Path], out: Path) -> list[Path]:
    """Render every figure and table found from ``roots`` into ``out``; returns the files written.
    Files of an earlier report that this one no longer produces are removed from figures/ and tables/."""
    results = discover(roots)
    written: list[Path] = []
    figures: list[tuple[str, str]] = []
    tables: list[tuple[str, str]] = []

    def figure(fig, filename: str, title: str) -> None:
        path = out / FIGURES / filename
        save_figure(fig, path)
        _pyplot().close(fig)
        written.append(path)
        figures.append((f"{FIGURES}/{filename}", title))

    def table(text: str, filename: str, title: str) -> None:
        path = out / TABLES_DIR / filename
        write_text(path, text)
        written.append(path)
        tables.append((f"{TABLES_DIR}/{filename}", title))

    for key, (title, _) in TABLES.items():
        table(accuracy_table(results, key), f"{key}.md", title + ", paper against ours")
    table(runs_table(results), "runs.md", "Every training run")
    table(profile_ratios_table(results), "fig2b-ratios.md", "Figure 2b in numbers (ratios per profile)")
    table(benchmarks_table(results), "benchmarks.md", "Saved pytest-benchmark runs, with their work counters")
    table(throughput_table(results), "throughput.md", "Tasks per second, per-task engine against batched")
    table(complexity_table(results), "table1.md", "Table 1, measured: work and memory for an eps-accurate meta-gradient")
    table(lake_table(results), "lake-runs.md", "Lake et al.'s one-shot benchmark: runs on Lake's split")
    table(curvature_table(results), "curvature.md", "iMAML's meta-gradient system when it is indefinite: lambda and solver")

    from bench.harnesses.complexity import plot_complexity
    from bench.harnesses.exact_solve import exact_solve_title, plot_exact_solve
    from bench.harnesses.profile import plot_profile, profile_title
    from bench.harnesses.throughput import plot_throughput

    for name, frame in results.exact_solve:
        figure(plot_exact_solve(frame, exact_solve_title(frame) + f"\n({name})"), f"fig2a-{_slug(name)}.png",
               f"Figure 2a, meta-gradient error against inner steps: `{name}`")
    for name, frame in results.profiles:
        figure(plot_profile(frame, profile_title(frame) + f"\n({name})"), f"fig2b-{_slug(name)}.png",
               f"Figure 2b, time and memory against inner steps: `{name}`")
    for name, frame in results.throughputs:
        figure(plot_throughput(frame), f"throughput-{_slug(name)}.png", f"Tasks per second per engine: `{name}`")
    for name, frame in results.complexities:
        figure(plot_complexity(frame), f"table1-{_slug(name)}.png",
               f"Table 1, measured: work and memory against kappa: `{name}`")
    for setting in SETTINGS:
        runs = [run for run in table_runs(results) if run.setting == setting]
        if runs:
            figure(plot_validation(runs, setting), f"validation-{setting}.png",
                   f"Validation accuracy against meta-iterations and training time, {setting_label(setting)}")
    for setting in SETTINGS:
        runs = [run for run in results.runs if run.in_curvature_study and run.setting == setting]
        if runs:
            figure(plot_curvature(runs, setting), f"curvature-{setting}.png",
                   f"iMAML-GD with each lambda and meta-gradient solver, {setting_label(setting)}")
    for setting in SETTINGS:
        runs = [run for run in full_size_imaml_runs(results) if run.setting == setting
                and "cg_residual_mean" in run.metrics]
        if runs:
            figure(plot_full_size(runs, setting), f"curvature-full-size-{setting}.png",
                   f"iMAML-GD at full size, the paper's CG against MINRES, {setting_label(setting)}")
    figure(plot_test_accuracy(table_runs(results)), "test-accuracy.png",
           "Test accuracy with 95% CI per algorithm and setting, the paper's value marked")

    index = out / "index.md"
    write_text(index, _index(results, figures, tables, notes=(out / "notes").is_dir()))
    written.append(index)
    for folder in (out / FIGURES, out / TABLES_DIR):
        for stale in sorted(folder.glob("*")):
            if stale.suffix in (".png", ".md") and stale not in written:
                stale.unlink()
    return written
