"""How the report shows it: a table of every variance.csv and a figure each (pandas and matplotlib only)."""
from __future__ import annotations

import pandas as pd

from metagrad import Figure, Rendering, Result, Table


def plot_variance(frame: pd.DataFrame, name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(frame) + 1.6))
    rows = range(len(frame))
    ax.barh(rows, frame["relative_spread"], color="#4c72b0")
    for row, value in zip(rows, frame["relative_spread"]):
        ax.annotate(f"{value:.3g}", (value, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(list(rows), frame["label"])
    ax.invert_yaxis()
    ax.set_xlabel("E||g_i - g||^2 / ||g||^2 across tasks (the meta-batch where noise equals signal)")
    first = frame.iloc[0]
    ax.set_title(f"Meta-gradient spread across {int(first['tasks'])} tasks: linear regression, d = {int(first['dim'])}, "
                 f"lambda = {first['lam']:g}\n({name})", fontsize=9)
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def render(results: list[Result]) -> Rendering:
    frames = [(result.name, pd.read_csv(result.folder / "variance.csv")) for result in results]
    lines = ["# The meta-gradient's spread across tasks\n",
             "From `metagrad variance` (the metagrad-variance plug-in): per algorithm, the norm of the mean "
             "meta-gradient over the tasks and the spread of the per-task ones around it, absolute and relative.\n"]
    for name, frame in frames:
        lines += [f"## `{name}`\n", "| algorithm | tasks | inner steps | ‖g‖ | E‖g_i − g‖² | relative |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {row.label} | {row.tasks} | {row.inner_steps} | {row.mean_norm:.4g} | {row.spread:.4g} | "
                  f"{row.relative_spread:.4g} |" for row in frame.itertuples()]
        lines.append("")
    if not frames:
        lines.append("No variance results were found.\n")
    table = Table("variance.md", "The meta-gradient's spread across tasks, per algorithm", "\n".join(lines))
    figures = tuple(Figure(f"variance-{name.replace('/', '--')}.png", f"Meta-gradient spread across tasks: `{name}`",
                           lambda frame=frame, name=name: plot_variance(frame, name)) for name, frame in frames)
    return Rendering((table,), figures)
