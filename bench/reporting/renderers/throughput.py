"""Tasks per second per engine: one table over every ``throughput.csv``, one figure each."""
from __future__ import annotations

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table, slug


def ratio(ratios: pd.DataFrame, preset_name: str, batched: pd.DataFrame, other_per_task: float | None) -> str:
    """Batched over per-task tasks/s: from the row's own result, else (marked *) from another result's
    per-task row on the same device."""
    if preset_name in ratios.index:
        return f"{float(ratios.loc[preset_name, 'batched_over_per_task']):.2f}"
    if len(batched) and other_per_task:
        return f"{float(batched['tasks_per_s'].iloc[0]) / other_per_task:.1f}*"
    return "—"


def task_by_task(batched: pd.DataFrame) -> bool:
    """Whether the batched row ran the per-task engine task by task (the same code: its ratio is no speed-up)."""
    if not len(batched) or "task_by_task" not in batched:  # results written before the column existed
        return False
    return any(value is True or value == 1 or str(value).lower() == "true" for value in batched["task_by_task"])


def throughput_table(throughputs: list[tuple[str, pd.DataFrame]]) -> str:
    """Tasks per second of each engine per preset and device, and their ratio, from each throughput.csv."""
    from metagrad.bench.harnesses.throughput import speedups

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
                for _, frame in throughputs for _, row in frame[frame["engine"] == "per-task"].iterrows()}

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
    for name, frame in throughputs:
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
                "— (task by task)" if task_by_task(batched) else
                ratio(ratios, preset_name, batched, per_task.get((first["device_name"], preset_name))),
                *(operations(group, e) for e in ("per-task", "batched")),
                ("CUDA graph" if graph else "torch.compile" if compiled else "none") + layout,
                str(first["sampler"]) if "sampler" in group else "host",
                difference(batched, "max_rel_diff_vs_per_task"), difference(batched, "max_rel_diff_float32"),
            ])
    if not rows:
        return intro + "No throughput results.\n"
    return intro + markdown_table(["Result", "Preset", "Device", "Meta-batch", "Per-task (tasks/s)",
                                    "Batched (tasks/s)", "Batched / per-task", "Operations, per-task",
                                    "Operations, batched", "Captured by", "Sampler", "Max rel. diff (float64)",
                                    "Max rel. diff (float32)"], rows)


def render(results: list[Result]) -> Rendering:
    from metagrad.bench.harnesses.throughput import plot_throughput

    throughputs = [(result.name, pd.read_csv(result.folder / "throughput.csv")) for result in results]
    table = Table("throughput.md", "Tasks per second, per-task engine against batched", throughput_table(throughputs))
    figures = tuple(Figure(f"throughput-{slug(name)}.png", f"Tasks per second per engine: `{name}`",
                           lambda frame=frame: plot_throughput(frame)) for name, frame in throughputs)
    return Rendering((table,), figures)
