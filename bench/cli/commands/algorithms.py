"""list the registered algorithms: name, label, where each came from, which engines it has.

Every algorithm the registry holds: metagrad's own and those of installed plug-in packages (entry-point group
metagrad.algorithms). Engines: per-task, and batched, which is the algorithm's own or, where it has none, its
per-task engine run over the tasks (engine auto then picks per-task).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> None:
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
