"""An algorithm's own learned meta-parameters (step sizes, lambda), by layer: one figure with a panel per group name
(every run's values of that group), and a table of every run's values, from the runs' ``meta_parameters.json``."""
from __future__ import annotations

import json
from typing import Any

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table, pyplot

EVERY = "every parameter"  # the label of a group with one value for the whole network


def read_learned(results: list[Result]) -> list[tuple[str, dict[str, Any]]]:
    """(run name, its meta_parameters.json) for each result that holds one."""
    return [(result.name, json.loads((result.folder / "meta_parameters.json").read_text())) for result in results]


def _series(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """A group's rows as lines: a label "step 2: features.0.weight" is layer features.0.weight of the line "step 2";
    a label without a step is of the group's one line."""
    lines: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for row in rows:
        line, _, layer = row["label"].rpartition(": ")
        lines.setdefault(line, []).append((layer, row))
    return lines


def plot_learned(learned: list[tuple[str, dict[str, Any]]]):
    """Per group name, a panel: x the network's layers, y each run's learned value there (the mean over the layer's
    elements, the band its smallest to largest), dashed where it started."""
    plt = pyplot()
    names = sorted({group for _, data in learned for group in data["groups"]})
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3.8 * len(names)), squeeze=False)
    for ax, group in zip(axes[:, 0], names):
        layers: list[str] = []
        for _, data in learned:
            for row in data["groups"].get(group, []):
                layer = row["label"].rpartition(": ")[2]
                if layer != EVERY and layer not in layers:
                    layers.append(layer)
        positions = {layer: i for i, layer in enumerate(layers)}
        span = [0, max(len(layers) - 1, 1)]
        nth = 0
        for run, data in learned:
            if group not in data["groups"]:
                continue
            start = _series(data.get("initial", {}).get(group, []))
            for line, points in _series(data["groups"][group]).items():
                label = run + (f", {line}" if line else "")
                if len(points) == 1 and points[0][0] not in positions:  # one value for every layer
                    value = points[0][1]["mean"]
                    drawn, = ax.plot(span, [value, value], label=label + " (one value)", color=f"C{nth % 10}")
                else:
                    xs = [positions[layer] for layer, _ in points]
                    drawn, = ax.plot(xs, [row["mean"] for _, row in points], marker="o", markersize=3, label=label,
                                     color=f"C{nth % 10}")
                    ax.fill_between(xs, [row["min"] for _, row in points], [row["max"] for _, row in points],
                                    color=drawn.get_color(), alpha=0.15)
                first = [row["mean"] for _, row in start.get(line, [])]
                if first and len(set(first)) == 1:
                    ax.axhline(first[0], color=drawn.get_color(), linestyle=":", linewidth=0.8)
                nth += 1
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(group)
        ax.set_title(f"learned {group} by layer (mean, band min to max; dotted: the start)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def learned_table(learned: list[tuple[str, dict[str, Any]]]) -> str:
    rows = []
    for run, data in learned:
        for group, values in data["groups"].items():
            start = {row["label"]: row["mean"] for row in data.get("initial", {}).get(group, [])}
            for row in values:
                began = start.get(row["label"])
                rows.append([f"`{run}`", group, row["label"], str(row["count"]),
                             "—" if began is None else f"{began:.4g}", f"{row['mean']:.4g}",
                             f"{row['min']:.4g} to {row['max']:.4g}"])
    intro = ("# Learned meta-parameters\n\nThe values an algorithm meta-learns beside the network's initialization "
             "(Meta-SGD's and MAML++'s step sizes, iMAML's lambda), at each run's last checkpoint, from its "
             "`meta_parameters.json`: per label (a layer, or a step and a layer), the mean over its elements and their "
             "range.\n\n")
    return intro + markdown_table(["Run", "Group", "Label", "Elements", "Start", "Learned (mean)", "Learned (range)"],
                                  rows)


def render(results: list[Result]) -> Rendering:
    if not results:
        return Rendering(missing=("the learned meta-parameters (no run with meta_parameters.json)",), index=())
    learned = read_learned(results)
    return Rendering(tables=(Table("learned-meta-parameters.md", "Learned meta-parameters by layer",
                                   learned_table(learned)),),
                     figures=(Figure("learned-meta-parameters.png", "Learned step sizes and lambda by layer",
                                     lambda: plot_learned(learned)),),
                     index=())
