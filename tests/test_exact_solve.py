"""The exact-solve harness reproduces the claims of paper Figure 2a, measured on a reduced sweep."""
from __future__ import annotations

import pandas as pd
import pytest

from metagrad.algorithms import algorithm_names
from metagrad.algorithms.registry import hyperparameter_defaults
from metagrad.bench.cli import main
from metagrad.bench.data.linear_regression import LinearRegressionConfig
from metagrad.bench.harnesses.exact_solve import COLUMNS, ExactSolveConfig, run_exact_solve


@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    config = ExactSolveConfig(inner_steps=(1, 5, 20, 50, 500), seeds=2, tasks_per_seed=2)
    frame = run_exact_solve(config, progress=False)
    return frame.groupby(["label", "inner_steps"])["rel_error"].mean().unstack()


@pytest.mark.slow
def test_imaml_with_converged_cg_reaches_the_exact_meta_gradient(sweep):
    assert sweep.loc["iMAML, CG to convergence", 500] <= 1e-8


@pytest.mark.slow
def test_maml_error_falls_with_inner_steps(sweep):
    maml = sweep.loc["MAML"]
    assert (maml.diff().dropna() < 0).all()
    assert maml[500] < 1e-6


@pytest.mark.slow
def test_first_order_methods_keep_an_error_floor(sweep):
    assert sweep.loc["first-order MAML", 500] > 1.0
    assert sweep.loc["Reptile", 500] > 0.5


@pytest.mark.slow
def test_truncated_cg_leaves_a_terminal_error_that_more_cg_steps_shrink(sweep):
    two, five = sweep.loc["iMAML, 2 CG steps", 500], sweep.loc["iMAML, 5 CG steps", 500]
    assert 1e-3 < five < two


@pytest.mark.slow
def test_imaml_five_cg_steps_beats_maml_at_few_inner_steps(sweep):
    for steps in (1, 5, 20):  # the crossover lies between 20 and 100 steps (README)
        assert sweep.loc["iMAML, 5 CG steps", steps] <= sweep.loc["MAML", steps]


@pytest.mark.slow
def test_five_cg_steps_are_exact_when_the_spectrum_has_five_values():
    """Why the paper saw no terminal error at 5 CG steps: CG is exact after as many iterations as
    the system has distinct eigenvalues."""
    config = ExactSolveConfig(task=LinearRegressionConfig(distinct_eigenvalues=5), inner_steps=(500,),
                              seeds=1, tasks_per_seed=2)
    frame = run_exact_solve(config, progress=False)
    errors = frame.set_index("label")["rel_error"]
    assert errors["iMAML, 5 CG steps"] <= 1e-7
    assert errors["iMAML, 2 CG steps"] > 1e-2


@pytest.mark.slow
def test_command_writes_the_csv_contract_and_a_figure(tmp_path):
    out = tmp_path / "run"
    code = main(["exact-solve", "--out", str(out), "--inner-steps", "1,10", "--seeds", "2", "--tasks", "1",
                 "--no-progress"])
    assert code == 0
    frame = pd.read_csv(out / "exact_solve.csv")
    assert list(frame.columns) == COLUMNS
    # every registered algorithm, those with a linear system (iMAML's) at each of the 3 CG budgets, x steps x seeds;
    # a learned lambda's gradient besides, for each of its two shapes at each budget
    with_system = [name for name in algorithm_names() if "cg_steps" in hyperparameter_defaults(name)]
    assert "imaml" in with_system
    theta = frame[frame["wrt"] == "theta"]
    assert len(theta) == (len(algorithm_names()) + 2 * len(with_system)) * 2 * 2
    learned = frame[frame["wrt"] == "lambda"]
    assert set(learned["algorithm"]) == {"imaml-lambda"} and len(learned) == 2 * 3 * 2 * 2
    assert len(frame) == len(theta) + len(learned)
    assert set(frame["algorithm"]) == set(algorithm_names())
    assert len(frame[frame["algorithm"] == "imaml"]["label"].unique()) == 3
    assert (out / "exact_solve.png").stat().st_size > 10_000
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize("argv,fragment", [
    (["--lam", "0"], "lam"),
    (["--lam", "-1"], "lam"),
    (["--kappa", "0.5"], "kappa"),
    (["--tasks", "0"], "tasks"),
    (["--device", "cuda"], "--device must be cpu"),
    (["--distinct-eigenvalues", "99"], "distinct_eigenvalues"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, fragment):
    out = tmp_path / "run"
    assert main(["exact-solve", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fragment in err and err.startswith("metagrad exact-solve: error:")
    assert not out.exists()


def test_argument_errors_exit_2(tmp_path, capsys):
    """A value the option's type refuses is argparse's error (exit 2); one the config refuses is a one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["exact-solve", "--out", str(tmp_path), "--inner-steps", "1,x"])
    assert exit_info.value.code == 2
    assert main(["exact-solve", "--out", str(tmp_path / "run"), "--inner-steps", "0,3"]) == 2
    assert capsys.readouterr().err.strip().endswith("metagrad exact-solve: error: inner steps must be >= 1")


@pytest.mark.slow
def test_a_divergent_inner_step_is_marked_and_said(tmp_path, capsys):
    out = tmp_path / "es"
    # L = kappa (lam + 1) = 300 by default: steps of 2/L = 0.0067 or more diverge
    assert main(["exact-solve", "--out", str(out), "--inner-steps", "1,20", "--seeds", "1", "--tasks", "1",
                 "--inner-lr", "0.01", "--algorithms", "maml,fomaml,reptile,imaml", "--no-progress"]) == 0
    frame = pd.read_csv(out / "exact_solve.csv")
    assert frame["diverged"].all()
    err = capsys.readouterr().err
    assert "12 of 12 configurations diverged" in err and "2/L = 0.00667" in err
    assert main(["exact-solve", "--out", str(tmp_path / "ok"), "--inner-steps", "1,20", "--seeds", "1", "--tasks", "1",
                 "--no-progress"]) == 0
    assert not pd.read_csv(tmp_path / "ok" / "exact_solve.csv")["diverged"].any()


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["scalar", "parameter"])
def test_a_learned_lambdas_gradient_reaches_its_closed_form_as_the_meta_gradient_does(sweep, shape):
    """The lambda gradient from iMAML's one solve: its error against the closed form falls with inner steps as
    d/dtheta's does, to round-off with CG run to convergence; with 5 CG steps a floor, as for theta."""
    converged = sweep.loc[f"iMAML, learned lambda, d/dlambda ({shape}), CG to convergence"]
    assert converged[500] <= 1e-8 and converged[1] > 1e-2
    assert (converged.diff().dropna() < 0).all()
    assert sweep.loc[f"iMAML, learned lambda, d/dlambda ({shape}), 5 CG steps", 500] > 1e3 * converged[500]
    # its d/dtheta at the start, lambda the problem's, is iMAML's
    for budget in ("2 CG steps", "5 CG steps", "CG to convergence"):
        learned, fixed = sweep.loc[f"iMAML, learned lambda, {budget}"], sweep.loc[f"iMAML, {budget}"]
        assert ((learned - fixed).abs() <= 1e-8 * fixed + 1e-12).all(), budget  # round-off apart


def test_the_lambda_closed_form_is_the_derivative_of_the_test_loss_at_the_inner_minimizer():
    """d/dlambda_i L_test((A + Lambda)^-1 (Lambda theta - b)) against central differences, lambda a vector."""
    import torch

    from metagrad.algorithms import FunctionalModel, squared_error_loss
    from metagrad.bench.data.linear_regression import LinearRegressor, sample_linear_regression_task

    config = LinearRegressionConfig(dim=6, n_support=12, n_query=12)
    generator = torch.Generator().manual_seed(3)
    task = sample_linear_regression_task(config, generator)
    theta = torch.randn(6, generator=generator, dtype=torch.float64)
    lam = 1.0 + torch.rand(6, generator=generator, dtype=torch.float64) * 4
    model = FunctionalModel(LinearRegressor(6), squared_error_loss)

    def test_loss(weights):
        phi = torch.linalg.solve(task.A_train + torch.diag(weights), weights * theta - task.b_train)
        return model.loss(phi, task.task.query).item()

    step = 1e-6
    differences = torch.tensor([(test_loss(lam + step * e) - test_loss(lam - step * e)) / (2 * step)
                                for e in torch.eye(6, dtype=torch.float64)])
    closed = task.exact_lambda_gradient(theta, lam)
    assert ((closed - differences).norm() / closed.norm()).item() < 1e-7
    # a scalar lambda: the same formula's sum is the derivative along (1, ..., 1)
    along = (test_loss(lam + step) - test_loss(lam - step)) / (2 * step)
    assert abs(closed.sum().item() - along) < 1e-7 * abs(along)
