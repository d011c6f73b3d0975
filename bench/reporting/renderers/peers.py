"""``metagrad peers``: metagrad's meta-gradients beside other libraries' (the table and the figure)."""
from __future__ import annotations

import math

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table


def _cell(value, pattern: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def peers_table(frames: list[tuple[str, pd.DataFrame]]) -> str:
    from metagrad.bench.harnesses.peers import ratios

    text = ("# metagrad and its peers\n\nThe same tasks and initial weights in one process (`metagrad peers`): each "
            "implementation's meta-gradient against metagrad's per-task one in float64, its time per task (median; "
            "interquartile range), peak bytes saved for backward and tasks per second over a meta-batch in float32. "
            "A peer not installed is listed with how to install it.\n\n")
    for name, frame in frames:
        rows = []
        for row in frame.itertuples():
            rows.append([row.algorithm, row.peer, _cell(row.version, "{}") if isinstance(row.version, str) else "—",
                         _cell(row.max_rel_diff, "{:.1e}"), _cell(row.time_per_task_s, "{:.4f}"),
                         _cell(row.time_iqr_s, "{:.4f}"), _cell(row.saved_bytes, "{:,.0f}"),
                         _cell(row.tasks_per_s, "{:.1f}"), str(row.settings),
                         row.note if isinstance(row.note, str) else ""])
        ratio_lines = "".join(f"- {key}: {value:.2f}\n" for key, value in ratios(frame).items())
        text += (f"## `{name}` ({frame['device'].iloc[0]})\n\n"
                 + markdown_table(["Algorithm", "Peer", "Version", "Rel. difference", "s per task", "IQR (s)",
                                   "Saved bytes", "Tasks/s", "Settings", "Note"], rows)
                 + ("\nmetagrad per-task's time per task over each peer's:\n\n" + ratio_lines if ratio_lines else ""))
    return text


def render(results: list[Result]) -> Rendering:
    from metagrad.bench.harnesses.peers import plot_peers

    frames = [(result.name, pd.read_csv(result.folder / "peers.csv")) for result in results]
    tables = (Table("peers.md", "metagrad beside torchopt and higher: the same meta-gradients, their time",
                    peers_table(frames)),)
    figures = tuple(Figure(f"peers-{index}.png" if index else "peers.png", f"metagrad and its peers: `{name}`",
                           lambda frame=frame: plot_peers(frame)) for index, (name, frame) in enumerate(frames))
    return Rendering(tables, figures, missing=() if frames else ("metagrad and its peers (no peers.csv)",))
