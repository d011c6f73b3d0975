"""Data parallelism under torchrun (gloo on the CPU), launched as users launch it: the result does not
depend on the number of processes, interruption and failure stop every process, only rank 0 writes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from metagrad.bench.cli import main
from metagrad.bench.harnesses.scaling import scaling_table
from metagrad.bench.training.config import EvalConfig, TrainConfig
from metagrad.bench.training.distributed import ProcessGroup
from metagrad.bench.training.evaluation import evaluate_run
from metagrad.bench.training.trainer import train

from .limits import HANG_S


def config(root, **changes) -> TrainConfig:
    """A tiny float64 run; a meta-batch of 5 and 7 validation tasks do not divide by 2 processes."""
    base = TrainConfig(dataset="omniglot", ways=5, shots=1, queries=5, algorithm="maml",
                       hyperparameters={"inner_steps": 1, "inner_lr": 0.4}, filters=4, meta_batch=5, meta_lr=0.005,
                       iterations=4, validate_every=2, validation_tasks=7, checkpoint_every=1, data_root=str(root),
                       dtype="float64")
    return replace(base, **changes)


def command_line(config: TrainConfig, out: Path) -> list[str]:
    """``metagrad train`` arguments for ``config`` (the fields these tests vary)."""
    argv = ["train", "--out", str(out), "--dataset", config.dataset, "--algorithm", config.algorithm,
            "--ways", str(config.ways), "--shots", str(config.shots), "--queries", str(config.queries),
            "--filters", str(config.filters), "--meta-batch", str(config.meta_batch), "--meta-lr", str(config.meta_lr),
            "--iterations", str(config.iterations), "--validate-every", str(config.validate_every),
            "--validation-tasks", str(config.validation_tasks), "--checkpoint-every", str(config.checkpoint_every),
            "--data-root", config.data_root, "--dtype", config.dtype, "--engine", config.engine, "--threads", "1",
            "--sampler", config.sampler,
            "--seed", str(config.seed), "--no-progress"]
    for key, value in config.hyperparameters.items():
        argv += ["--set", f"{key}={value}"]
    return argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def torchrun(arguments: list[str], program: list[str], nproc: int = 2, environment: dict[str, str] | None = None,
             **popen) -> subprocess.Popen:
    """``torchrun --nproc-per-node N [arguments] program`` (torchrun is ``python -m torch.distributed.run``), with
    ``environment`` added to this process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(environment or {})}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *arguments,
                             *program], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the launch hung for {HANG_S} s:\n{output[-3000:]}")
    return process.returncode, output


def standalone(argv: list[str], nproc: int = 2, script: Path | None = None) -> str:
    program = [str(script)] if script else ["-m", "metagrad"]
    code, output = finish(torchrun(["--standalone"], program + argv, nproc))
    assert code == 0, output[-3000:]
    return output


def assert_same_run(reference: Path, other: Path, tolerance: float) -> None:
    a, b = (torch.load(run / "checkpoint.pt")["theta"] for run in (reference, other))
    assert ((a - b).norm() / a.norm()).item() < tolerance  # every parameter
    one, two = (pd.read_csv(run / "metrics.csv") for run in (reference, other))
    exact = ["iteration", "tasks", "val_tasks", "grad_evals", "hvp_evals", "cg_iterations_mean", "val_accuracy"]
    pd.testing.assert_frame_equal(one[exact], two[exact])
    close = ["train_query_loss", "train_query_accuracy", "val_ci95"]
    pd.testing.assert_frame_equal(one[close], two[close], rtol=tolerance)


# Records which process replaced which file (every finished file is an os.replace of a temporary one),
# and the threads each process still runs when the command has returned (Linux names them in /proc).
SPY = """
import os, sys
logs = sys.argv.pop(1)
log = os.path.join(logs, f"replaced-by-rank-{os.environ['RANK']}.txt")
real_replace = os.replace
def replace(source, target, *args, **kwargs):
    with open(log, "a") as f:
        f.write(os.path.basename(str(target)) + "\\n")
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
from metagrad.bench.cli import main
code = main(sys.argv[1:])
threads = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
with open(os.path.join(logs, f"threads-left-in-rank-{os.environ['RANK']}.txt"), "w") as f:
    f.write("\\n".join(threads))
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine, dtype, tolerance, sampler", [
    ("per-task", "float64", 1e-12, "host"),
    ("batched", "float64", 1e-12, "host"),
    ("batched", "float64", 1e-12, "device"),  # each process draws the whole batch on its device, keeps its share
    # float32: the two sums of 5 meta-gradients round differently (1e-5 relative, measured 1e-7 after 4 steps)
    ("per-task", "float32", 1e-5, "host"),
])
def test_two_processes_give_the_one_process_run(tmp_path, engine, dtype, tolerance, sampler, small_data_root):
    root = small_data_root
    run = config(root, engine=engine, dtype=dtype, sampler=sampler,
                 algorithm="imaml" if engine == "batched" else "maml",
                 hyperparameters={"inner_steps": 3, "inner_lr": 0.1, "cg_steps": 3} if engine == "batched"
                 else {"inner_steps": 1, "inner_lr": 0.4})
    torch.set_num_threads(1)
    train(run, tmp_path / "one", progress=False)
    script = tmp_path / "spy.py"
    script.write_text(SPY)
    logs = tmp_path / "logs"
    logs.mkdir()
    standalone([str(logs), *command_line(run, tmp_path / "two")], script=script)
    # no gloo thread outlives the process group: left to interpreter shutdown they can abort a finished run
    for rank in (0, 1):
        left = (logs / f"threads-left-in-rank-{rank}.txt").read_text().split()
        assert left and not any("gloo" in name for name in left), left
    assert_same_run(tmp_path / "one", tmp_path / "two", tolerance)
    # rank 0 alone wrote, and every file once per save
    assert sorted(p.name for p in logs.glob("replaced-*")) == ["replaced-by-rank-0.txt"]
    written = (logs / "replaced-by-rank-0.txt").read_text().split()
    assert set(written) == {"config.json", "checkpoint.pt", "metrics.csv"}
    assert written.count("config.json") == 1 and written.count("checkpoint.pt") == run.iterations + 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]
    saved = pd.read_json(tmp_path / "two" / "config.json", typ="series")
    assert saved["world_size"] == 2 and saved["backend"] == "gloo"
    assert list(pd.read_csv(tmp_path / "two" / "metrics.csv")["world_size"]) == [2, 2]
    scaling = scaling_table([tmp_path / "one", tmp_path / "two"])
    assert list(scaling["world_size"]) == [1, 2] and scaling["speedup"].iloc[0] == 1.0
    assert list(scaling["tasks"]) == [run.iterations * run.meta_batch] * 2
    if engine == "per-task" and dtype == "float64":  # evaluation shared out too: the one-process scores
        alone = evaluate_run(tmp_path / "two", EvalConfig(split="val", tasks=9), progress=False)
        standalone(["eval", str(tmp_path / "two"), "--split", "val", "--tasks", "9", "--threads", "1", "--no-progress"])
        shared = json.loads((tmp_path / "two" / "eval.json").read_text())
        assert (shared["accuracy"], shared["ci95"], shared["tasks"]) == (alone["accuracy"], alone["ci95"], 9)
        assert shared["world_size"] == 2


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes_with_one_process(tmp_path, small_data_root):
    """SIGINT to torchrun (Ctrl-C): it forwards the signal, both processes stop after the same iteration and
    rank 0 writes the checkpoint; one process then finishes the run, which equals the uninterrupted one."""
    root = small_data_root
    # 100 iterations: the interruption comes a few iterations in, and the replays below cost what the run does
    run = config(root, iterations=100, validate_every=50, checkpoint_every=1)
    launch = torchrun(["--standalone"], ["-m", "metagrad", *command_line(run, tmp_path / "two")])
    checkpoint = tmp_path / "two" / "checkpoint.pt"
    started = time.monotonic()
    while time.monotonic() - started < HANG_S:  # interrupt once it is a few iterations in
        if checkpoint.is_file() and torch.load(checkpoint)["iteration"] >= 3:
            break
        time.sleep(0.2)
    launch.send_signal(signal.SIGINT)
    code, output = finish(launch)
    assert code != 0 and "metagrad train: interrupted" in output, output[-3000:]
    stopped = torch.load(checkpoint)["iteration"]
    assert 3 <= stopped < run.iterations, "the run ended before the interruption; make it longer"
    torch.set_num_threads(1)
    train(run, tmp_path / "two", resume=True, progress=False)
    train(run, tmp_path / "one", progress=False)
    assert_same_run(tmp_path / "one", tmp_path / "two", 1e-12)
    launches = pd.read_json(tmp_path / "two" / "config.json", typ="series")["launches"]
    assert [(x["iteration"], x["world_size"]) for x in launches] == [(0, 2), (stopped, 1)]


SIGTERM_IN_STEP = """
import os, signal, sys
from metagrad.bench.training import steps
original, calls = steps.PerTaskStep.__call__, [0]
def signalled(self, batch):  # a scheduler's SIGTERM arrives during the 7th iteration, between checkpoints
    calls[0] += 1
    if calls[0] == 7:
        os.kill(os.getpid(), signal.SIGTERM)
    return original(self, batch)
steps.PerTaskStep.__call__ = signalled
from metagrad.bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_to_one_process_writes_the_checkpoint_and_resumes_exactly(tmp_path, small_data_root):
    """A scheduler's SIGTERM to a plain ``metagrad train``: like Ctrl-C, a checkpoint, exit 130, exact resume. The
    signal is the process's own, sent in its 7th iteration, so that where it lands does not depend on the machine's
    load: the step finishes, and the checkpoint holds 7 iterations, between checkpoints every 100."""
    root = small_data_root
    run = config(root, iterations=300, validate_every=150, checkpoint_every=100)
    script = tmp_path / "signalled.py"
    script.write_text(SIGTERM_IN_STEP)
    process = subprocess.Popen([sys.executable, str(script), *command_line(run, tmp_path / "stopped")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code, output = finish(process)
    assert code == 130 and "interrupted" in output, output[-2000:]
    stopped = torch.load(tmp_path / "stopped" / "checkpoint.pt")["iteration"]
    assert stopped == 7, stopped
    torch.set_num_threads(1)
    train(run, tmp_path / "stopped", resume=True, progress=False)
    train(run, tmp_path / "whole", progress=False)
    assert_same_run(tmp_path / "whole", tmp_path / "stopped", 1e-12)


FAILING = """
import os, sys
from metagrad.bench.training import steps
if os.environ["RANK"] == "1":  # rank 1 fails in its third iteration
    original, calls = steps.PerTaskStep.__call__, [0]
    def failing(self, batch):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("injected failure on rank 1")
        return original(self, batch)
    steps.PerTaskStep.__call__ = failing
from metagrad.bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_one_failing_process_stops_the_run_without_hanging(tmp_path, small_data_root):
    root = small_data_root
    run = config(root, iterations=50, validate_every=25)
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    # rank 0 must learn of it from its collective (or be stopped by torchrun), not wait out the collectives'
    # timeout: set past the launch's own limit, waiting it out would fail the test as a hang
    code, output = finish(torchrun(["--standalone"], [str(script), *command_line(run, tmp_path / "run")],
                                   environment={"METAGRAD_DISTRIBUTED_TIMEOUT_S": str(10 * HANG_S)}))
    assert code != 0 and "injected failure on rank 1" in output
    assert "a collective failed, so another process of this run has stopped" in output or "SIGTERM" in output
    state = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert state["iteration"] == 2 and bool(torch.isfinite(state["theta"]).all())


@pytest.mark.slow
def test_two_nodes_by_rendezvous_give_the_one_process_run(tmp_path, small_data_root):
    """Two ``torchrun --nnodes 2`` launches meeting at a c10d rendezvous on localhost: two "nodes"."""
    root = small_data_root
    run = config(root)
    torch.set_num_threads(1)
    train(run, tmp_path / "one", progress=False)
    rendezvous = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}",
                  "--rdzv-id", "metagrad-test"]
    program = ["-m", "metagrad", *command_line(run, tmp_path / "two")]
    nodes = [torchrun(rendezvous, program, nproc=1) for _ in range(2)]
    for node in nodes:
        code, output = finish(node)
        assert code == 0, output[-3000:]
    assert_same_run(tmp_path / "one", tmp_path / "two", 1e-12)


@pytest.mark.slow
def test_a_meta_batch_smaller_than_the_world_is_one_clear_error(tmp_path, small_data_root):
    root = small_data_root
    run = config(root, meta_batch=1)
    code, output = finish(torchrun(["--standalone"], ["-m", "metagrad", *command_line(run, tmp_path / "run")]))
    assert code != 0
    assert output.count("the meta-batch (1 tasks) is smaller than the number of processes (2)") == 1
    assert not (tmp_path / "run").exists()


def test_shares_cover_the_meta_batch_once():
    for world in (1, 2, 3, 4):
        for count in range(world, 12):
            shares = [ProcessGroup(rank=r, world_size=world).share(count) for r in range(world)]
            assert [i for share in shares for i in share] == list(range(count))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.slow
def test_one_process_records_no_distribution(tmp_path, small_data_root):
    root = small_data_root
    run = config(root, iterations=2)
    assert main(command_line(run, tmp_path / "run")) == 0
    saved = pd.read_json(tmp_path / "run" / "config.json", typ="series")
    assert saved["world_size"] == 1 and saved["launches"] == [{"iteration": 0, "engine": "per-task", "world_size": 1,
                                                                "backend": "none"}]
