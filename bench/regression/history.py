"""The history of saved benchmark runs: each benchmark's counters and time ratio across commits, by machine.

A saved run is pytest-benchmark's JSON (``pytest tests/benchmarks --benchmark-only --benchmark-save=NAME``): its
``commit_info`` tags it with the commit (``+`` where the checkout differed from it), ``machine_info.metagrad`` with the
machine's fingerprint. The time ratio is a benchmark's median over one gradient of the same network on the same batch,
measured in the same process (``extra_info.time_ratio``); runs saved before it was recorded get it, for the
meta-gradient benchmarks alone, from the same run's gradient benchmark on the same problem, which times that same
operation. Reading only: nothing here computes a benchmark.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from metagrad.bench.regression.gate import GATED

COUNTER_LABELS = {"grad_evals": "gradients", "hvp_evals": "Hessian-vector products", "flops": "FLOPs",
                  "saved_bytes": "saved bytes", "operations": "device operations", "images": "images"}


@dataclass(frozen=True)
class SavedRun:
    name: str  # its file name without .json: NNNN_NAME
    path: Path
    commit: str  # 12 hex digits, + where the checkout differed from the commit
    time: str  # ISO date and time it was saved
    machine: str  # the fingerprint in words
    benchmarks: dict[str, dict[str, Any]]  # name -> extra_info with median_s and time_ratio


def machine_words(machine_info: dict[str, Any]) -> str:
    fingerprint = machine_info.get("metagrad", {})
    cpu = fingerprint.get("cpu") or machine_info.get("cpu", {}).get("brand_raw", "?")
    gpus = f", {', '.join(fingerprint['gpus'])}" if fingerprint.get("gpus") else ""
    return f"{cpu}, {fingerprint.get('threads', '?')} threads, torch {fingerprint.get('torch', '?')}{gpus}"


def is_saved_run(data: Any) -> bool:
    return isinstance(data, dict) and "benchmarks" in data and "machine_info" in data


def read_saved_run(path: Path) -> SavedRun | None:
    """One saved run, or None where ``path`` is not one (a counter file, another JSON)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not is_saved_run(data):
        return None
    commit_info = data.get("commit_info") or {}
    commit = (commit_info.get("id") or "unknown")[:12] + ("+" if commit_info.get("dirty") else "")
    benchmarks = {}
    for entry in data["benchmarks"]:
        info = dict(entry.get("extra_info", {}))
        info["median_s"] = entry["stats"]["median"]
        benchmarks[entry["name"]] = info
    _fill_time_ratios(benchmarks)
    return SavedRun(path.stem, path, commit, data.get("datetime") or commit_info.get("time") or "",
                    machine_words(data["machine_info"]), benchmarks)


def _fill_time_ratios(benchmarks: dict[str, dict[str, Any]]) -> None:
    for name, info in benchmarks.items():
        if "time_ratio" in info:
            info["ratio_from"] = "in-process reference"
            continue
        match = re.match(r"test_(meta_gradient|hessian_vector_product_against_gradient)\[(\w+)-", name)
        reference = match and benchmarks.get(f"test_hessian_vector_product_against_gradient[{match.group(2)}-gradient]")
        if reference:
            info["time_ratio"] = info["median_s"] / reference["median_s"]
            info["ratio_from"] = "the run's gradient benchmark"


def find_saved_runs(folders: list[Path]) -> list[SavedRun]:
    """Every saved run below ``folders``, oldest first (by the time it was saved, then its name)."""
    runs = []
    for folder in folders:
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*.json"))
        runs += [run for run in (read_saved_run(path) for path in paths) if run is not None]
    return sorted(runs, key=lambda run: (run.time, run.name))


def not_gated_now() -> set[str]:
    """The benchmarks the work gate leaves out today (a run saved before they were marked says nothing of it)."""
    from metagrad.bench.regression.cases import meta_batch_cases, tasks_per_second_cases

    return {case.name for case in tasks_per_second_cases() + meta_batch_cases() if case.not_gated}


def history_frame(runs: list[SavedRun]) -> pd.DataFrame:
    """One row per run and benchmark: the run, its commit and machine, the counters, median seconds, time ratio."""
    rows = []
    left_out = not_gated_now()
    for order, run in enumerate(runs):
        for name, info in run.benchmarks.items():
            rows.append({"order": order, "run": run.name, "commit": run.commit, "saved": run.time[:10],
                         "machine": run.machine, "benchmark": name, "median_s": info["median_s"],
                         "time_ratio": info.get("time_ratio", math.nan), "ratio_from": info.get("ratio_from", ""),
                         "not_gated": bool(info.get("not_gated")) or name in left_out,
                         **{counter: info.get(counter) for counter in GATED}})
    columns = ["order", "run", "commit", "saved", "machine", "benchmark", "median_s", "time_ratio", "ratio_from",
               "not_gated", *GATED]
    return pd.DataFrame(rows, columns=columns)


def counter_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Each counter that moved between a benchmark's consecutive runs (any machine: the counters do not depend on
    it, except the benchmarks left out of the gate, which are marked): benchmark, run, commit, counter, old, new."""
    rows = []
    for benchmark, runs in frame.sort_values("order").groupby("benchmark", sort=False):
        previous = None
        for _, row in runs.iterrows():
            if previous is not None:
                for counter in GATED:
                    old, new = previous[counter], row[counter]
                    if pd.notna(old) and pd.notna(new) and old != new:
                        rows.append({"benchmark": benchmark, "order": row["order"], "run": row["run"],
                                     "commit": row["commit"], "saved": row["saved"], "machine": row["machine"],
                                     "counter": counter, "old": int(old), "new": int(new),
                                     "not_gated": bool(row["not_gated"])})
            previous = row
    return pd.DataFrame(rows, columns=["benchmark", "order", "run", "commit", "saved", "machine", "counter", "old",
                                       "new", "not_gated"])
