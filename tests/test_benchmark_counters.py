"""The benchmark regression check: a saved run carries the machine fingerprint and the deterministic
counters, and a second run fails when a counter differs from the baseline's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.counters import counter_changes, load_baseline
from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]
SELECTION = ["tests/benchmarks/test_meta_gradient.py", "-k", "synthetic-gradient"]  # no data, ~1 s of work


def test_counter_changes_flags_any_difference_and_skips_missing_counters():
    base = {"flops": 1000, "grad_evals": 3, "saved_bytes": 64}
    assert counter_changes(dict(base), base) == []
    assert counter_changes({"flops": 1100, "grad_evals": 3}, base) == ["flops: 1000 -> 1100 (+10.0%)"]
    # less work is flagged too: a second-order method that silently went first-order does less
    assert counter_changes({"grad_evals": 2}, base) == ["grad_evals: 3 -> 2 (-33.3%)"]
    assert counter_changes({"hvp_evals": 7, "time": 1.0}, base) == []


def _pytest(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECTION, "--benchmark-only", *args]
    # a pytest of its own, not one of this run's xdist workers: pytest-benchmark turns itself off in a process that
    # inherits a worker's PYTEST_XDIST_* variables
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_S, env=environment)


@pytest.mark.slow
def test_saved_run_is_fingerprinted_and_a_changed_counter_fails_the_comparison(tmp_path):
    baseline = tmp_path / "baseline.json"
    first = _pytest(f"--benchmark-json={baseline}")
    assert first.returncode == 0, first.stdout + first.stderr
    saved = json.loads(baseline.read_text())
    fingerprint = saved["machine_info"]["metagrad"]
    assert {"cpu", "gpus", "torch", "threads"} <= set(fingerprint)
    counters = load_baseline(baseline)
    assert len(counters) == 1
    (name, info), = counters.items()
    assert info["flops"] > 0 and info["saved_bytes"] > 0 and info["grad_evals"] == 1

    same = _pytest(f"--counter-baseline={baseline}")
    assert same.returncode == 0, same.stdout + same.stderr

    for entry in saved["benchmarks"]:
        entry["extra_info"]["flops"] += 1
    baseline.write_text(json.dumps(saved))
    changed = _pytest(f"--counter-baseline={baseline}")
    assert changed.returncode == 1
    assert "work counters differ" in changed.stdout and "flops:" in changed.stdout
