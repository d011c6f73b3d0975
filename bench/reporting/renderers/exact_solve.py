"""Figure 2a: the meta-gradient's error against inner steps, one figure per ``exact_solve.csv``."""
from __future__ import annotations

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result
from metagrad.bench.reporting.renderers.common import slug


def render(results: list[Result]) -> Rendering:
    from metagrad.bench.harnesses.exact_solve import exact_solve_title, plot_exact_solve

    figures = []
    for result in results:
        frame = pd.read_csv(result.folder / "exact_solve.csv")
        figures.append(Figure(f"fig2a-{slug(result.name)}.png",
                              f"Figure 2a, meta-gradient error against inner steps: `{result.name}`",
                              lambda frame=frame, name=result.name: plot_exact_solve(
                                  frame, exact_solve_title(frame) + f"\n({name})")))
    return Rendering(figures=tuple(figures), missing=() if results else ("Figure 2a (no exact_solve.csv)",))
