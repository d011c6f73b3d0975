"""list the registered algorithms: name, label, where each came from, which engines it has; --check NAME checks one.

Every algorithm the registry holds: metagrad's own and those of installed plug-in packages (entry-point group
metagrad.algorithms). Engines: per-task, and batched, which is the algorithm's own or, where it has none, its
per-task engine run over the tasks (engine auto then picks per-task). --check NAME runs on one algorithm what the
suite's tests run on every one (float64, a tiny ConvNet with BatchNorm): what meta_gradient and adapt return, adapt
reaching the parameters meta_gradient adapted to, the batched engine equal to the per-task one, and the
meta-gradient against finite differences of its meta_objective; each failure one line naming the method at fault
(exit 1 if any fails).
"""
from __future__ import annotations

import argparse

from metagrad.errors import MetagradError, require


class ChecksFailed(MetagradError):
    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", metavar="NAME", default=None,
                        help="check one registered algorithm against the protocol (a plug-in author's own check)")


def _check(name: str) -> None:
    from metagrad.algorithms.registry import algorithm_names
    from metagrad.bench.checks.contract import check_algorithm

    require(name in algorithm_names(), f"--check {name}: no such algorithm; registered: {', '.join(algorithm_names())}")
    checks = check_algorithm(name)
    words = {True: "ok", False: "FAILED", None: "not checked"}
    for check in checks:
        print(f"{name}: {check.name}: {words[check.passed]}: {check.message}")
    failed = [check.name for check in checks if check.passed is False]
    if failed:
        raise ChecksFailed(f"{name} fails {len(failed)} of its checks ({', '.join(failed)})")
    print(f"{name}: every check passed" if all(check.passed for check in checks) else
          f"{name}: no check failed; the ones not checked say what to add")


def run(args: argparse.Namespace) -> None:
    if args.check is not None:
        _check(args.check)
        return
    from metagrad.algorithms.registry import entries

    rows = [("name", "label", "origin", "engines")]
    rows += [(name, entry.cls.label, entry.origin, "per-task, batched" if entry.batched else
              "per-task, batched (task by task)") for name, entry in entries().items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    for name, entry in entries().items():
        if entry.note:  # an inherited batched engine that is not the class's own
            print(f"{name}: {entry.note}")
