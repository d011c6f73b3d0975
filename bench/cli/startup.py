"""How long ``metagrad --help`` and each command's ``--help`` take, against importing torch alone: each in a fresh
process, the median of ``--repeats`` runs (wall-clock, so a loaded machine reads slower; compare the columns of
one run). ``metagrad --help`` imports no torch; a command's --help builds its parser from its config dataclass,
which imports torch and the modules that define it, and nothing else."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from metagrad.bench.cli.command import commands


def seconds(command: list[str], repeats: int) -> float:
    """The median wall-clock seconds of ``command`` in a fresh process."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metagrad.bench.cli.startup", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command, the median kept (default 5)")
    parser.add_argument("--commands", default=",".join(commands()),
                        help="comma-separated commands whose --help to time (default all)")
    args = parser.parse_args(argv)
    metagrad = [sys.executable, "-m", "metagrad"]
    print(f"median of {args.repeats} runs, seconds of wall-clock time in a fresh process")
    rows = [('python -c "import torch"', [sys.executable, "-c", "import torch"]),
            ("metagrad --help", [*metagrad, "--help"])]
    rows += [(f"metagrad {command} --help", [*metagrad, command, "--help"]) for command in args.commands.split(",")]
    for label, command in rows:
        print(f"{label:<36} {seconds(command, args.repeats):6.2f}")


if __name__ == "__main__":
    main()
