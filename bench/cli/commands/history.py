"""draw saved benchmark runs across commits: each benchmark's counters and time ratio, by machine.

Reads every saved pytest-benchmark run below the folders given (default reports/benchmarks; a run is the JSON file
`python -m pytest tests/benchmarks --benchmark-only --benchmark-save=NAME` writes, tagged with its commit and the
machine's fingerprint) and writes OUT/tables/benchmark-history.md (each run with the number of benchmarks whose
counters changed from the run before, and the last change of each benchmark's counters, named), OUT/tables/
benchmarks.md (the newest run of each machine in full) and OUT/figures/benchmark-history.png (the counters relative to
the newest run, changes marked; the time ratio and the seconds beside each other). metagrad report renders the same
from reports/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("reports/benchmarks")], metavar="FOLDER",
                        help="folders (or saved-run files) to read (default reports/benchmarks)")
    add_out(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.regression.history import find_saved_runs
    from metagrad.bench.reporting.report import render_harness
    from metagrad.errors import require

    for folder in args.folders:
        require(folder.exists(), f"{folder}: no such folder or file")
    runs = find_saved_runs(args.folders)
    require(runs, f"no saved benchmark run below {', '.join(map(str, args.folders))} (save one: python -m pytest "
                  "tests/benchmarks --benchmark-only --benchmark-save=NAME)")
    for path in render_harness("history", args.folders, args.out):
        print(f"wrote {path}")
    print(f"{len(runs)} saved runs, {len({run.machine for run in runs})} machines")
