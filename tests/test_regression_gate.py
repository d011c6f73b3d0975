"""The work gate (bench/regression/gate.py) against the committed counter file: it fails, naming the benchmark, the
counter, its old and new value and the command that accepts the change, on a MAML that went first-order, an extra
Hessian-vector product per CG step and a saved tensor more per inner step; with the counter file saved again it
passes. And the pytest side: a saved timed run carries the fingerprint, the commit and the time ratio; a changed
counter fails the README's test command's benchmarks."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metagrad.algorithms.fomaml import FirstOrderMAML
from metagrad.algorithms.imaml import IMAML
from metagrad.algorithms.maml import MAML
from metagrad.bench.regression.cases import Case, all_cases, meta_gradient_cases, prepare
from metagrad.bench.regression.gate import counter_changes, default_counter_file, gate_failure, load_counters, save_counters
from tests.data_paths import require_data
from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = default_counter_file(ROOT, "cpu")
ACCEPT = "metagrad counters --save reports/benchmarks/counters-cpu.json"


def _case(algorithm: str, steps: int) -> Case:
    return next(case for case in meta_gradient_cases((algorithm,), ("synthetic",)) if case.params[2] == steps)


def _counted(case: Case) -> dict:
    return prepare(case, torch.device("cpu")).count()


def test_counter_changes_flags_any_difference_and_skips_missing_counters():
    base = {"flops": 1000, "grad_evals": 3, "saved_bytes": 64}
    assert counter_changes(dict(base), base) == []
    assert counter_changes({"flops": 1100, "grad_evals": 3}, base) == ["flops: 1,000 -> 1,100 (+10.0%)"]
    # less work is flagged too: a second-order method that silently went first-order does less
    assert counter_changes({"grad_evals": 2}, base) == ["grad_evals: 3 -> 2 (-33.3%)"]
    assert counter_changes({"hvp_evals": 7, "time": 1.0}, base) == []


def test_the_committed_counter_file_covers_every_own_case_and_explains_what_it_leaves_out():
    committed = load_counters(COMMITTED)
    names = {case.name for case in all_cases()}
    assert names == set(committed.benchmarks) | set(committed.not_gated)
    assert committed.not_gated and all("line search" in why for why in committed.not_gated.values())
    assert all(counters for counters in committed.benchmarks.values())


def test_the_gate_passes_on_the_committed_work():
    committed = load_counters(COMMITTED)
    for case in (_case("maml", 4), _case("imaml", 4), _case("reptile", 16)):
        assert gate_failure(case.name, _counted(case), committed, COMMITTED, ACCEPT) is None


def _fails_then_passes_once_saved(case: Case, tmp_path: Path) -> dict:
    """The gate's message on ``case`` against the committed file; then the file saved with the new work passes."""
    counters = _counted(case)
    message = gate_failure(case.name, counters, load_counters(COMMITTED), COMMITTED, ACCEPT)
    assert message is not None and message.startswith(case.name) and ACCEPT in message
    accepted = tmp_path / "counters.json"
    shutil.copy(COMMITTED, accepted)
    _, lines = save_counters(accepted, {case.name: counters}, {}, "cpu", torch.__version__, "test")
    assert lines and all(line.startswith(case.name) for line in lines)
    assert gate_failure(case.name, counters, load_counters(accepted), accepted, ACCEPT) is None
    return {"message": message, "old": load_counters(COMMITTED).benchmarks[case.name], "new": counters}


def test_the_gate_fails_on_a_maml_that_went_first_order(monkeypatch, tmp_path):
    def first_order(self, model, theta, task):
        return FirstOrderMAML(inner_steps=self.inner_steps, inner_lr=self.inner_lr, lam=self.lam).meta_gradient(model, theta,
                                                                                                         task)

    monkeypatch.setattr(MAML, "meta_gradient", first_order)
    found = _fails_then_passes_once_saved(_case("maml", 4), tmp_path)
    assert "hvp_evals: 4 -> 0 (-100.0%)" in found["message"] and "flops:" in found["message"]
    assert found["new"]["flops"] < found["old"]["flops"]


def test_the_gate_fails_on_an_extra_hessian_vector_product_per_cg_step(monkeypatch, tmp_path):
    def twice(self, hessian_product):
        return lambda u: (1.0 + self.damping) * u + (hessian_product(u) + 0.0 * hessian_product(u)) / self.lam

    monkeypatch.setattr(IMAML, "system", twice)
    found = _fails_then_passes_once_saved(_case("imaml", 4), tmp_path)
    old, new = found["old"]["hvp_evals"], found["new"]["hvp_evals"]
    assert new - old == 5  # one more product in each of the 5 CG steps
    assert f"hvp_evals: {old} -> {new}" in found["message"] and "flops:" in found["message"]


def test_the_gate_fails_on_a_saved_tensor_more_per_inner_step(monkeypatch, tmp_path):
    original = torch.nn.functional.cross_entropy

    def keeps_its_logits(logits, target, *args, **kwargs):  # pow saves its input for backward: one tensor per step
        return original(logits, target, *args, **kwargs) + 0.0 * logits.pow(2).sum()

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", keeps_its_logits)
    growth = {}
    for steps in (1, 4, 16):
        found = _fails_then_passes_once_saved(_case("maml", steps), tmp_path)
        assert "saved_bytes:" in found["message"]
        growth[steps] = found["new"]["saved_bytes"] - found["old"]["saved_bytes"]
    assert 0 < growth[1] < growth[4] < growth[16]  # it grows with the inner steps


def test_a_missing_entry_names_the_command_that_counts_it():
    message = gate_failure("test_meta_gradient[synthetic-new-1]", {"flops": 1}, load_counters(COMMITTED), COMMITTED,
                           ACCEPT)
    assert "not in the counter file" in message and ACCEPT in message


def _pytest(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/benchmarks/test_meta_gradient.py", "-k", "synthetic-maml-4 or synthetic-gradient", *args]
    # a pytest of its own, not one of this run's xdist workers: pytest-benchmark turns itself off in a process that
    # inherits a worker's PYTEST_XDIST_* variables
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_S, env=environment)


@pytest.mark.slow
def test_a_changed_counter_fails_the_benchmarks_and_a_saved_run_is_tagged(tmp_path):
    saved = tmp_path / "run.json"
    timed = _pytest("--benchmark-only", f"--benchmark-json={saved}")
    assert timed.returncode == 0, timed.stdout + timed.stderr
    run = json.loads(saved.read_text())
    assert {"cpu", "gpus", "torch", "threads"} <= set(run["machine_info"]["metagrad"])
    assert len(run["commit_info"]["id"]) == 40
    for entry in run["benchmarks"]:
        info = entry["extra_info"]
        assert info["reference_s"] > 0 and info["time_ratio"] == pytest.approx(entry["stats"]["median"]
                                                                               / info["reference_s"])
        assert info["flops"] > 0

    changed = json.loads(COMMITTED.read_text())
    changed["benchmarks"]["test_meta_gradient[synthetic-maml-4]"]["flops"] += 1
    file = tmp_path / "counters.json"
    file.write_text(json.dumps(changed))
    gated = _pytest(f"--counter-baseline={file}")
    assert gated.returncode == 1
    assert "test_meta_gradient[synthetic-maml-4]: the work changed: flops:" in gated.stdout
    assert "metagrad counters --save" in gated.stdout
    assert _pytest().returncode == 0  # the committed file: passes


def _readme_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Regression tracking")[1].split("\n## ")[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.real_data
def test_the_readme_regression_commands_gate_save_and_draw(tmp_path):
    """The README's section: the gate (this suite's own benchmarks run it), the save that writes the committed file
    (here into an empty file, which comes out equal to the committed one entry by entry), the timed save (the test
    above saves such a run) and the history, run as written but into a temporary folder."""
    require_data("omniglot-py")
    require_data("mini-imagenet")
    gate, save, timed, history = _readme_commands()
    assert gate.startswith("python -m pytest tests/benchmarks")
    assert save == f"metagrad counters --save {COMMITTED.relative_to(ROOT)}"
    assert timed.startswith("python -m pytest tests/benchmarks --benchmark-only --benchmark-save=")

    def metagrad(words: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "metagrad", *words], cwd=ROOT, capture_output=True, text=True,
                              timeout=HANG_S)

    written = tmp_path / "counters-cpu.json"
    saved = metagrad(save.split()[1:-1] + [str(written)])
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert load_counters(written).benchmarks == load_counters(COMMITTED).benchmarks
    assert load_counters(written).not_gated == load_counters(COMMITTED).not_gated

    words = history.split()[1:]
    drawn = metagrad(words[:words.index("--out") + 1] + [str(tmp_path / "history")])
    assert drawn.returncode == 0, drawn.stdout + drawn.stderr
    table = (tmp_path / "history" / "tables" / "benchmark-history.md").read_text()
    assert "0011_baseline-cpu-amd-epyc-2threads-no-dead-biases" in table and "The last change" in table
    assert (tmp_path / "history" / "figures" / "benchmark-history.png").stat().st_size > 10_000
