"""Every check metagrad makes on a CUDA GPU, in one run: python tools/gpu_checks.py --out DIR.

Phases (--phases, in the order given; default measure,imaml,imaml-minres,bench):
  measure       DIR/device.txt; tests/test_cuda.py (the captured iteration trains as the eager one does, float64);
                `metagrad throughput` of the per-task engine, of the batched engine eagerly (checked against the
                per-task engine on 8 tasks, float64 and float32), then captured as a CUDA graph with the device
                sampler (the host sampler where that capture fails), and channels last for four presets; every
                row traced. Writes DIR/flags.json: the flags the training phases use.
  tests         DIR/device.txt and tests/test_cuda.py alone (the graph for the presets whose test passed).
  paper         the Omniglot 5-way 1-shot MAML preset at its full 60,000 iterations, over as many runs of this
                tool as it takes (each resumes from the checkpoint in DIR), its first --maml-minutes kept apart;
                each evaluated on 600 test tasks.
  maml          the MAML preset for --maml-minutes of training, then its 600 test tasks.
  imaml         the iMAML-GD preset for the time left (at most --imaml-minutes), then its test tasks; a run already
                in DIR resumes toward the preset's 60,000 iterations.
  imaml-minres  the same with MINRES for the meta-gradient; with imaml, the two share the time left.
  bench         the pytest-benchmark baseline of the benchmarks that run on the device, and their work counters
                (DIR/benchmarks: counters-cuda.json is the GPU's file for the work gate).
  compile       first-order MAML and MAML through torch.compile (inductor) instead of the captured graph.

Every step has its own time limit inside --budget-s (seconds for the whole run), so one that hangs or fails leaves the
others their time; a training run stopped by its limit receives SIGTERM and saves a checkpoint first. --dry-run runs
every step at a tiny size (on the CPU with --device cpu) to check the tool itself in a few minutes.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

PHASES = ("measure", "tests", "paper", "maml", "imaml", "imaml-minres", "bench", "compile")
PAPER_ITERATIONS = 60_000  # the preset's
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Checks:
    out: Path
    device: str
    data_root: str | None
    budget_s: float
    dry_run: bool
    maml_minutes: float
    imaml_minutes: float
    tail_s: float = 75.0  # kept at the end of the budget for the last evaluation
    started: float = field(default_factory=time.monotonic)

    # sizes: the real ones, or tiny ones that take a CPU through every step quickly
    @property
    def small(self) -> list[str]:
        return ["--filters", "4", "--meta-batch", "4"] if self.dry_run else []

    @property
    def iterations(self) -> str:
        return "1" if self.dry_run else "20"

    @property
    def eager_iterations(self) -> str:
        return "1" if self.dry_run else "3"

    @property
    def eval_tasks(self) -> str:
        return "20" if self.dry_run else "600"

    @property
    def paper_iterations(self) -> int:
        return 60 if self.dry_run else PAPER_ITERATIONS

    @property
    def paper_validate_every(self) -> str:
        return "20" if self.dry_run else "2000"

    @property
    def common(self) -> list[str]:
        return ["--device", self.device, *(["--data-root", self.data_root] if self.data_root else []), "--no-progress"]

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def step(self, cap_s: float, name: str, command: list[str], reserve_s: float | None = None) -> bool:
        """Run ``command`` for at most ``cap_s`` and no more than the budget left less ``reserve_s`` (default
        ``tail_s``); skipped under 20 s. On its limit it gets SIGTERM (a training run saves a checkpoint), then
        a minute, then SIGKILL. Whether it succeeded."""
        limit = min(cap_s, self.left_s() - (self.tail_s if reserve_s is None else reserve_s))
        if limit < 20:
            print(f"skipped {name}: {self.budget_s - self.left_s():.0f} s of {self.budget_s:.0f} used", flush=True)
            return False
        print(f"== {name} (at most {limit:.0f} s)", flush=True)
        process = subprocess.Popen(command, cwd=ROOT)
        try:
            return process.wait(timeout=limit) == 0
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(f"{name}: stopped at its limit of {limit:.0f} s", flush=True)
            return False

    def metagrad(self, *words: str) -> list[str]:
        return [sys.executable, "-m", "metagrad", *words]

    def throughput(self, cap_s: float, name: str, folder: str, *options: str) -> bool:
        return self.step(cap_s, name, self.metagrad("throughput", "--out", str(self.out / folder), "--engines",
                                                    *options, "--trace", *self.small, *self.common))


def describe_device(checks: Checks) -> None:
    """DIR/device.txt: the GPU, its driver, torch."""
    lines = []
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                              capture_output=True, text=True)
        lines.append(done.stdout.strip())
    import torch

    lines.append(f"torch {torch.__version__} python {sys.version.split()[0]} "
                 f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA'}")
    (checks.out / "device.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def cuda_tests(checks: Checks) -> bool:
    environment = [f"--junitxml={checks.out / 'test-cuda.xml'}", "-p", "no:cacheprovider", "-q", "-rs"]
    return checks.step(150, "CUDA tests", [sys.executable, "-m", "pytest", "tests/test_cuda.py", *environment])


def graph_tested(checks: Checks, variant: str) -> bool:
    """Whether tests/test_cuda.py's captured-iteration test of ``variant`` passed."""
    try:
        cases = list(ElementTree.parse(checks.out / "test-cuda.xml").iter("testcase"))
    except (OSError, ElementTree.ParseError):
        return False
    name = f"test_the_captured_iteration_is_the_eager_iteration[{variant}]"
    return [not list(case) for case in cases if case.get("name") == name] == [True]


def imaml_gd_row(path: Path) -> dict | None:
    try:
        with path.open() as file:
            return next(row for row in csv.DictReader(file) if row["preset"] == "omniglot-5w1s-imaml-gd")
    except (OSError, StopIteration):
        return None


def faster_channels_last(base: Path, channels_last: Path) -> bool:
    """iMAML-GD at least 3 % faster channels last, and the same as the per-task engine to 1e-10."""
    before, after = imaml_gd_row(base), imaml_gd_row(channels_last)
    if before is None or after is None:
        print("channels last: no iMAML-GD rows to compare; training keeps the default layout")
        return False
    ratio = float(after["tasks_per_s"]) / float(before["tasks_per_s"])
    difference = float(after["max_rel_diff_vs_per_task"])
    chosen = ratio >= 1.03 and math.isfinite(difference) and difference < 1e-10
    print(f"channels last: iMAML-GD {ratio:.2f}x, float64 difference from per-task {difference:.1e}: "
          + ("training takes --channels-last" if chosen else "training keeps the default layout"))
    return chosen


def measure(checks: Checks) -> None:
    describe_device(checks)
    tests_passed = cuda_tests(checks)
    checks.throughput(100, "per-task engine", "throughput-per-task", "per-task", "--iterations", "1",
                      "--meta-batch", "8")
    checks.throughput(120, "batched engine, eager", "throughput-eager", "batched", "--iterations",
                      checks.eager_iterations, "--check-tasks", "8")
    flags, base, measured = ["--cuda-graph", "--sampler", "device"], "throughput-graph", ["--iterations",
                                                                                         checks.iterations]
    if not checks.throughput(100, "batched engine, CUDA graph", base, "batched", *flags, *measured,
                             "--check-tasks", "0"):
        print("CUDA graph with the device sampler failed: trying the host sampler")
        flags, base = ["--cuda-graph", "--sampler", "host"], "throughput-graph-host-sampler"
        if not checks.throughput(100, "batched engine, CUDA graph, host sampler", base, "batched", *flags,
                                 *measured, "--check-tasks", "0"):
            print("CUDA graph capture failed: training runs eagerly")
            flags, base, measured = ["--sampler", "device"], "throughput-eager", ["--iterations",
                                                                                  checks.eager_iterations]
    presets = "omniglot-5w1s-maml,omniglot-5w1s-fomaml,omniglot-5w1s-reptile,omniglot-5w1s-imaml-gd"
    if checks.throughput(100, "batched engine, channels last", "throughput-channels-last", "batched",
                         "--channels-last", *flags, *measured, "--check-tasks", "4", "--presets", presets) \
            and faster_channels_last(
            checks.out / base / "throughput.csv", checks.out / "throughput-channels-last" / "throughput.csv"):
        flags = [*flags, "--channels-last"]
    if not tests_passed:
        print("some CUDA tests failed: a preset whose graph test failed trains eagerly")
    (checks.out / "flags.json").write_text(json.dumps(flags) + "\n")


def training_flags(checks: Checks, variant: str) -> list[str]:
    """The engine's flags for a training run of ``variant``: measure's choice, the graph only where its test
    passed, eager on the CPU."""
    try:
        flags = json.loads((checks.out / "flags.json").read_text())
    except (OSError, ValueError):
        flags = ["--sampler", "device"]
    if checks.device != "cuda":
        return ["--sampler", "device"]
    if "--cuda-graph" in flags and not graph_tested(checks, variant):
        print(f"the captured-iteration test of {variant} did not pass: training runs eagerly")
        return ["--sampler", "device"]
    return flags


def progress_of(run: Path) -> tuple[int, float]:
    """The iteration and training seconds of the run's last logged row (0, 0 before any)."""
    try:
        with (run / "metrics.csv").open() as file:
            rows = list(csv.DictReader(file))
    except OSError:
        rows = []
    return (int(rows[-1]["iteration"]), float(rows[-1]["train_time_s"])) if rows else (0, 0.0)


def evaluate(checks: Checks, run: Path, name: str) -> None:
    checks.step(60, f"evaluate {name} on {checks.eval_tasks} test tasks",
                checks.metagrad("eval", str(run), "--engine", "batched", "--device", checks.device, "--tasks",
                                checks.eval_tasks, "--no-progress"), reserve_s=10)


def train_and_evaluate(checks: Checks, variant: str, max_minutes: float, validate_every: int, after: int = 0) -> None:
    """Train ``variant`` (``omniglot-5w1s-VARIANT``) for what the budget leaves it, sharing it equally with the
    ``after`` runs still to come, each keeping its tail and a minute for start-up and validation; a run already in
    DIR resumes."""
    run = checks.out / f"train-omniglot-5w1s-{variant}-batched"
    left = checks.left_s()
    shared = (left - (checks.tail_s + 60) * (1 + after)) / (1 + after)
    seconds = shared if shared > 12 else left - checks.tail_s - 60
    if seconds <= 12:
        print(f"no time left for {variant}")
        return
    minutes = round(min(max_minutes, seconds / 60), 2)
    flags = training_flags(checks, variant)
    if (run / "checkpoint.pt").is_file():
        iteration, trained = progress_of(run)
        checks.step(minutes * 60 + 60, f"resume {variant} at iteration {iteration} for {minutes} more minutes",
                    checks.metagrad("train", "--resume", "--out", str(run), "--device", checks.device, "--engine",
                                    "batched", *flags, "--max-minutes", str(round(trained / 60 + minutes, 2)),
                                    "--no-progress"))
    else:
        checks.step(minutes * 60 + 60, f"train {variant} for {minutes} minutes",
                    checks.metagrad("train", "--preset", f"omniglot-5w1s-{variant}", "--out", str(run), "--engine",
                                    "batched", *flags, "--max-minutes", str(minutes), "--validate-every",
                                    str(validate_every), *checks.small, *checks.common))
    evaluate(checks, run, variant)


def paper(checks: Checks) -> None:
    """The MAML preset at full length, over as many runs as it takes, its first ``maml_minutes`` kept apart."""
    run = checks.out / "train-omniglot-5w1s-maml-full"
    early = checks.out / f"train-omniglot-5w1s-maml-first-{checks.maml_minutes:g}-minutes"
    flags = training_flags(checks, "maml")
    if not (run / "config.json").is_file():
        checks.step(checks.maml_minutes * 60 + 60, f"train maml for {checks.maml_minutes} minutes",
                    checks.metagrad("train", "--preset", "omniglot-5w1s-maml", "--out", str(run), "--engine",
                                    "batched", *flags, "--max-minutes", str(checks.maml_minutes), "--iterations",
                                    str(checks.paper_iterations), "--validate-every", checks.paper_validate_every,
                                    *checks.small, *checks.common))
        if (run / "checkpoint.pt").is_file():
            shutil.rmtree(early, ignore_errors=True)
            shutil.copytree(run, early)
            evaluate(checks, early, f"maml after {checks.maml_minutes} minutes")
    iteration, seconds = progress_of(run)
    if iteration < checks.paper_iterations:
        minutes = max(0.01, round((seconds + checks.left_s() - 45 - 35) / 60, 2))
        checks.step(checks.budget_s, f"resume maml at iteration {iteration}, to {checks.paper_iterations} "
                    f"iterations or {minutes} minutes of training",
                    checks.metagrad("train", "--resume", "--out", str(run), "--device", checks.device, "--engine",
                                    "batched", *flags, "--max-minutes", str(minutes), "--iterations",
                                    str(checks.paper_iterations), "--no-progress"), reserve_s=45)
        iteration, _ = progress_of(run)
    if iteration >= checks.paper_iterations and not (run / "eval.json").is_file():
        evaluate(checks, run, f"maml after {iteration} iterations")
    if iteration < checks.paper_iterations:
        print(f"maml stopped at iteration {iteration} of {checks.paper_iterations}: run the paper phase again")


def benchmarks(checks: Checks) -> None:
    selection = "device_sampler and omniglot-5w1s" if checks.dry_run else "tasks_per_second or device_sampler"
    checks.step(150, "benchmarks", [sys.executable, "-m", "pytest", "tests/benchmarks", "--benchmark-only",
                                    "--bench-device", checks.device, "-p", "no:cacheprovider",
                                    f"--benchmark-storage=file://{checks.out / 'benchmarks'}",
                                    f"--benchmark-save=gpu-{checks.device}", "-k", selection, "-q"], reserve_s=10)
    # the work counters on this device type (its device operations among them): reports/benchmarks/counters-cuda.json
    # once committed, the file the benchmarks' work gate reads on a GPU
    only = ["--algorithms", "maml", "--problems", "synthetic"] if checks.dry_run else []
    checks.step(120, "work counters", checks.metagrad("counters", "--device", checks.device, *only, "--save",
                                                      str(checks.out / "benchmarks" /
                                                          f"counters-{checks.device.split(':')[0]}.json")),
                reserve_s=10)


def compiled(checks: Checks) -> None:
    checks.throughput(300, "torch.compile", "throughput-compiled", "batched", "--compile", "--sampler", "device",
                      "--presets", "omniglot-5w1s-fomaml,omniglot-5w1s-maml", "--iterations", checks.iterations,
                      "--check-tasks", "0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/gpu_checks.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the results' folder (a run there resumes)")
    parser.add_argument("--phases", default="measure,imaml,imaml-minres,bench", help="comma-separated phases")
    parser.add_argument("--budget-s", type=float, default=570.0, help="seconds for the whole run (default 570)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; cpu with --dry-run)")
    parser.add_argument("--data-root", default=None, help="the data folder (default: metagrad's)")
    parser.add_argument("--maml-minutes", type=float, default=None, help="MAML's training minutes (default 3)")
    parser.add_argument("--imaml-minutes", type=float, default=None, help="iMAML's at most (default 8)")
    parser.add_argument("--dry-run", action="store_true", help="every step at a tiny size: checks the tool")
    args = parser.parse_args(argv)
    phases = [phase for phase in args.phases.split(",") if phase]
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown:
        print(f"gpu_checks: error: unknown phase {', '.join(unknown)} (choose from {', '.join(PHASES)})",
              file=sys.stderr)
        return 2
    small = 0.05 if args.dry_run else None
    checks = Checks(args.out, args.device, args.data_root, args.budget_s, args.dry_run,
                    args.maml_minutes or small or 3.0, args.imaml_minutes or small or 8.0)
    checks.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.data_root:
        os.environ["METAGRAD_DATA"] = args.data_root  # the CUDA tests read it too
    for phase in phases:
        if phase == "measure":
            measure(checks)
        elif phase == "tests":
            describe_device(checks)
            cuda_tests(checks)
            if not (checks.out / "flags.json").is_file():
                (checks.out / "flags.json").write_text(json.dumps(["--cuda-graph", "--sampler", "device"]) + "\n")
        elif phase == "paper":
            paper(checks)
        elif phase == "maml":
            train_and_evaluate(checks, "maml", checks.maml_minutes, 500)
        elif phase == "imaml":
            train_and_evaluate(checks, "imaml-gd", checks.imaml_minutes, 250, after=int("imaml-minres" in phases))
        elif phase == "imaml-minres":
            train_and_evaluate(checks, "imaml-gd-minres", checks.imaml_minutes, 250)
        elif phase == "bench":
            benchmarks(checks)
        elif phase == "compile":
            compiled(checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
