"""bench/gpu_checks.sh's set-up, which runs on the CPU (its phases need a GPU, or minutes: the README's dry run)."""

import os
import subprocess
from pathlib import Path

from tests.limits import HANG_S

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_checks.sh"


def run_script(cwd: Path, out: Path, *phases: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("DRY_RUN", "RESULTS")}
    return subprocess.run(["bash", str(SCRIPT), *phases], cwd=cwd, env={**env, "OUT": str(out), **environment},
                          capture_output=True, text=True, timeout=HANG_S)


def test_a_dry_run_leaves_the_carried_gpu_results_alone(tmp_path):
    """runs/gpu-results holds the GPU runs' checkpoints that the next session carries back to resume them; a dry
    run on the CPU once overwrote them with its tiny runs. It now writes under $OUT; a real run still writes
    to runs/gpu-results (an unknown phase stops either right after the set-up, with exit code 2)."""
    out = tmp_path / "out"
    dry = run_script(tmp_path, out, "no-such-phase", DRY_RUN="1", DEVICE="cpu")
    assert dry.returncode == 2 and "unknown phase no-such-phase" in dry.stdout
    assert (out / "dry-run-results").is_dir() and not (tmp_path / "runs").exists()
    real = run_script(tmp_path, tmp_path / "out-real", "no-such-phase", DEVICE="cpu")
    assert real.returncode == 2 and (tmp_path / "runs" / "gpu-results").is_dir()
