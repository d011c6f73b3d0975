"""What iMAML-HF's one-pass line search (``inner_solvers.armijo_ladder_at_once``, the form CUDA runs: every candidate
of every task in one forward pass of 31 x tasks networks) costs in memory, measured on the CPU: the peak resident
memory above the start of one meta-batch's inner solve (3 Newton iterations, 5 CG steps each) of each Omniglot
iMAML-HF preset, float32, real training tasks (the project's class split, from ``../shared/data``), with the one-pass
search and with the CPU's searching-only one (``armijo_ladder_searching_only``). Each measurement runs in a process of
its own, with glibc returning freed blocks at once (``bench.memory.subprocess_environment``), so that the peak follows
the live tensors. The tensors are those a GPU allocates (cuDNN's workspaces and the caching allocator's rounding
aside): an estimate of the GPU's memory, not a GPU measurement. Run from the repository root:

    python reports/cpu-memory/newton_line_search_memory.py > reports/cpu-memory/newton_line_search_memory.txt
"""
from __future__ import annotations

import subprocess
import sys

import torch

SETTINGS = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s")
FORMS = ("one pass", "searching only")


def measure(setting: str, form: str) -> tuple[float, int]:
    """Peak RSS above the start (GiB) and the meta-batch, in this process."""
    import algorithms.batched as batched
    from algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
    from bench.datasets import network, task_source
    from bench.memory import peak_rss_bytes, reset_peak_rss, rss_bytes
    from bench.presets import preset
    from bench.tasks import EpisodeSpec

    settings = preset(f"{setting}-imaml-hf")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    spec = EpisodeSpec(settings["ways"], settings["shots"], settings["queries"])
    tasks = task_source("omniglot", "train", spec, "../shared/data").tasks
    batch = tasks.sample_batch(torch.Generator().manual_seed(0), settings["meta_batch"], torch.float32)
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", settings["ways"]), cross_entropy_loss)
    theta = model.flat_parameters()
    batched.reads_back_cheaply = lambda device: form == "searching only"  # the form to measure, on the CPU
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak-RSS mark here (/proc/self/clear_refs)")
    start = rss_bytes()
    with torch.no_grad():
        algorithm.batched_adapt(model, theta, batch)
    return (peak_rss_bytes() - start) / 2**30, batch.size


if __name__ == "__main__":
    if len(sys.argv) == 3:  # a measurement's own process
        peak, tasks = measure(sys.argv[1], sys.argv[2])
        print(f"{peak:.3f} {tasks}")
        raise SystemExit(0)
    from bench.memory import subprocess_environment

    print("iMAML-HF's inner solve of one meta-batch, float32: peak resident memory above the start (GiB)")
    print(f"{'preset':<26} {'tasks':>5} {'networks in one pass':>20} {'one pass':>9} {'searching only':>15}")
    for setting in SETTINGS:
        results = {}
        for form in FORMS:
            out = subprocess.run([sys.executable, __file__, setting, form], capture_output=True, text=True,
                                 env=subprocess_environment(), check=True).stdout.split()
            results[form] = float(out[0]), int(out[1])
        tasks = results[FORMS[0]][1]
        print(f"{setting + '-imaml-hf':<26} {tasks:>5} {31 * tasks:>20} {results['one pass'][0]:>9.2f} "
              f"{results['searching only'][0]:>15.2f}")
