"""training tasks per second against the number of processes, from runs (torchrun or not).

For each run folder written by metagrad train (one process, or several under torchrun): its processes, threads per
process and training throughput (tasks over training time, validation excluded). Writes OUT/scaling.csv (with the
speedup over the one-process run of the same preset, engine and threads) and OUT/scaling.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_out
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by metagrad train")
    add_out(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.scaling import write_scaling

    for run_dir in args.runs:
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir}: no such run folder")
    frame = write_scaling(args.runs, args.out)
    shown = ["run", "preset", "engine", "world_size", "threads", "tasks_per_s", "speedup"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {args.out / 'scaling.csv'} and {args.out / 'scaling.png'}")
