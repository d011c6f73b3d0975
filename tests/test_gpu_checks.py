"""tools/gpu_checks.py, the GPU checks, run as a dry run on the CPU (its phases need a GPU, or minutes)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.limits import HANG_S

TOOL = Path(__file__).resolve().parent.parent / "tools" / "gpu_checks.py"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=HANG_S)


def test_an_unknown_phase_is_one_line_and_exit_2_before_anything_runs(tmp_path):
    done = run_tool("--out", str(tmp_path / "out"), "--phases", "maml,no-such-phase")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "unknown phase no-such-phase" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_dry_run_trains_evaluates_and_resumes_in_its_folder(tmp_path, small_data_root):
    """The maml phase trains the preset (tiny), evaluates it; run again, it resumes the run it finds."""
    out = tmp_path / "out"
    first = run_tool("--out", str(out), "--phases", "maml", "--device", "cpu", "--dry-run", "--budget-s", "600",
                     "--data-root", str(small_data_root))
    assert first.returncode == 0, first.stderr
    run = out / "train-omniglot-5w1s-maml-batched"
    assert json.loads((run / "eval.json").read_text())["tasks"] == 20
    second = run_tool("--out", str(out), "--phases", "maml", "--device", "cpu", "--dry-run", "--budget-s", "600",
                      "--data-root", str(small_data_root))
    assert second.returncode == 0, second.stderr
    assert "resume maml at iteration" in second.stdout
