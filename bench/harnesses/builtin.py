"""metagrad's own harnesses, in the order ``metagrad --help`` and the report list them.

Each names its command module (``metagrad.bench.cli.commands``), the files that mark one of its results, and its
renderer (``metagrad.bench.reporting.renderers``). Two entries only render: the study of iMAML's indefinite systems
(read from training runs: those whose system's spectrum was recorded at the start and at the end, beside the iMAML-GD
presets' full-size runs), and the learned meta-parameters (read from the training runs of algorithms that learn their
own). ``history`` renders the saved benchmark runs, which pytest writes.
"""
from __future__ import annotations

from metagrad.bench.harnesses.harness import Harness

COMMANDS = "metagrad.bench.cli.commands"
RENDERERS = "metagrad.bench.reporting.renderers"
TRAINING_RUN = ("config.json", "metrics.csv")

BUILTIN_HARNESSES = (
    Harness("exact-solve", command=f"{COMMANDS}.exact_solve", results=("exact_solve.csv",),
            render=f"{RENDERERS}.exact_solve:render", order=10),
    Harness("profile", command=f"{COMMANDS}.profile", results=("profile.csv",), render=f"{RENDERERS}.profile:render",
            order=20),
    Harness("complexity", command=f"{COMMANDS}.complexity", results=("complexity.csv",),
            render=f"{RENDERERS}.complexity:render", order=30),
    Harness("train", command=f"{COMMANDS}.train", results=TRAINING_RUN, render=f"{RENDERERS}.training:render",
            result_label="training run", order=40),
    Harness("meta-parameters", summary="the step sizes and lambda an algorithm learns beside theta, by layer",
            results=("meta_parameters.json",), render=f"{RENDERERS}.meta_parameters:render",
            result_label="run with learned meta-parameters", order=45),
    Harness("eval", command=f"{COMMANDS}.evaluate", out="none", order=50),
    Harness("throughput", command=f"{COMMANDS}.throughput", results=("throughput.csv",),
            render=f"{RENDERERS}.throughput:render", order=60),
    Harness("spectrum", command=f"{COMMANDS}.spectrum", out="file", order=70),
    Harness("scaling", command=f"{COMMANDS}.scaling", order=80),
    Harness("lake-runs", command=f"{COMMANDS}.lake_runs", out="none", order=90),
    Harness("curvature", summary="iMAML's meta-gradient system when it is indefinite: lambda and solver",
            results=TRAINING_RUN, render=f"{RENDERERS}.curvature:render",
            result_label="curvature-study run", order=200),
    Harness("peers", summary="metagrad's meta-gradients beside torchopt's and higher's: agreement, time, memory",
            description="The same tasks and initial weights through metagrad's per-task and batched engines, higher "
                        "and torchopt (MetaSGD for MAML, custom_root with solve_cg for iMAML; pip install -e "
                        "'.[peers]'): each meta-gradient against metagrad's per-task one in float64, time per task, "
                        "saved bytes and tasks per second in float32. Writes OUT/peers.csv and OUT/peers.png.",
            config="metagrad.bench.harnesses.peers:PeersConfig", write="metagrad.bench.harnesses.peers:write_peers",
            results=("peers.csv",), render=f"{RENDERERS}.peers:render", rerun=("--lam", "20"),
            quick=("--lam", "20", "--repeats", "2"),
            order=95),
    Harness("data", command=f"{COMMANDS}.data", out="none", order=200),
    Harness("counters", command=f"{COMMANDS}.counters", out="none", order=205),
    Harness("history", command=f"{COMMANDS}.history", results=("[0-9][0-9][0-9][0-9]_*.json",),
            render=f"{RENDERERS}.history:render", result_label="benchmark run", order=210),
)
