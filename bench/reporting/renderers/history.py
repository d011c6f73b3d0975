"""Saved pytest-benchmark runs (``--benchmark-save``): the newest run of each machine in full, and the history of
every run across commits (``bench/regression/history.py``): what changed where, and the figure."""
from __future__ import annotations

import math
import re

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.plotting import line_style
from metagrad.bench.regression.gate import percent
from metagrad.bench.regression.history import COUNTER_LABELS, SavedRun, counter_changes, find_saved_runs, history_frame
from metagrad.bench.reporting.renderers.common import markdown_table, pyplot

FIGURE_COUNTERS = ("flops", "saved_bytes", "operations", "hvp_evals")
MOST_NAMED_LINES = 8  # per panel; the other changed benchmarks are drawn without a legend entry


def _natural(text: str) -> list:
    """Sort key that puts "maml-4" before "maml-16"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _count(info: dict, key: str) -> str:
    value = info.get(key)
    return f"{int(value):,}" if value is not None and not (isinstance(value, float) and math.isnan(value)) else "—"


def benchmarks_table(runs: list[SavedRun]) -> str:
    intro = ("# Saved benchmark runs (pytest-benchmark)\n\nThe newest saved run of each machine (`python -m pytest "
             "tests/benchmarks --benchmark-only --benchmark-save=NAME`): median time per call, the time as a ratio to "
             "one gradient of the same network on the same batch, and the deterministic counters the benchmark "
             "recorded. Every run across commits: `benchmark-history.md`.\n\n")
    newest: dict[str, SavedRun] = {}
    for run in runs:
        newest[run.machine] = run
    if not newest:
        return intro + "No saved benchmark runs were found.\n"
    sections = []
    for run in sorted(newest.values(), key=lambda r: r.name):
        rows = []
        for name in sorted(run.benchmarks, key=_natural):
            info = run.benchmarks[name]
            ratio = info.get("time_ratio")
            rows.append([f"`{name}`", f"{1000 * info['median_s']:.2f}", "—" if ratio is None else f"{ratio:.2f}",
                         _count(info, "grad_evals"), _count(info, "hvp_evals"), _count(info, "flops"),
                         _count(info, "saved_bytes"), _count(info, "operations"), _count(info, "images")])
        sections.append(f"## `{run.name}`\n\n{run.machine}; commit {run.commit}, saved {run.time[:10]}.\n\n"
                        + markdown_table(["Benchmark", "Median (ms)", "Gradients' time", "Gradients", "HVPs",
                                          "FLOPs", "Saved bytes", "Operations", "Images"], rows))
    return intro + "\n".join(sections)


def _change_words(group: pd.DataFrame) -> str:
    words = []
    for _, change in group.iterrows():
        relative = f" ({percent((change['new'] - change['old']) / change['old'])})" if change["old"] else ""
        words.append(f"{COUNTER_LABELS[change['counter']]} {change['old']:,} -> {change['new']:,}{relative}")
    return "; ".join(words)


def history_table(runs: list[SavedRun], frame: pd.DataFrame, changes: pd.DataFrame) -> str:
    intro = ("# Benchmark history\n\nEvery saved benchmark run, oldest first, with the commit it measured (`+`: the "
             "checkout differed from it, the change being saved) and its machine. Counters do not depend on the "
             "machine, so a counter that moves between two consecutive runs of a benchmark, on any machines, moved "
             "because the code did. The exception is marked *not gated*: iMAML-HF's Newton-CG line search stops where "
             "one CPU's rounding says. Time ratio: the median over one gradient of the same network on the same batch "
             "(for runs saved before it was recorded, the meta-gradient benchmarks' from the same run's gradient "
             "benchmark). Figure: `figures/benchmark-history.png`.\n\n")
    if not runs:
        return intro + "No saved benchmark runs were found.\n"
    rows = []
    for order, run in enumerate(runs):
        here = changes[changes["order"] == order]
        changed = here["benchmark"].nunique()
        gated = here[~here["not_gated"]]["benchmark"].nunique()
        ratios = frame[(frame["order"] == order)]["time_ratio"].dropna()
        rows.append([f"`{run.name}`", run.commit, run.time[:10], run.machine, str(len(run.benchmarks)),
                     "—" if order == 0 else f"{changed} ({changed - gated} not gated)" if changed != gated
                     else str(changed), str(len(ratios))])
    text = intro + "## Runs\n\n" + markdown_table(
        ["Run", "Commit", "Saved", "Machine", "Benchmarks", "Counters changed from the run before", "With a time ratio"],
        rows)
    last = []
    for benchmark, group in changes.groupby("benchmark"):
        final = group[group["order"] == group["order"].max()]
        row = final.iloc[0]
        last.append([f"`{benchmark}`", f"`{row['run']}`", row["commit"], _change_words(final)
                     + (" (not gated)" if row["not_gated"] else "")])
    last.sort(key=lambda row: _natural(row[0]))
    text += ("\n## The last change of each benchmark's counters\n\n"
             + (markdown_table(["Benchmark", "Run", "Commit", "What changed"], last) if last else "None.\n"))
    return text


def _run_labels(runs: list[SavedRun]) -> list[str]:
    return [f"{run.name.split('_')[0]}\n{run.commit[:7]}" for run in runs]


def history_figure(runs: list[SavedRun], frame: pd.DataFrame, changes: pd.DataFrame):
    plt = pyplot()
    from matplotlib import ticker

    figure, axes = plt.subplots(3, 2, figsize=(14, 12), sharex=True)
    machines = list(dict.fromkeys(run.machine for run in runs))
    shades = ("#f2f2f2", "#dde8f5", "#f5e6d8", "#e2f0dc")
    x = list(range(len(runs)))
    for axis in axes.flat:
        for order, run in enumerate(runs):  # each run's machine as the background behind it
            axis.axvspan(order - 0.5, order + 0.5, color=shades[machines.index(run.machine) % len(shades)], lw=0)
    for axis, counter in zip(axes.flat, FIGURE_COUNTERS):
        moved = set(changes[changes["counter"] == counter]["benchmark"])
        named = 0
        for benchmark, group in frame[frame[counter].notna()].groupby("benchmark"):
            group = group.sort_values("order")
            values = group[counter].astype(float)
            relative = values / values.iloc[-1]
            if benchmark not in moved:
                axis.plot(group["order"], relative, color="0.75", lw=0.6)
                continue
            style, marker = line_style(named)
            label = benchmark.replace("test_", "").replace("_tasks_per_second", "") if named < MOST_NAMED_LINES else None
            line, = axis.plot(group["order"], relative, ls=style, lw=1.3, label=label)
            at = changes[(changes["benchmark"] == benchmark) & (changes["counter"] == counter)]["order"]
            axis.plot(at, relative[group["order"].isin(at).to_numpy()], marker, color=line.get_color(), ms=6)
            named += 1
        axis.ticklabel_format(axis="y", useOffset=False)
        axis.set_title(f"{COUNTER_LABELS[counter]}, relative to the newest run (markers: a change)", fontsize=10)
        if named:
            axis.legend(fontsize=6.5, loc="best")
    for axis, column, title in ((axes[2, 0], "time_ratio", "time ratio (median over one gradient's)"),
                                (axes[2, 1], "median_s", "median seconds")):
        relative = frame[frame[column].notna()].copy()
        newest = relative.sort_values("order").groupby("benchmark")[column].transform("last")
        relative["relative"] = relative[column] / newest
        for nth, machine in enumerate(machines):
            shown = relative[relative["machine"] == machine]
            for _, group in shown.groupby("benchmark"):
                group = group.sort_values("order")
                axis.plot(group["order"], group["relative"], color="0.6", lw=0.4, marker=line_style(nth)[1], ms=2)
            axis.plot([], [], color="0.6", marker=line_style(nth)[1], label=machine)
        typical = relative.groupby("order")["relative"].median()
        axis.plot(typical.index, typical.to_numpy(), color="black", lw=2, label="median over the benchmarks")
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(ticker.FixedLocator([0.25, 0.5, 0.7, 1, 1.4, 2, 4]))
        axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_title(f"{title}, relative to the newest run, every benchmark", fontsize=10)
        axis.legend(fontsize=7, loc="best")
    for axis in axes[2]:
        axis.set_xticks(x, _run_labels(runs), fontsize=7)
        axis.set_xlabel("saved run (and the commit it measured); background: the machine")
    figure.suptitle("Benchmark history: the work counters and the time across commits")
    figure.tight_layout()
    return figure


def render(results: list[Result]) -> Rendering:
    runs = find_saved_runs([result.folder for result in results])
    frame = history_frame(runs)
    changes = counter_changes(frame)
    tables = (Table("benchmarks.md", "Saved pytest-benchmark runs, the newest of each machine, with their counters",
                    benchmarks_table(runs)),
              Table("benchmark-history.md", "Benchmark history: counters and time ratios across commits",
                    history_table(runs, frame, changes)))
    figures = (Figure("benchmark-history.png", "Benchmark history across commits",
                      lambda: history_figure(runs, frame, changes)),) if runs else ()
    return Rendering(tables, figures, index=tuple(f"- benchmark run: `{run.name}` ({run.machine}, commit {run.commit})"
                                                  for run in runs) or ("- benchmark runs: none",))
