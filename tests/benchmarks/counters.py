"""Deterministic work counters of a benchmark, and their comparison with a saved baseline run.

Timings on a shared CPU drift by tens of percent; these counters do not. A change in any of them
(up or down: a MAML that silently went first-order does less work) means the computation changed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COUNTERS = ("grad_evals", "hvp_evals", "flops", "saved_bytes", "images", "operations")


def load_baseline(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``extra_info`` of each benchmark in a saved pytest-benchmark JSON file, by test name."""
    data = json.loads(Path(path).read_text())
    return {entry["fullname"]: entry.get("extra_info", {}) for entry in data["benchmarks"]}


def counter_changes(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """One line per counter whose value differs from the baseline's; counters one side lacks are skipped."""
    changes = []
    for name in COUNTERS:
        if name in current and name in baseline and current[name] != baseline[name]:
            old, new = baseline[name], current[name]
            relative = f" ({(new - old) / old:+.1%})" if old else ""
            changes.append(f"{name}: {old} -> {new}{relative}")
    return changes
