"""Figure 2b: time and memory against inner steps, one figure per ``profile.csv``, and its ratios in one table."""
from __future__ import annotations

import math

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table, slug


def profile_ratios_table(profiles: list[tuple[str, pd.DataFrame]]) -> str:
    from metagrad.bench.harnesses.profile import ratios

    columns = {name: ratios(frame) for name, frame in profiles}
    keys = list(dict.fromkeys(key for values in columns.values() for key in values))
    rows = [[key] + [(f"{columns[name][key]:.3g}" if key in columns[name] and not math.isnan(columns[name][key])
                      else "—") for name in columns] for key in keys]
    intro = ("# Figure 2b in numbers\n\nRatios read off each profile (bench/harnesses/profile.py `ratios`), for each "
             "algorithm profiled: its memory at the most inner steps over the fewest and over one gradient's, and its "
             "time in gradients of the support loss; and a Hessian-vector product over a gradient.\n\n")
    if not columns:
        return intro + "No profiles were found.\n"
    return intro + markdown_table(["Ratio"] + [f"`{name}`" for name in columns], rows)


def render(results: list[Result]) -> Rendering:
    from metagrad.bench.harnesses.profile import plot_profile, profile_title

    profiles = [(result.name, pd.read_csv(result.folder / "profile.csv")) for result in results]
    figures = tuple(Figure(f"fig2b-{slug(name)}.png", f"Figure 2b, time and memory against inner steps: `{name}`",
                           lambda frame=frame, name=name: plot_profile(frame, profile_title(frame) + f"\n({name})"))
                    for name, frame in profiles)
    table = Table("fig2b-ratios.md", "Figure 2b in numbers (ratios per profile)", profile_ratios_table(profiles))
    return Rendering((table,), figures, missing=() if results else ("Figure 2b (no profile.csv)",))
