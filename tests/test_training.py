"""Meta-training on real data: brief runs of each algorithm, exact resume, evaluation, bad input."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

import algorithms.imaml
from bench.cli import main
from bench.presets import presets
from bench.train import TrainConfig, evaluate_run, train

from .data_paths import require_data

# Small enough for CI (a 16-filter ConvNet, a few dozen outer steps); the thresholds stand well clear
# of chance (20% for 5-way) and below what these runs measured (README, "Few-shot tests").
BRIEF = {
    "maml": {"inner_steps": 1, "inner_lr": 0.4},
    "fomaml": {"inner_steps": 1, "inner_lr": 0.4},
    "reptile": {"inner_steps": 5, "inner_lr": 0.1},
    "imaml-gd": {"lam": 2.0, "inner_steps": 8, "inner_lr": 0.1, "cg_steps": 5},
    "imaml-hf": {"lam": 2.0, "inner_solver": "newton-cg", "inner_steps": 2, "newton_cg_steps": 5, "cg_steps": 5},
}
# Mini-ImageNet's 84x84 colour images need smaller inner steps than Omniglot's
MINI_BRIEF = {"maml": {"inner_steps": 2, "inner_lr": 0.05}, "imaml-gd": BRIEF["imaml-gd"]}
OMNIGLOT_ITERATIONS, OMNIGLOT_THRESHOLD = 150, 0.40
MINI_ITERATIONS, MINI_THRESHOLD = 60, 0.24


def brief_config(dataset: str, variant: str, iterations: int, root) -> TrainConfig:
    hyperparameters = (MINI_BRIEF if dataset == "mini-imagenet" else BRIEF)[variant]
    return TrainConfig(dataset=dataset, ways=5, shots=1, queries=5, algorithm=variant.split("-")[0],
                       hyperparameters=hyperparameters, filters=16, meta_batch=4, iterations=iterations,
                       validate_every=iterations, validation_tasks=20, checkpoint_every=iterations,
                       meta_lr=0.005, data_root=str(root))


@pytest.mark.parametrize("variant", sorted(BRIEF))
def test_brief_omniglot_training_beats_chance_on_test_characters(tmp_path, variant):
    root = require_data("omniglot-py")
    train(brief_config("omniglot", variant, OMNIGLOT_ITERATIONS, root), tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run", split="test", tasks=100, progress=False)
    assert result["accuracy"] > OMNIGLOT_THRESHOLD, result
    assert result["split"] == "test" and result["tasks"] == 100 and 0 < result["ci95"] < 0.1
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["accuracy"] == result["accuracy"]


@pytest.mark.parametrize("variant", ["maml", "imaml-gd"])
def test_brief_mini_imagenet_training_beats_chance(tmp_path, variant):
    root = require_data("mini-imagenet")
    train(brief_config("mini-imagenet", variant, MINI_ITERATIONS, root), tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run", split="test", tasks=300, progress=False)
    assert result["accuracy"] > MINI_THRESHOLD, result


def test_resume_continues_exactly(tmp_path):
    root = require_data("omniglot-py")
    config = replace(brief_config("omniglot", "imaml-gd", 4, root), validate_every=2, checkpoint_every=1,
                     validation_tasks=5)
    train(config, tmp_path / "straight", progress=False)
    train(replace(config, iterations=2), tmp_path / "split", progress=False)
    train(replace(config, iterations=4), tmp_path / "split", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt")
    b = torch.load(tmp_path / "split" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 4
    assert torch.equal(a["theta"], b["theta"])
    columns = ["iteration", "tasks", "train_query_loss", "val_accuracy", "grad_evals", "hvp_evals"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "metrics.csv")[columns],
                                  pd.read_csv(tmp_path / "split" / "metrics.csv")[columns])


def test_interrupted_run_keeps_its_checkpoint_and_resumes(tmp_path, monkeypatch):
    root = require_data("omniglot-py")
    config = replace(brief_config("omniglot", "imaml-gd", 3, root), validate_every=3, checkpoint_every=10,
                     validation_tasks=5)
    train(config, tmp_path / "straight", progress=False)
    calls = {"n": 0}
    original = algorithms.imaml.IMAML.meta_gradient

    def interrupt_in_third_iteration(self, *args):
        calls["n"] += 1
        if calls["n"] == 2 * config.meta_batch + 1:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(algorithms.imaml.IMAML, "meta_gradient", interrupt_in_third_iteration)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt")["iteration"] == 2
    monkeypatch.setattr(algorithms.imaml.IMAML, "meta_gradient", original)
    train(config, tmp_path / "cut", resume=True, progress=False)
    assert torch.equal(torch.load(tmp_path / "straight" / "checkpoint.pt")["theta"],
                       torch.load(tmp_path / "cut" / "checkpoint.pt")["theta"])


def test_presets_cover_tables_2_and_3():
    table = presets()
    for setting in ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s", "mini-imagenet-5w1s"):
        for variant in ("maml", "fomaml", "reptile", "imaml-gd", "imaml-hf"):
            TrainConfig(**table[f"{setting}-{variant}"])  # each one valid
    hf = table["omniglot-5w1s-imaml-hf"]["hyperparameters"]
    assert (hf["inner_solver"], hf["inner_steps"], hf["newton_cg_steps"], hf["cg_steps"], hf["lam"]) == \
        ("newton-cg", 3, 5, 5, 2.0)
    gd = table["mini-imagenet-5w1s-imaml-gd"]["hyperparameters"]
    assert (gd["inner_steps"], gd["lam"], gd["cg_steps"]) == (10, 0.5, 5)


@pytest.mark.parametrize("argv,fragment", [
    (["--preset", "omniglot-5w1s-protonet"], "unknown preset"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--ways", "5000"], "5000-way"),
    (["--dataset", "mini-imagenet", "--algorithm", "maml", "--shots", "50", "--queries", "15"], "exceed"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--set", "lam=0"], "lam"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--data-root", "/nonexistent"], "/nonexistent"),
    (["--algorithm", "imaml"], "--dataset"),
])
def test_bad_training_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, fragment):
    require_data("omniglot-py")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()


def test_eval_of_a_folder_that_is_no_run_is_exit_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--no-progress"]) == 2
    assert "not a training run" in capsys.readouterr().err
