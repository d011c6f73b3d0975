"""Lanczos, and `metagrad spectrum` against the explicit Hessian of a small network on Omniglot-layout data (float64)."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from metagrad.algorithms import FunctionalModel, cross_entropy_loss, lanczos_ritz_values, make_algorithm
from metagrad.algorithms.protocol import query_loss_and_gradient
from metagrad.bench.cli import main
from metagrad.bench.data.sources import task_source
from metagrad.bench.harnesses.spectrum import COLUMNS
from metagrad.bench.nets.convnet import network
from metagrad.bench.training.trainer import train

from .test_batched_engine import random_symmetric
from .test_training import float64_config


def test_lanczos_finds_every_eigenvalue_after_n_steps_and_the_extremes_first():
    eigenvalues = torch.linspace(-3.0, 10.0, 30, dtype=torch.float64)
    a = random_symmetric(30, eigenvalues, seed=4)
    start = torch.randn(30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(lanczos_ritz_values(lambda v: a @ v, start, 30), eigenvalues, atol=1e-10)
    early = lanczos_ritz_values(lambda v: a @ v, start, 15)
    assert early[0] >= eigenvalues[0] - 1e-12 and early[-1] <= eigenvalues[-1] + 1e-12  # interlacing
    assert abs(early[0] - eigenvalues[0]) < 0.05 and abs(early[-1] - eigenvalues[-1]) < 0.05
    for threshold in (-2.0, 0.0, 4.0):  # the count below a threshold never exceeds the true one
        assert (early < threshold).sum() <= (eigenvalues < threshold).sum()


def test_lanczos_stops_when_the_krylov_space_stops_growing():
    a = random_symmetric(12, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).repeat(4), seed=0)
    ritz = lanczos_ritz_values(lambda v: a @ v, torch.ones(12, dtype=torch.float64), 12)
    assert len(ritz) == 3 and torch.allclose(ritz, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))


@pytest.mark.slow
def test_spectrum_matches_the_explicit_hessian_and_flags_the_indefinite_system(tmp_path, capsys, small_data_root):
    root = small_data_root
    config = replace(float64_config(root, iterations=2, validate_every=2, validation_tasks=2), filters=2,
                     hyperparameters={"lam": 0.05, "inner_steps": 3, "inner_lr": 0.1, "cg_steps": 3})
    train(config, tmp_path / "run", progress=False)
    out = tmp_path / "spectrum.csv"
    assert main(["spectrum", str(tmp_path / "run"), "--tasks", "2", "--steps", "400", "--out", str(out),
                 "--no-progress"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == COLUMNS and len(frame) == 2
    assert "indefinite for" in capsys.readouterr().out
    # the first task, by hand: the explicit Hessian at the adapted parameters
    state = torch.load(tmp_path / "run" / "checkpoint.pt")
    model = FunctionalModel(network("omniglot", 5, 2).double(), cross_entropy_loss)
    task = next(task_source("omniglot", "train", config.spec, str(root)).tasks.fixed_pool(1, 0, torch.float64))
    phi = make_algorithm("imaml", **config.hyperparameters).adapt(model, state["theta"], task.support)
    eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda p: model.loss(p, task.support), phi))
    first = frame.iloc[0]
    assert first["lanczos_steps"] < 400  # stopped once the Krylov space was exhausted
    assert first["lambda_min"] == pytest.approx(eigenvalues[0].item(), abs=1e-8)
    assert first["lambda_max"] == pytest.approx(eigenvalues[-1].item(), rel=1e-8)
    assert bool(first["indefinite"]) == (eigenvalues[0].item() < -0.05)
    assert first["ritz_below_minus_lam"] <= int((eigenvalues < -0.05).sum())
    assert bool(frame["indefinite"].any())  # lambda = 0.05 on this network: the paper's system is indefinite
    # the run's own meta-gradient solve, against meta_gradient's record for the same task
    algorithm = make_algorithm("imaml", **config.hyperparameters)
    reference = algorithm.meta_gradient(model, state["theta"], task)
    _, v, _ = query_loss_and_gradient(model, phi, task.query)
    assert first["meta_solver"] == "cg"
    assert first["solver_residual"] == pytest.approx(reference.record.cg_residual, rel=1e-10)
    assert first["solver_iterations"] == reference.record.cg_iterations
    assert bool(first["solver_negative_curvature"]) == reference.record.negative_curvature
    assert first["meta_gradient_ratio"] == pytest.approx((reference.gradient.norm() / v.norm()).item(), rel=1e-10)
    # a Rayleigh quotient of A = I + H/lambda lies between A's extreme eigenvalues
    low, high = 1 + eigenvalues[0].item() / 0.05, 1 + eigenvalues[-1].item() / 0.05
    assert low - 1e-8 <= first["least_curvature"] <= high + 1e-8
    # the same systems solved by MINRES instead of the run's CG
    minres_csv = tmp_path / "minres.csv"
    assert main(["spectrum", str(tmp_path / "run"), "--tasks", "1", "--steps", "2", "--set", "meta_solver=minres",
                 "--out", str(minres_csv), "--no-progress"]) == 0
    by_minres = pd.read_csv(minres_csv).iloc[0]
    reference = replace(algorithm, meta_solver="minres").meta_gradient(model, state["theta"], task)
    assert by_minres["meta_solver"] == "minres"
    assert by_minres["solver_residual"] == pytest.approx(reference.record.cg_residual, rel=1e-10)
    assert by_minres["solver_residual"] <= first["solver_residual"] + 1e-12  # least residual over the same space
    assert by_minres["meta_gradient_ratio"] == pytest.approx((reference.gradient.norm() / v.norm()).item(), rel=1e-10)


@pytest.mark.slow
def test_the_next_meta_batch_is_the_one_the_run_trains_on_next(tmp_path, capsys, small_data_root):
    """The spectrum's solves of the next meta-batch give the residuals the run records for that iteration."""
    root = small_data_root
    config = float64_config(root, iterations=1, validate_every=1, validation_tasks=2, meta_batch=3)
    run = tmp_path / "run"
    train(config, run, progress=False)
    first = tmp_path / "first.csv"
    assert main(["spectrum", str(run), "--next-meta-batch", "--at-init", "--steps", "3", "--out", str(first),
                 "--no-progress"]) == 0
    assert "relative residual" in capsys.readouterr().out
    second = tmp_path / "second.csv"
    assert main(["spectrum", str(run), "--next-meta-batch", "--steps", "3", "--out", str(second), "--no-progress"]) == 0
    train(replace(config, iterations=2), run, resume=True, progress=False)
    rows = pd.read_csv(run / "metrics.csv")  # one row per iteration: its meta-batch's means
    for csv, iteration in ((first, 1), (second, 2)):
        frame = pd.read_csv(csv)
        row = rows.loc[rows["iteration"] == iteration].iloc[0]
        assert len(frame) == 3 and frame["iteration"].tolist() == [iteration - 1] * 3
        assert frame["solver_residual"].mean() == pytest.approx(row["cg_residual_mean"], rel=1e-9)
        assert frame["solver_iterations"].mean() == pytest.approx(row["cg_iterations_mean"], rel=1e-12)
        assert frame["solver_negative_curvature"].mean() == pytest.approx(row["cg_negative_curvature_fraction"])


@pytest.mark.slow
def test_the_next_meta_batch_needs_the_host_sampler_and_set_the_runs_algorithm(tmp_path, capsys, small_data_root):
    root = small_data_root
    train(float64_config(root, iterations=1, validate_every=1, validation_tasks=2, sampler="device"), tmp_path / "run",
          progress=False)
    assert main(["spectrum", str(tmp_path / "run"), "--next-meta-batch", "--no-progress"]) == 2
    assert "host sampler" in capsys.readouterr().err
    assert main(["spectrum", str(tmp_path / "run"), "--next-meta-batch", "--split", "val", "--no-progress"]) == 2
    maml = float64_config(root, "maml", iterations=1, validate_every=1, validation_tasks=2)
    train(maml, tmp_path / "maml", progress=False)
    capsys.readouterr()
    assert main(["spectrum", str(tmp_path / "maml"), "--set", "meta_solver=minres", "--no-progress"]) == 2
    assert "maml has no hyperparameter meta_solver" in capsys.readouterr().err
    assert main(["spectrum", str(tmp_path / "run"), "--set", "cg_steps=many", "--no-progress"]) == 2
    assert "cg_steps" in capsys.readouterr().err
    # no solve (g = v): nothing to report but the ratio; the file named by the change
    assert main(["spectrum", str(tmp_path / "run"), "--set", "cg_steps=0", "--tasks", "1", "--steps", "2",
                 "--no-progress"]) == 0
    unsolved = pd.read_csv(tmp_path / "run" / "spectrum-cg_steps-0.csv").iloc[0]
    assert unsolved["solver_iterations"] == 0 and unsolved["meta_gradient_ratio"] == 1.0
    assert pd.isna(unsolved["solver_residual"])


@pytest.mark.slow
def test_spectrum_at_initialization_uses_the_runs_initial_parameters(tmp_path, small_data_root):
    root = small_data_root
    config = replace(float64_config(root, iterations=1, validate_every=1, validation_tasks=2), filters=2)
    train(config, tmp_path / "run", progress=False)
    assert main(["spectrum", str(tmp_path / "run"), "--tasks", "1", "--steps", "5", "--at-init", "--no-progress"]) == 0
    frame = pd.read_csv(tmp_path / "run" / "spectrum-init.csv")
    assert frame["iteration"].tolist() == [0]


def test_spectrum_of_a_folder_that_is_no_run_is_exit_2(tmp_path, capsys):
    assert main(["spectrum", str(tmp_path), "--no-progress"]) == 2
    assert "not a training run" in capsys.readouterr().err
