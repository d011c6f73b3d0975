"""Meta-training: brief runs of each algorithm on the real data (the accuracy they reach); exact resume, evaluation
and bad input on the tests' small data."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

import metagrad.algorithms.imaml
from metagrad.bench.cli import main
from metagrad.bench.training.config import EvalConfig, TrainConfig
from metagrad.bench.training.evaluation import evaluate_run
from metagrad.bench.training.presets import presets
from metagrad.bench.training.trainer import train
from metagrad.errors import ConfigError

from .data_paths import require_data

# Small enough for CI (a 16-filter ConvNet, a few dozen outer steps); the thresholds stand well clear
# of chance (20% for 5-way) and below what these runs measured (reports/notes/few-shot.md, the brief runs in the tests).
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


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("variant", sorted(BRIEF))
def test_brief_omniglot_training_beats_chance_on_test_characters(tmp_path, variant):
    root = require_data("omniglot-py")
    train(brief_config("omniglot", variant, OMNIGLOT_ITERATIONS, root), tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run", EvalConfig(split="test", tasks=100), progress=False)
    assert result["accuracy"] > OMNIGLOT_THRESHOLD, result
    assert result["split"] == "test" and result["tasks"] == 100 and 0 < result["ci95"] < 0.1
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["accuracy"] == result["accuracy"]


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("variant", ["maml", "imaml-gd"])
def test_brief_mini_imagenet_training_beats_chance(tmp_path, variant):
    """On the per-task engine, the faster at this size on an Intel Xeon CI machine (both cases 128 s against
    the batched engine's 230, --durations); the batched engine's max-pooled RGB network is held to it in
    tests/test_batched_engine.py."""
    root = require_data("mini-imagenet")
    config = replace(brief_config("mini-imagenet", variant, MINI_ITERATIONS, root), engine="per-task")
    train(config, tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run", EvalConfig(split="test", tasks=300, engine="per-task"), progress=False)
    assert result["accuracy"] > MINI_THRESHOLD, result


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, small_data_root):
    root = small_data_root
    config = replace(brief_config("omniglot", "imaml-gd", 4, root), validate_every=2, checkpoint_every=1,
                     validation_tasks=5)
    train(config, tmp_path / "straight", progress=False)
    train(replace(config, iterations=2), tmp_path / "split", progress=False)
    train(replace(config, iterations=4, max_minutes=30.0), tmp_path / "split", resume=True, progress=False)
    saved = json.loads((tmp_path / "split" / "config.json").read_text())  # the limits now in force, each launch
    assert (saved["config"]["iterations"], saved["config"]["max_minutes"]) == (4, 30.0)
    assert [launch["iteration"] for launch in saved["launches"]] == [0, 2]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt")
    b = torch.load(tmp_path / "split" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 4
    assert torch.equal(a["theta"], b["theta"])
    columns = ["iteration", "tasks", "train_query_loss", "val_accuracy", "grad_evals", "hvp_evals"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "metrics.csv")[columns],
                                  pd.read_csv(tmp_path / "split" / "metrics.csv")[columns])


@pytest.mark.slow
@pytest.mark.parametrize("engine,sampler", [("per-task", "host"), ("batched", "host"), ("batched", "device")])
def test_interrupted_run_keeps_its_checkpoint_and_resumes(tmp_path, monkeypatch, engine, sampler, small_data_root):
    """Ctrl-C in the third iteration: the checkpoint holds two, and resuming gives the uninterrupted run
    (with the device sampler the interrupted step had already advanced its counter: resuming seeks)."""
    root = small_data_root
    config = replace(brief_config("omniglot", "imaml-gd", 3, root), validate_every=3, checkpoint_every=10,
                     validation_tasks=5, engine=engine, sampler=sampler)
    train(config, tmp_path / "straight", progress=False)
    method = "meta_gradient" if engine == "per-task" else "batched_meta_gradient"
    third = 2 * config.meta_batch + 1 if engine == "per-task" else 3  # calls before the interruption
    calls = {"n": 0}
    original = getattr(metagrad.algorithms.imaml.IMAML, method)

    def interrupt_in_third_iteration(self, *args):
        calls["n"] += 1
        if calls["n"] == third:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(metagrad.algorithms.imaml.IMAML, method, interrupt_in_third_iteration)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt")["iteration"] == 2
    monkeypatch.setattr(metagrad.algorithms.imaml.IMAML, method, original)
    train(config, tmp_path / "cut", resume=True, progress=False)
    assert torch.equal(torch.load(tmp_path / "straight" / "checkpoint.pt")["theta"],
                       torch.load(tmp_path / "cut" / "checkpoint.pt")["theta"])
    columns = ["iteration", "train_query_loss", "val_accuracy", "grad_evals", "hvp_evals", "cg_iterations_mean"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "metrics.csv")[columns],
                                  pd.read_csv(tmp_path / "cut" / "metrics.csv")[columns])


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
    minres = table["omniglot-5w1s-imaml-gd-minres"]
    TrainConfig(**minres)
    assert minres["hyperparameters"] == {**table["omniglot-5w1s-imaml-gd"]["hyperparameters"], "meta_solver": "minres"}


@pytest.mark.slow
@pytest.mark.parametrize("argv,fragment", [
    (["--preset", "omniglot-5w1s-protonet"], "unknown preset"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--ways", "5000"], "5000-way"),
    (["--dataset", "mini-imagenet", "--algorithm", "maml", "--shots", "50", "--queries", "15"], "exceed"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--set", "lam=0"], "lam"),
    (["--dataset", "omniglot", "--algorithm", "imaml", "--data-root", "/nonexistent"], "/nonexistent"),
    (["--algorithm", "imaml"], "--dataset"),
])
def test_bad_training_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, fragment, small_data_root):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "--data-root", str(small_data_root), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()


def test_eval_of_a_folder_that_is_no_run_is_exit_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--no-progress"]) == 2
    assert "not a training run" in capsys.readouterr().err


def float64_config(root, variant: str = "imaml-gd", iterations: int = 4, **changes) -> TrainConfig:
    config = replace(brief_config("omniglot", variant, iterations, root), filters=4, validate_every=2,
                     checkpoint_every=1, validation_tasks=6, dtype="float64")
    return replace(config, **changes)


@pytest.mark.slow
@pytest.mark.parametrize("variant,sampler", [("maml", "host"), ("imaml-gd", "host"), ("imaml-hf", "host"),
                                             ("imaml-gd", "device")])
def test_batched_training_is_the_per_task_run(tmp_path, variant, sampler, small_data_root):
    """Same task stream, same steps: the two engines' runs agree up to summation order (float64)."""
    root = small_data_root
    for engine in ("per-task", "batched"):
        train(float64_config(root, variant, engine=engine, sampler=sampler), tmp_path / engine, progress=False)
    a = torch.load(tmp_path / "per-task" / "checkpoint.pt")["theta"]
    b = torch.load(tmp_path / "batched" / "checkpoint.pt")["theta"]
    assert ((a - b).norm() / a.norm()).item() < 1e-10  # every parameter
    per_task, batched = (pd.read_csv(tmp_path / e / "metrics.csv") for e in ("per-task", "batched"))
    exact = ["iteration", "tasks", "val_accuracy", "grad_evals", "hvp_evals", "cg_negative_curvature_fraction",
             "cg_iterations_mean", "inner_negative_curvature_fraction"]
    pd.testing.assert_frame_equal(per_task[exact], batched[exact])
    close = ["train_query_loss", "train_query_accuracy", "cg_residual_mean"]
    pd.testing.assert_frame_equal(per_task[close], batched[close], rtol=1e-9)
    assert list(batched["engine"]) == ["batched"] * len(batched)
    evaluations = [evaluate_run(tmp_path / "batched", EvalConfig(split="val", tasks=10, engine=e), progress=False)
                   for e in ("per-task", "batched")]
    assert evaluations[0]["accuracy"] == evaluations[1]["accuracy"]
    assert evaluations[0]["support_loss_after_adaptation"] == pytest.approx(
        evaluations[1]["support_loss_after_adaptation"], rel=1e-10)


@pytest.mark.slow
def test_metrics_record_how_often_the_meta_gradient_system_was_indefinite(tmp_path, small_data_root):
    """A small lambda makes I + H/lambda indefinite: the fraction is recorded, and it is not zero."""
    root = small_data_root
    hyperparameters = {"lam": 0.05, "inner_steps": 4, "inner_lr": 0.1, "cg_steps": 5}
    train(float64_config(root, iterations=2, hyperparameters=hyperparameters, engine="batched"), tmp_path / "run",
          progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert (metrics["cg_negative_curvature_fraction"] > 0).all()
    assert ((metrics["cg_iterations_mean"] > 0) & (metrics["cg_iterations_mean"] < 5)).all()
    assert (metrics["cg_residual_mean"] > 0).all()


@pytest.mark.slow
def test_a_diverging_run_stops_with_an_error_and_keeps_a_finite_checkpoint(tmp_path, capsys, small_data_root):
    root = small_data_root
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress", "--dataset", "omniglot", "--algorithm", "maml",
            "--ways", "5", "--shots", "1", "--queries", "2", "--filters", "4", "--meta-batch", "2",
            "--iterations", "6", "--validate-every", "2", "--checkpoint-every", "1", "--validation-tasks", "2",
            "--set", "inner_steps=3", "--set", "inner_lr=1e30", "--data-root", str(root)]
    assert main(argv) == 3  # metagrad.errors.DivergenceError
    err = capsys.readouterr().err.strip()
    assert "diverged" in err and err.count("\n") == 0, err
    state = torch.load(out / "checkpoint.pt")
    assert torch.isfinite(state["theta"]).all()


@pytest.mark.slow
def test_a_finite_run_stuck_far_from_learning_stops_with_an_error(tmp_path, capsys, small_data_root):
    """First-order MAML with inner_lr 1e4: finite numbers, but a query loss of ~7e3 (1e5 and more overflow)."""
    root = small_data_root
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress", "--dataset", "omniglot", "--algorithm", "fomaml",
            "--ways", "5", "--shots", "1", "--queries", "5", "--filters", "16", "--meta-batch", "4",
            "--iterations", "30", "--validate-every", "10", "--checkpoint-every", "10", "--validation-tasks", "20",
            "--set", "inner_steps=5", "--set", "inner_lr=1e4", "--data-root", str(root)]
    assert main(argv) == 3  # stuck: a DivergenceError too
    err = capsys.readouterr().err.strip()
    assert "over 100 times a uniform guess's ln(5)" in err and "at iteration 10" in err and err.count("\n") == 0, err
    state = torch.load(out / "checkpoint.pt")
    assert state["iteration"] == 0 and torch.isfinite(state["theta"]).all()


@pytest.mark.parametrize("loss, accuracy, ci, tasks, expected", [
    (1.2, 0.6, 0.05, 20, None),  # learning
    (1.7, 0.2, 0.01, 20, None),  # at chance on average, but looking at the images
    (float("nan"), 0.6, 0.05, 20, "not finite"),
    (170.0, 0.6, 0.05, 20, "over 100 times"),
    (1.6, 0.2, 0.0, 20, "every one of the 20 validation tasks scored exactly chance"),
    (1.6, 0.2, 0.0, 10, "every one of the 10 validation tasks scored exactly chance"),
    (1.6, 0.2, 0.0, 1, None),  # one task is no evidence
    (1.6, 0.2, 0.0, 9, None),  # nor nine: a network that looks at its images does that 2e-5 of the time
])
def test_stuck_names_what_is_wrong(loss, accuracy, ci, tasks, expected):
    from metagrad.bench.training.trainer import stuck

    reason = stuck(loss, accuracy, ci, tasks, 5)
    assert reason is None if expected is None else expected in reason


@pytest.mark.parametrize("damage", ["truncated", "garbage", "config"])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_damaged_run_folder_is_a_one_line_error_and_is_left_alone(tmp_path, capsys, damage, command, small_data_root):
    root = small_data_root
    out = tmp_path / "run"
    train(float64_config(root, iterations=1, validate_every=1, validation_tasks=2), out, progress=False)
    target = out / ("config.json" if damage == "config" else "checkpoint.pt")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] if damage != "garbage" else b"not a checkpoint at all")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = (["train", "--out", str(out), "--resume", "--iterations", "2"] if command == "resume"
            else ["eval", str(out), "--tasks", "2"])
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert target.name in err and err.count("\n") == 0, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("argv,fragment", [
    (["--set", "lam=abc"], "lam must be a number"),
    (["--set", "inner_steps=2.5"], "inner_steps must be an integer"),
    (["--threads", "-1"], "--threads"),
    (["--filters", "0"], "filters"),
])
def test_more_bad_training_input_is_one_line_exit_2(tmp_path, capsys, argv, fragment):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "--dataset", "omniglot", "--algorithm", "imaml",
                 *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()


def test_out_naming_a_file_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("keep me")
    assert main(["train", "--out", str(out), "--no-progress", "--dataset", "omniglot", "--algorithm", "imaml"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "keep me"


@pytest.mark.slow
def test_resume_restores_the_threads_the_run_was_started_with(tmp_path, small_data_root):
    """Float sums depend on the thread count, so an exact resume needs the run's own (issue: 1.4825801879
    against 1.4825801075 when they differed)."""
    root = small_data_root
    out = tmp_path / "run"
    before = torch.get_num_threads()
    common = ["--no-progress", "--dataset", "omniglot", "--algorithm", "fomaml", "--ways", "5", "--shots", "1",
              "--queries", "2", "--filters", "4", "--meta-batch", "2", "--validate-every", "1", "--validation-tasks", "2",
              "--data-root", str(root)]
    try:
        assert main(["train", "--out", str(out), "--iterations", "1", "--threads", "1", *common]) == 0
        torch.set_num_threads(2)
        assert main(["train", "--out", str(out), "--resume", "--iterations", "2", "--no-progress"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_nichol_outer_loop_steps_toward_the_mean_adapted_parameters_with_an_annealed_step(tmp_path, small_data_root):
    """Outer SGD on theta - phi with the step annealed linearly from 1 to 0 (Nichol et al.), meta-training
    tasks with train_shots: replayed by hand from the same task stream, the run's parameters agree."""
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.training.evaluation import load_trained

    root = small_data_root
    config = replace(float64_config(root, "reptile", iterations=4), algorithm="reptile", outer_optimizer="sgd",
                     meta_lr=1.0, meta_lr_final=0.0, train_shots=4, train_queries=2,
                     hyperparameters={"inner_optimizer": "adam", "inner_steps": 3, "inner_batch": 6, "inner_lr": 0.01,
                                      "eval_inner_steps": 5, "eval_inner_batch": 5})
    train(config, tmp_path / "run", progress=False)
    start = load_trained(tmp_path / "run", at_init=True)
    theta, algorithm, model = start.theta.clone(), start.algorithm, start.model
    source = task_source("omniglot", "train", config.train_spec, str(root), config.split_seed, config.omniglot_split)
    sampler = torch.Generator().manual_seed(config.seed)
    for iteration in range(config.iterations):
        batch = source.tasks.sample_batch(sampler, config.meta_batch, torch.float64)
        assert batch.support.y.shape[1] == 5 * 4  # train_shots, not shots
        phis = torch.stack([algorithm.meta_gradient(model, theta, task).adapted for task in batch.tasks()])
        step = 1.0 - iteration / config.iterations
        theta = theta + step * (phis.mean(0) - theta)
        if iteration == 0:  # a full step lands on the mean adapted parameters
            assert torch.allclose(theta, phis.mean(0), rtol=0, atol=1e-15)
    trained = torch.load(tmp_path / "run" / "checkpoint.pt")["theta"]
    assert ((trained - theta).norm() / theta.norm()).item() < 1e-12
    assert config.meta_lr_at(2) == 0.5 and replace(config, meta_lr_final=None).meta_lr_at(3) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["per-task", "batched"])
def test_the_device_sampler_run_is_its_draws_replayed_by_hand(tmp_path, engine, small_data_root):
    """A run with the device sampler meta-trains on ``DeviceTasks.draw(i)`` at iteration i (the seed's
    stream, on the run's device): replayed by hand with outer SGD, the parameters agree."""
    from metagrad.bench.data.device_tasks import DeviceTasks
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.training.evaluation import load_trained

    root = small_data_root
    config = replace(float64_config(root, "fomaml", iterations=3), algorithm="fomaml", outer_optimizer="sgd",
                     meta_lr=0.5, sampler="device", engine=engine)
    train(config, tmp_path / "run", progress=False)
    start = load_trained(tmp_path / "run", at_init=True)
    theta, algorithm, model = start.theta.clone(), start.algorithm, start.model
    source = task_source("omniglot", "train", config.train_spec, str(root), config.split_seed, config.omniglot_split)
    draws = DeviceTasks(source.tasks, "cpu", torch.float64, config.seed, config.meta_batch)
    host = source.tasks.sample_batch(torch.Generator().manual_seed(config.seed), config.meta_batch, torch.float64)
    assert not torch.equal(draws.draw(torch.tensor(0)).support.x, host.support.x)  # not the host stream
    for iteration in range(config.iterations):
        batch = draws.draw(torch.tensor(iteration))
        gradient = torch.stack([algorithm.meta_gradient(model, theta, task).gradient for task in batch.tasks()])
        theta = theta - config.meta_lr * gradient.mean(0)
    trained = torch.load(tmp_path / "run" / "checkpoint.pt")["theta"]
    assert ((trained - theta).norm() / theta.norm()).item() < 1e-12
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["sampler"] == "device"


def test_a_resumed_run_keeps_its_sampler(tmp_path, capsys, small_data_root):
    root = small_data_root
    train(float64_config(root, "fomaml", iterations=1), tmp_path / "run", progress=False)
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--sampler", "device", "--no-progress"]) == 2
    assert "would not honour --sampler" in capsys.readouterr().err


@pytest.mark.parametrize("argv,refused", [
    (["--algorithm", "maml"], "--algorithm"),  # the algorithm
    (["--set", "inner_lr=0.05"], "--set"),  # a hyperparameter of it
    (["--meta-lr", "0.01", "--meta-batch", "3"], "--meta-batch, --meta-lr"),  # the outer loop's
    (["--ways", "3"], "--ways"),  # the tasks' shape
    (["--dataset", "mini-imagenet"], "--dataset"),  # the data
    (["--data-root", "/elsewhere"], "--data-root"),
    (["--seed", "3"], "--seed"),  # the seed
    (["--sampler", "device"], "--sampler"),  # the task stream
    (["--preset", "omniglot-5w1s-maml"], "--preset"),
    (["--dtype", "float32"], "--dtype"),
])
def test_a_resume_refuses_every_option_it_would_not_honour(tmp_path, capsys, argv, refused, small_data_root):
    """--resume continues a run with its own settings: an option that would change what it computes is a one-line
    error naming it and saying what a resume may change, and the run's files stay as they were (an option that
    repeats the run's own setting is honoured: test below)."""
    root = small_data_root
    run = tmp_path / "run"
    train(float64_config(root, "fomaml", iterations=1), run, progress=False)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--iterations", "2", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"would not honour {refused};" in err
    assert "may change only --iterations, --max-minutes, --engine" in err
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


@pytest.mark.slow
def test_a_resume_may_change_how_long_and_how_it_is_computed(tmp_path, small_data_root):
    root = small_data_root
    run = tmp_path / "run"
    train(float64_config(root, "fomaml", iterations=1), run, progress=False)
    assert main(["train", "--out", str(run), "--resume", "--iterations", "2", "--max-minutes", "5", "--engine",
                 "batched", "--threads", "1", "--device", "cpu", "--sampler", "host", "--dtype", "float64",
                 "--set", "inner_steps=1", "--no-progress"]) == 0  # the last four: the run's own settings
    saved = json.loads((run / "config.json").read_text())
    assert (saved["config"]["iterations"], saved["config"]["max_minutes"]) == (2, 5.0)
    assert [launch["engine"] for launch in saved["launches"]] == ["per-task", "batched"]
    assert torch.load(run / "checkpoint.pt")["iteration"] == 2


@pytest.mark.slow
def test_a_channels_last_run_is_the_batched_run(tmp_path, capsys, small_data_root):
    """--channels-last (the stacked network's memory order) trains and evaluates the same run, is kept in the
    run's config, is given again on --resume like the capture, and has no meaning for the per-task engine."""
    root = small_data_root
    config = float64_config(root, "imaml-gd", iterations=2, engine="batched")
    train(config, tmp_path / "plain", progress=False)
    train(replace(config, channels_last=True), tmp_path / "nhwc", progress=False)
    a, b = (torch.load(tmp_path / run / "checkpoint.pt")["theta"] for run in ("plain", "nhwc"))
    assert ((a - b).norm() / a.norm()).item() < 1e-10
    assert json.loads((tmp_path / "nhwc" / "config.json").read_text())["config"]["channels_last"] is True
    evaluation = EvalConfig(split="val", tasks=6, engine="batched")
    plain, nhwc = (evaluate_run(tmp_path / run, evaluation, progress=False) for run in ("plain", "nhwc"))
    assert nhwc["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-12)
    assert main(["train", "--out", str(tmp_path / "nhwc"), "--resume", "--iterations", "3", "--channels-last",
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "nhwc" / "config.json").read_text())["config"]["channels_last"] is True
    with pytest.raises(ConfigError, match="per-task engine has none"):
        replace(config, engine="per-task", channels_last=True)
    assert main(["train", "--preset", "omniglot-5w1s-maml", "--engine", "per-task", "--channels-last",
                 "--out", str(tmp_path / "refused"), "--data-root", str(root), "--no-progress"]) == 2
    assert "per-task engine has none" in capsys.readouterr().err and not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_a_compiled_run_is_the_eager_run(tmp_path, monkeypatch, small_data_root):
    """--compile (dynamo's tracing here; inductor's numerics: tests/test_batched_engine.py) trains the same
    run as the eager batched engine (outer SGD: the compiled Adam rounds its bias correction in float32)."""
    import metagrad.bench.training.steps

    monkeypatch.setattr(metagrad.bench.training.steps, "COMPILE_OPTIONS", {"backend": "eager", "fullgraph": True})
    torch._dynamo.reset()
    root = small_data_root
    config = replace(float64_config(root, "fomaml", iterations=3), algorithm="fomaml", outer_optimizer="sgd",
                     meta_lr=0.5, sampler="device", engine="batched")
    train(config, tmp_path / "eager", progress=False)
    train(replace(config, compile=True), tmp_path / "compiled", progress=False)
    a, b = (torch.load(tmp_path / run / "checkpoint.pt")["theta"] for run in ("eager", "compiled"))
    assert ((a - b).norm() / a.norm()).item() < 1e-12
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["config"]["compile"] is True
    with pytest.raises(ConfigError, match="instead of --cuda-graph"):
        replace(config, compile=True, cuda_graph=True, device="cuda")


def test_the_progress_bar_counts_to_what_ends_the_run():
    """Under --max-minutes the bar counts seconds of training up to the limit, and ends early when the iterations
    run out first; otherwise it counts iterations: its total, and so its ETA, are what ends the run."""
    from metagrad.bench.training.trainer import Progress

    timed = Progress(TrainConfig(iterations=60_000, max_minutes=2), 0, 0.0, enabled=True)
    assert (timed.bar.total, timed.bar.unit) == (120, "s")
    timed.advance(10, 30.4)
    assert timed.bar.n == 30
    timed.advance(60_000, 100.2)  # the iterations ran out at 100 s
    assert timed.bar.total == timed.bar.n == 100
    resumed = Progress(TrainConfig(iterations=50), 10, 5.0, enabled=True)
    assert (resumed.bar.total, resumed.bar.n, resumed.bar.unit) == (50, 10, "it")


def test_a_run_prints_each_validation_once(tmp_path, capsys, small_data_root):
    root = small_data_root
    argv = ["train", "--out", str(tmp_path / "run"), "--dataset", "omniglot", "--algorithm", "fomaml", "--ways", "5",
            "--shots", "1", "--queries", "2", "--filters", "4", "--meta-batch", "2", "--iterations", "2",
            "--validate-every", "1", "--validation-tasks", "2", "--data-root", str(root), "--no-progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("data: omniglot from ") and ": train 4,400 classes, val 400 classes, 20 images" in lines[0]
    assert [line.split(":")[0] for line in lines[1:-1]] == ["iteration 1", "iteration 2"]
    assert "validation accuracy" not in lines[-1] and lines[-1].startswith("2 iterations,")


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["imaml", "reptile"])
def test_a_divergent_run_in_its_own_process_says_so_on_the_first_line_of_stderr(tmp_path, algorithm, small_data_root):
    """As a user runs it: a new process, whose forward-mode products load torch's jit decompositions (and, with
    --compile, dynamo's notes), writes nothing to stderr but the one-line error."""
    import subprocess
    import sys

    from tests.limits import HANG_S

    root = small_data_root
    argv = [sys.executable, "-m", "metagrad", "train", "--out", str(tmp_path / "run"), "--no-progress", "--dataset",
            "omniglot", "--algorithm", algorithm, "--ways", "5", "--shots", "1", "--queries", "2", "--filters", "4",
            "--meta-batch", "2", "--iterations", "4", "--validate-every", "2", "--validation-tasks", "2",
            "--set", "inner_lr=1e30", "--engine", "batched", "--data-root", str(root), "--threads", "1"]
    if algorithm == "reptile":  # Nichol et al.'s inner Adam, through torch.compile (dynamo's eager backend is
        argv += ["--set", "inner_optimizer=adam", "--set", "inner_batch=5", "--compile"]  # the default's front end)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("metagrad train: error: training diverged") and done.stderr.count("\n") == 1, \
        done.stderr
