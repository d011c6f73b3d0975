"""What iMAML-HF's one-pass line search (``inner_solvers.armijo_ladder_at_once``, the form CUDA runs: every candidate
of every task in one forward pass of 31 x tasks networks) costs in memory, measured on the CPU: the peak resident
memory above the start of one meta-batch's inner solve (3 Newton iterations, 5 CG steps each) of each Omniglot
iMAML-HF preset, float32, real training tasks (the project's class split), with the one-pass search and with the
CPU's searching-only one (``armijo_ladder_searching_only``). Each measurement runs in a process of its own, with
glibc returning freed blocks at once (``bench.measure.memory.subprocess_environment``), so that the peak follows the
live tensors. The tensors are those a GPU allocates (cuDNN's workspaces and the caching allocator's rounding
aside): an estimate of the GPU's memory, not a GPU measurement."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

SETTINGS = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s")
FORMS = ("one pass", "searching only")


def measure(setting: str, form: str, tasks: int | None, data_root: str | None) -> tuple[float, int]:
    """Peak RSS above the start (GiB) and the meta-batch, in this process."""
    import torch

    import metagrad.algorithms.batched as batched
    from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
    from metagrad.algorithms.registry import batched_adapt
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.data.tasks import EpisodeSpec
    from metagrad.bench.measure.memory import peak_rss_bytes, reset_peak_rss, rss_bytes
    from metagrad.bench.nets.convnet import network
    from metagrad.bench.training.presets import preset

    settings = preset(f"{setting}-imaml-hf")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    spec = EpisodeSpec(settings["ways"], settings["shots"], settings["queries"])
    source = task_source("omniglot", "train", spec, data_root).tasks
    batch = source.sample_batch(torch.Generator().manual_seed(0), tasks or settings["meta_batch"], torch.float32)
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", settings["ways"]), cross_entropy_loss)
    theta = model.flat_parameters()
    batched.reads_back_cheaply = lambda device: form == "searching only"  # the form to measure, on the CPU
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak-RSS mark here (/proc/self/clear_refs)")
    start = rss_bytes()
    with torch.no_grad():
        batched_adapt(algorithm, model, theta, batch)
    return (peak_rss_bytes() - start) / 2**30, batch.size


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metagrad.bench.diagnostics.line_search_memory", description=__doc__)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated Omniglot settings (default {','.join(SETTINGS)})")
    parser.add_argument("--tasks", type=int, default=None, help="tasks in the meta-batch (default each preset's)")
    parser.add_argument("--data-root", default=None, help="data folder (default $METAGRAD_DATA, else the user's data folder)")
    parser.add_argument("--measure", nargs=2, metavar=("SETTING", "FORM"), help=argparse.SUPPRESS)  # one process's
    args = parser.parse_args(argv)
    if args.measure:
        peak, tasks = measure(*args.measure, args.tasks, args.data_root)
        print(json.dumps([peak, tasks]))
        return
    from metagrad.bench.measure.memory import subprocess_environment

    print("iMAML-HF's inner solve of one meta-batch, float32: peak resident memory above the start (GiB)")
    print(f"{'preset':<26} {'tasks':>5} {'networks in one pass':>20} {'one pass':>9} {'searching only':>15}")
    for setting in args.settings.split(","):
        results = {}
        for form in FORMS:
            command = [sys.executable, "-m", "metagrad.bench.diagnostics.line_search_memory", "--measure", setting, form]
            command += [*(["--tasks", str(args.tasks)] if args.tasks else []),
                        *(["--data-root", args.data_root] if args.data_root else [])]
            out = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), check=True)
            results[form] = json.loads(out.stdout.strip().splitlines()[-1])
        tasks = results[FORMS[0]][1]
        print(f"{setting + '-imaml-hf':<26} {tasks:>5} {31 * tasks:>20} {results['one pass'][0]:>9.2f} "
              f"{results['searching only'][0]:>15.2f}")


if __name__ == "__main__":
    main()
