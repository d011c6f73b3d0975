"""Table 1, measured: the least-work searches on known answers, and the harness at a reduced sweep."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from metagrad.bench.cli import main
from metagrad.bench.harnesses.complexity import ComplexityConfig, fitted_exponents, make_problem, run_complexity, write_complexity
from metagrad.bench.harnesses.least_work import least_reaching, least_work_pair


def test_least_reaching_finds_the_least_n_with_log_many_evaluations():
    calls = []

    def error(n: int) -> float:
        calls.append(n)
        return 0.5 ** n

    assert least_reaching(error, 1e-3) == 10  # 2^-10 < 1e-3 < 2^-9
    assert len(calls) <= 2 * math.ceil(math.log2(10)) + 2
    assert least_reaching(lambda n: 0.5 ** n, 0.6) == 1  # the first already reaches
    assert least_reaching(lambda n: 0.5 ** n, 1e-3, low=4) == 10
    assert least_reaching(lambda n: 0.5 ** n, 1e-9, high=20) is None  # 2^-20 ~ 1e-6
    assert least_reaching(lambda n: math.nan if n < 7 else 0.0, 1e-3) == 7  # nan never reaches


def brute_force(error, eps, within=False):
    return min((n + s, n, s) for n in range(1, 3000) for s in range(0, (n + 1) if within else 800)
               if error(n, s) <= eps)


@pytest.mark.parametrize("a, b, eps", [(0.5, 0.8, 1e-3), (0.9, 0.5, 1e-4), (0.99, 0.7, 1e-6), (0.7, 0.7, 1e-5)])
def test_least_work_pair_finds_the_optimum_of_a_separable_error(a, b, eps):
    """error = a^n + b^s, work = n + s: the least work by exhaustive search is the known answer."""
    def error(n, s):
        return a ** n + b ** s

    best = brute_force(error, eps)
    exact = least_work_pair(error, lambda n, s: n + s, eps, 10_000, 10_000, relative_stride=0.0)
    assert exact.work == best[0] and error(exact.primary, exact.secondary) <= eps
    # with the default stride of 5% of the floor, within one stride of the optimum
    strided = least_work_pair(error, lambda n, s: n + s, eps, 10_000, 10_000)
    assert best[0] <= strided.work <= best[0] + max(1, round(0.05 * strided.secondary))


@pytest.mark.slow
@pytest.mark.parametrize("a, b, eps", [(0.5, 0.8, 1e-3), (0.99, 0.7, 1e-6), (0.9, 0.99, 1e-2)])
def test_least_work_pair_with_the_secondary_knob_bounded_by_the_primary(a, b, eps):
    """Truncated backpropagation's T <= K: s is clamped to n."""
    def error(n, s):
        return a ** n + b ** min(s, n)

    best = brute_force(error, eps, within=True)
    found = least_work_pair(error, lambda n, s: n + s, eps, 10_000, 10_000, relative_stride=0.0,
                            secondary_within_primary=True)
    assert found.work == best[0] and found.secondary <= found.primary


def test_least_work_pair_says_when_eps_is_out_of_reach():
    assert least_work_pair(lambda n, s: 0.1 + 0.5 ** n, lambda n, s: n + s, 1e-3, 200, 50) is None


REDUCED = ComplexityConfig(kappas=(10.0, 40.0), epsilons=(1e-2, 1e-5), dim=10)


@pytest.fixture(scope="module")
def reduced() -> pd.DataFrame:
    return run_complexity(REDUCED, progress=False)


@pytest.mark.slow
def test_every_cell_reaches_eps_with_the_least_work_found(reduced):
    assert reduced["reached"].all()
    assert (reduced["rel_error"] <= reduced["epsilon"]).all()
    assert (reduced["work"] == reduced["grad_evals"] + reduced["hvp_evals"]).all()
    # MAML's one knob: the step before the one found does not reach eps
    from metagrad.bench.harnesses.complexity import METHODS

    maml = next(m for m in METHODS if m.key == "maml")
    for row in reduced[reduced["method"] == "maml"].itertuples():
        problem = make_problem(REDUCED, row.kappa)
        before, _ = problem.evaluate(maml.build(problem.config, row.inner_steps - 1, row.inner_steps - 1))
        assert before > row.epsilon


@pytest.mark.slow
def test_the_measurement_has_table_1s_shape(reduced):
    by = reduced.set_index(["method", "kappa", "epsilon"])
    for kappa in REDUCED.kappas:
        for eps in REDUCED.epsilons:
            # iMAML holds one gradient's graph (at most twice, Theorem 1), MAML the whole path
            assert by.loc[("imaml-gd", kappa, eps), "memory_gradients"] <= 2
            assert by.loc[("imaml-nesterov", kappa, eps), "memory_gradients"] <= 2
            assert by.loc[("maml", kappa, eps), "memory_gradients"] > 3
            # the accelerated inner loop needs less work than gradient descent
            assert by.loc[("imaml-nesterov", kappa, eps), "work"] < by.loc[("imaml-gd", kappa, eps), "work"]
    for method in ("maml", "imaml-gd"):  # more work for a harder problem and a smaller eps
        assert by.loc[(method, 40.0, 1e-5), "work"] > by.loc[(method, 10.0, 1e-5), "work"]
        assert by.loc[(method, 40.0, 1e-5), "work"] > by.loc[(method, 40.0, 1e-2), "work"]
    exponents = fitted_exponents(reduced).set_index(["method", "epsilon"])
    assert exponents.loc[("imaml-nesterov", 1e-5), "work_exponent"] < exponents.loc[("imaml-gd", 1e-5), "work_exponent"]
    assert abs(exponents.loc[("imaml-gd", 1e-5), "memory_exponent"]) < 0.05


@pytest.mark.slow
def test_write_complexity_and_the_command(tmp_path):
    out = tmp_path / "complexity"
    config = ComplexityConfig(kappas=(10.0, 20.0), epsilons=(1e-2,), dim=6, methods=("maml", "imaml-nesterov"))
    frame, exponents = write_complexity(config, out, progress=False)
    assert {p.name for p in out.iterdir()} == {"complexity.csv", "exponents.csv", "complexity.png"}
    assert len(frame) == 4 and len(exponents) == 2
    assert main(["complexity", "--out", str(tmp_path / "cli"), "--kappas", "10,20", "--epsilons", "0.01", "--dim", "6",
                 "--methods", "imaml-gd", "--no-progress"]) == 0
    assert len(pd.read_csv(tmp_path / "cli" / "complexity.csv")) == 2


@pytest.mark.parametrize("argv, message", [
    (["--methods", "fomaml"], "unknown method fomaml"),
    (["--epsilons", "2"], "epsilons must be between 0 and 1"),
    (["--kappas", "0.5"], "kappas must be >= 1"),
    (["--device", "cuda"], "float64 on the CPU"),
])
def test_bad_complexity_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["complexity", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
