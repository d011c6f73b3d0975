"""Tasks per second against the number of processes, from training runs (``metagrad scaling``).

Each run folder (written by ``metagrad train``, under ``torchrun`` or not) gives one row: its last
launch's world size and backend, the threads each process used, and its training throughput (tasks
over training time, validation and checkpoints excluded) from ``metrics.csv``. The figure draws tasks
per second against processes for each preset and engine, with perfect scaling from one process dashed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from metagrad.errors import require

COLUMNS = ["run", "preset", "algorithm", "engine", "world_size", "backend", "threads", "device_name", "meta_batch",
           "iterations", "tasks", "train_time_s", "tasks_per_s", "speedup"]


def scaling_row(run: Path) -> dict:
    config_path, metrics_path = run / "config.json", run / "metrics.csv"
    require(config_path.is_file() and metrics_path.is_file(), f"{run} is not a training run (no config.json and metrics.csv)")
    saved = json.loads(config_path.read_text())
    metrics = pd.read_csv(metrics_path)
    require(len(metrics) > 0, f"{metrics_path} has no logged iteration yet")
    last = metrics.iloc[-1]
    launch = (saved.get("launches") or [{}])[-1]
    config = saved["config"]
    return {"run": run.name, "preset": config.get("preset") or config["algorithm"], "algorithm": config["algorithm"],
            "engine": config.get("engine", "per-task"), "world_size": int(launch.get("world_size", 1)),
            "backend": launch.get("backend", "none"), "threads": saved.get("threads"),
            "device_name": saved.get("device_name"), "meta_batch": config["meta_batch"],
            "iterations": int(last["iteration"]), "tasks": int(last["tasks"]), "train_time_s": float(last["train_time_s"]),
            "tasks_per_s": float(last["tasks_per_s"])}


def scaling_table(runs: list[Path]) -> pd.DataFrame:
    frame = pd.DataFrame([scaling_row(run) for run in runs])
    # speedup over the same preset and engine on one process with as many threads per process
    base = frame[frame["world_size"] == 1].set_index(["preset", "engine", "threads"])["tasks_per_s"]
    frame["speedup"] = [row.tasks_per_s / base[(row.preset, row.engine, row.threads)]
                        if (row.preset, row.engine, row.threads) in base.index else float("nan")
                        for row in frame.itertuples()]
    return frame[COLUMNS].sort_values(["preset", "engine", "threads", "world_size"], ignore_index=True)


def plot_scaling(frame: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (preset, engine, threads), group in frame.groupby(["preset", "engine", "threads"], sort=False):
        group = group.sort_values("world_size")
        line, = ax.plot(group["world_size"], group["tasks_per_s"], marker="o",
                        label=f"{preset}, {engine}, {threads} thread(s)/process")
        one = group[group["world_size"] == 1]
        if len(one):
            ax.plot(group["world_size"], one["tasks_per_s"].iloc[0] * group["world_size"], linestyle="--",
                    color=line.get_color(), linewidth=0.8)
    ax.set_xlabel("processes (torchrun --nproc-per-node)")
    ax.set_ylabel("training tasks per second")
    ax.set_xticks(sorted(frame["world_size"].unique()))
    ax.set_title(f"Data-parallel scaling ({frame['device_name'].iloc[0]}; dashed: perfect)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def write_scaling(runs: list[Path], out: Path) -> pd.DataFrame:
    """``out/scaling.csv`` and ``out/scaling.png`` from the runs (each file atomically)."""
    from metagrad.bench.atomic import save_figure, write_csv

    frame = scaling_table(runs)
    write_csv(frame, out / "scaling.csv")
    save_figure(plot_scaling(frame), out / "scaling.png")
    return frame
