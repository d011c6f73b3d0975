"""Learned meta-parameters through the trainer, as users run it (float64, the tiny Omniglot run of
tests/test_distributed.py): the run folder names the learned values, ``kill -9`` after a checkpoint resumes to the
uninterrupted run bit for bit (the step sizes and lambda and Adam's state for them included), two processes under
torchrun give the one-process run in every group, and evaluation adapts with the learned values."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from metagrad.algorithms import make_algorithm
from metagrad.algorithms.meta_parameters import groups_of, learned_values
from metagrad.bench.training.config import EvalConfig
from metagrad.bench.training.evaluation import evaluate_run, load_trained
from metagrad.bench.training.trainer import train

from .test_distributed import assert_same_run, command_line, config, finish, standalone

RUNS = {
    "meta-sgd": {"inner_steps": 1, "inner_lr": 0.4},
    "maml-lslr": {"inner_steps": 2, "inner_lr": 0.2},
    "imaml-lambda": {"lambda_shape": "layer", "lam": 2.0, "inner_steps": 4, "inner_lr": 0.1, "cg_steps": 3},
}

# Kills its own process with SIGKILL once the checkpoint of the second iteration is in place (every finished file
# is an os.replace of a temporary one), so that where the kill lands does not depend on the machine's load.
KILLED_AFTER_SECOND_CHECKPOINT = """
import os, signal, sys
real_replace, saved = os.replace, [0]
def replace(source, target, *args, **kwargs):
    real_replace(source, target, *args, **kwargs)
    if os.path.basename(str(target)) == "checkpoint.pt":
        saved[0] += 1
        if saved[0] == 3:  # the start's, then iterations 1 and 2
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from metagrad.bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_of(name: str, root):
    return config(root, algorithm=name, hyperparameters=RUNS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_kill_9_after_a_checkpoint_resumes_to_the_uninterrupted_run_in_every_group(tmp_path, name, small_data_root):
    root = small_data_root
    run = run_of(name, root)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_AFTER_SECOND_CHECKPOINT)
    process = subprocess.Popen([sys.executable, str(script), *command_line(run, tmp_path / "killed")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code, output = finish(process)
    assert code == -9, output[-2000:]
    assert torch.load(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 2
    torch.set_num_threads(1)
    train(run, tmp_path / "killed", resume=True, progress=False)
    train(run, tmp_path / "whole", progress=False)
    whole, resumed = (torch.load(tmp_path / folder / "checkpoint.pt") for folder in ("whole", "killed"))
    assert torch.equal(whole["theta"], resumed["theta"])
    algorithm = make_algorithm(name, **RUNS[name])
    trained = load_trained(tmp_path / "whole")
    (group,) = groups_of(algorithm, trained.model)
    assert whole["theta"].numel() == trained.model.num_parameters + group.size
    # the learned values moved from their start, and the run folder names them as the checkpoint holds them
    start = group.initial.reshape(-1)[0].item()
    saved = json.loads((tmp_path / "whole" / "meta_parameters.json").read_text())
    assert saved["iteration"] == run.iterations
    assert saved["groups"] == json.loads(json.dumps(learned_values(algorithm, trained.model, whole["theta"])))
    assert any(abs(row["mean"] - start) > 1e-6 for row in saved["groups"][group.name])
    recorded = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert recorded["meta_parameters"] == {group.name: group.size}
    assert (tmp_path / "killed" / "meta_parameters.json").read_bytes() == \
        (tmp_path / "whole" / "meta_parameters.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maml-lslr", "imaml-lambda"])
def test_two_processes_give_the_one_process_run_in_every_group(tmp_path, name, small_data_root):
    root = small_data_root
    run = run_of(name, root)
    torch.set_num_threads(1)
    train(run, tmp_path / "one", progress=False)
    standalone(command_line(run, tmp_path / "two"))
    assert_same_run(tmp_path / "one", tmp_path / "two", 1e-12)
    model = load_trained(tmp_path / "one").model
    a, b = (torch.load(tmp_path / folder / "checkpoint.pt")["theta"][model.num_parameters:] for folder in ("one", "two"))
    assert ((a - b).norm() / a.norm()).item() < 1e-12  # the algorithm's own group, on its own


@pytest.mark.slow
def test_evaluation_adapts_with_the_learned_values(tmp_path, small_data_root):
    """The trained run's accuracy, and the same network evaluated with the step sizes put back to their start: the
    two differ, so evaluation read the learned ones."""
    root = small_data_root
    run = replace(run_of("meta-sgd", root), iterations=6)
    train(run, tmp_path / "run", progress=False)
    learned = evaluate_run(tmp_path / "run", EvalConfig(split="val", tasks=9), progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt")
    model = load_trained(tmp_path / "run").model
    state["theta"][model.num_parameters:] = RUNS["meta-sgd"]["inner_lr"]
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    reset = evaluate_run(tmp_path / "run", EvalConfig(split="val", tasks=9), progress=False)
    key = "support_loss_after_adaptation"
    assert abs(learned[key] - reset[key]) > 1e-9 * abs(reset[key]), (learned, reset)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_batched_engine_trains_the_per_task_run_in_every_group(tmp_path, name, small_data_root):
    """Each of the three through the trainer with its own batched engine and with the per-task one: the same task
    stream and steps, so the same parameters (the algorithm's own group on its own too) up to summation order."""
    run = run_of(name, small_data_root)
    for engine in ("per-task", "batched"):
        train(replace(run, engine=engine), tmp_path / engine, progress=False)
    assert_same_run(tmp_path / "per-task", tmp_path / "batched", 1e-10)
    model = load_trained(tmp_path / "per-task").model
    a, b = (torch.load(tmp_path / engine / "checkpoint.pt")["theta"][model.num_parameters:]
            for engine in ("per-task", "batched"))
    assert ((a - b).norm() / a.norm()).item() < 1e-10
    assert json.loads((tmp_path / "batched" / "config.json").read_text())["launches"][0]["engine"] == "batched"
