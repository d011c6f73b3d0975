"""How much the meta-gradient varies from task to task, per algorithm: a metagrad harness added from outside.

The meta-batch averages per-task meta-gradients; their spread across tasks sets how large a meta-batch must be for
the average to point somewhere. This harness measures it on the paper's linear-regression tasks (float64, no data to
fetch): for each registered algorithm, the per-task meta-gradients g_i at one theta over N tasks, their mean g, the
spread E||g_i - g||^2 and that spread relative to ||g||^2 (the meta-batch at which the average's noise equals its
signal).

As a plug-in it is one ``metagrad.Harness`` named by the entry point ``metagrad.harnesses``: a config dataclass
(its fields are ``metagrad variance``'s options), a function that writes ``variance.csv`` and a render function
that the report calls with every folder holding one. Its parts are named as strings and imported only when used, so
``metagrad --help`` stays fast.
"""
from __future__ import annotations

from metagrad import Harness

HARNESS = Harness(
    "variance",
    summary="how much each algorithm's meta-gradient varies across tasks (linear regression, float64)",
    description="For each registered algorithm, the per-task meta-gradients at one theta over --tasks linear-regression "
                "tasks: their mean's norm, their spread E||g_i - g||^2 and the spread relative to ||g||^2. Writes "
                "OUT/variance.csv and OUT/variance.png.",
    config="metagrad_variance.measure:VarianceConfig",
    write="metagrad_variance.measure:write_variance",
    results=("variance.csv",),
    render="metagrad_variance.render:render",
    rerun=(),  # metagrad report --rerun: metagrad variance --out OUT/variance
    quick=("--tasks", "4"),
)
