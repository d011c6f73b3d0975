"""Table 1, measured: fitted exponents of kappa per ``complexity.csv``, and a figure each."""
from __future__ import annotations

import pandas as pd

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table, slug


def complexity_table(complexities: list[tuple[str, pd.DataFrame]]) -> str:
    """The paper's Table 1 beside its measurement: fitted exponents of kappa in the least work and the memory."""
    from metagrad.bench.harnesses.complexity import METHODS, fitted_exponents

    intro = ("# Table 1, measured: work and memory for an eps-accurate meta-gradient\n\n"
             "From `metagrad complexity` on linear regression in float64: for each kappa and eps, each method's "
             "least work (gradients + Hessian-vector products) whose relative error against the exact "
             "meta-gradient (Definition 3) is at most eps. *Exponent*: the least-squares slope of log work (or "
             "log memory) against log kappa. *Memory*: peak saved bytes over one gradient's, at the largest kappa "
             "and smallest eps.\n\n")
    blocks = []
    for name, frame in complexities:
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
        blocks.append(header + markdown_table(
            ["Method", "Compute (paper)", "Theory exponent", *(f"Work exponent, eps {e:g}" for e in epsilons),
             "Memory (paper)", *(f"Memory exponent, eps {e:g}" for e in epsilons), "Memory (gradients)"], rows))
    if not blocks:
        return intro + "No complexity results.\n"
    return intro + "\n".join(blocks)


def render(results: list[Result]) -> Rendering:
    from metagrad.bench.harnesses.complexity import plot_complexity

    complexities = [(result.name, pd.read_csv(result.folder / "complexity.csv")) for result in results]
    table = Table("table1.md", "Table 1, measured: work and memory for an eps-accurate meta-gradient",
                  complexity_table(complexities))
    figures = tuple(Figure(f"table1-{slug(name)}.png", f"Table 1, measured: work and memory against kappa: `{name}`",
                           lambda frame=frame: plot_complexity(frame)) for name, frame in complexities)
    return Rendering((table,), figures)
