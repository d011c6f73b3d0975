"""The work gate: every benchmark's deterministic counters against a committed counter file.

Wall-clock times on a shared machine swing by tens of percent; these counters do not move unless the computation
does (gradient and Hessian-vector-product evaluations, FLOPs, peak bytes saved for backward, device operations,
images per task). A change either way fails: a MAML that silently went first-order does less work. The counter file
(``reports/benchmarks/counters-cpu.json`` for metagrad's own benchmarks) holds one entry per benchmark, saved with the
torch version and commit it was counted at; ``metagrad counters --save FILE`` writes it, and committing it with the
change is how a change of work is accepted.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metagrad.errors import MetagradError

GATED = ("grad_evals", "hvp_evals", "flops", "saved_bytes", "images", "operations")
FORMAT = 1


class WorkChanged(MetagradError):
    """Counters differ from the counter file's (exit 1: a failed check, not a bad input)."""

    exit_code = 1


@dataclass(frozen=True)
class CounterFile:
    """A saved set of counters: by benchmark name, what the gate compares; the torch and device they were counted
    with and the commit they were counted at."""

    device: str
    torch: str
    commit: str
    benchmarks: dict[str, dict[str, int]] = field(default_factory=dict)
    not_gated: dict[str, str] = field(default_factory=dict)  # benchmark -> why its counters are left out


def default_counter_file(root: str | os.PathLike, device: str) -> Path:
    """metagrad's own counter file for a device type (cpu, cuda), under the checkout's ``reports/benchmarks``."""
    return Path(root) / "reports" / "benchmarks" / f"counters-{device}.json"


def gated(counters: dict[str, Any]) -> dict[str, int]:
    return {name: int(counters[name]) for name in GATED if name in counters}


def load_counters(path: str | os.PathLike) -> CounterFile:
    try:
        data = json.loads(Path(path).read_text())
        return CounterFile(data["device"], data["torch"], data["commit"], data["benchmarks"], data.get("not_gated", {}))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MetagradError(f"{path}: not a readable counter file ({type(error).__name__}: {error})") from None


def current_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checkout's commit, ``+`` where its tracked files differ from it; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=30).stdout.strip()
        return head.stdout.strip() + ("+" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_counters(path: str | os.PathLike, counted: dict[str, dict[str, Any]], not_gated: dict[str, str],
                  device: str, torch_version: str, commit: str) -> tuple[CounterFile, list[str]]:
    """Write ``counted`` (benchmark -> counters) into the counter file at ``path``, keeping the entries of benchmarks
    not counted this time; returns the file and one line per entry that changed (what was accepted)."""
    from metagrad.bench import atomic

    old = load_counters(path) if Path(path).exists() else None
    benchmarks = dict(old.benchmarks) if old else {}
    reasons = dict(old.not_gated) if old else {}
    accepted = []
    for name, counters in counted.items():
        if name in not_gated:
            reasons[name] = not_gated[name]
            benchmarks.pop(name, None)
            continue
        reasons.pop(name, None)
        new = gated(counters)
        if old is not None:
            if name not in old.benchmarks:
                accepted.append(f"{name}: new")
            else:
                accepted += [f"{name}: {line}" for line in counter_changes(new, old.benchmarks[name])]
        benchmarks[name] = new
    saved = CounterFile(device, torch_version, commit, dict(sorted(benchmarks.items())), dict(sorted(reasons.items())))
    data = {"format": FORMAT, "device": saved.device, "torch": saved.torch, "commit": saved.commit,
            "about": "work counters per benchmark, compared by the work gate; written by `metagrad counters --save`",
            "not_gated": saved.not_gated, "benchmarks": saved.benchmarks}
    atomic.write_text(path, json.dumps(data, indent=1) + "\n")
    return saved, accepted


def percent(fraction: float) -> str:
    """A relative change short and exact enough to read: +10.0%, -0.0094%."""
    return f"{fraction:+.1%}" if abs(fraction) >= 0.001 else f"{100 * fraction:+.2g}%"


def counter_changes(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """One line per gated counter whose value differs from the baseline's (``flops: 1000 -> 1100 (+10.0%)``);
    counters one side lacks are not compared."""
    changes = []
    for name in GATED:
        if name in current and name in baseline and int(current[name]) != int(baseline[name]):
            old, new = int(baseline[name]), int(current[name])
            relative = f" ({percent((new - old) / old)})" if old else ""
            changes.append(f"{name}: {old:,} -> {new:,}{relative}")
    return changes


def gate_failure(name: str, current: dict[str, Any], baseline: CounterFile, path: str | os.PathLike,
                 accept: str) -> str | None:
    """The gate's verdict on one benchmark: None where it passes, else the one message that names the benchmark, each
    changed counter with its old and new value, the file, and the command that accepts the change."""
    if name in baseline.not_gated:
        return None
    entry = baseline.benchmarks.get(name)
    if entry is None:
        return (f"{name}: not in the counter file {path}; count it and save it with `{accept}` "
                f"(then commit {path})")
    changes = counter_changes(current, entry)
    if not changes:
        return None
    torch_note = ""
    import torch

    if baseline.torch != torch.__version__:
        torch_note = f"; the file was counted with torch {baseline.torch}, this is torch {torch.__version__}"
    return (f"{name}: the work changed: {'; '.join(changes)} (against {path}, counted at commit "
            f"{baseline.commit[:12]}{torch_note}). If the change is intended, accept it: `{accept}`, and commit {path} "
            "with the change")
