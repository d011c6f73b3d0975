"""ANIL's own work gate, the one command a plug-in's CI runs: its meta-gradient's counters (gradients, Hessian-vector
products, FLOPs, saved bytes at 1, 4 and 16 inner steps on metagrad's synthetic problem) against the file committed
beside it, ``counters-cpu.json`` (saved with ``--save`` in place of ``--gate``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
GATE = ["-m", "metagrad", "counters", "--algorithms", "anil", "--problems", "synthetic", "--gate"]


def _gate(file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *GATE, str(file)], cwd=HERE, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_anil_work_equals_its_committed_counters(tmp_path):
    passed = _gate(HERE / "counters-cpu.json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "gate: the work of all 3 benchmarks equals" in passed.stdout

    changed = json.loads((HERE / "counters-cpu.json").read_text())
    changed["benchmarks"]["test_meta_gradient[synthetic-anil-4]"]["hvp_evals"] += 1
    (tmp_path / "counters.json").write_text(json.dumps(changed))
    failed = _gate(tmp_path / "counters.json")
    assert failed.returncode == 1
    assert "test_meta_gradient[synthetic-anil-4]: the work changed: hvp_evals: 5 -> 4" in failed.stdout
    assert "metagrad counters --algorithms anil --problems synthetic --save" in failed.stdout
