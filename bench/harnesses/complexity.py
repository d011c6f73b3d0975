"""The paper's Table 1, measured: the least work and the memory that reach an eps-accurate meta-gradient.

On the linear-regression family (float64, ``bench.data.linear_regression``), for each condition number
kappa of the inner objective G and each target eps, each method's least work whose meta-gradient g
has relative error ||g - g*|| / ||g*|| <= eps against the exact meta-gradient g* (Definition 3, the
exact-solve error, for every method):

- MAML, gradient descent and full backpropagation: the least number K of inner steps.
- Truncated backpropagation (Shaban et al., 2019): K inner steps, the last T backpropagated; the
  (K, T) of least work.
- iMAML, gradient-descent inner loop, CG: the (K inner steps, C CG steps) of least work.
- iMAML, Nesterov's accelerated inner loop (with G's mu and L, known here), CG: the same.

Work is what the records count: gradient evaluations plus Hessian-vector products (the backward
pass through one MAML step counts as one product, the paper's accounting in Section 4 and Appendix
C: each within a constant factor of one gradient). Memory is the peak of bytes autograd holds for
backward during the meta-gradient (``memory.SavedTensorPeak``), in units of the same peak for one
gradient of the training loss. Every gradient descent uses G's fastest fixed step 2/(L + mu).
First-order MAML and Reptile are left out: their error has a floor (Figure 2a) and reaches no small eps.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from metagrad.algorithms import FunctionalModel, make_algorithm, squared_error_loss, value_and_gradient
from metagrad.algorithms.protocol import MetaGradientAlgorithm, MetaGradientRecord
from metagrad.bench.data.linear_regression import (
    LinearRegressionConfig,
    LinearRegressionTask,
    LinearRegressor,
    sample_linear_regression_task,
)
from metagrad.bench.harnesses.least_work import least_reaching, least_work_pair
from metagrad.bench.measure.memory import SavedTensorPeak
from metagrad.bench.options import MOST_DIMENSIONS, MOST_STEPS, MOST_TASKS, option
from metagrad.errors import require


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    secondary: str  # the second knob's name in the CSV ("" for one knob)
    compute_theory: str  # Table 1's compute column
    memory_theory: str  # Table 1's memory column
    exponent: float  # the theory's exponent of kappa in the compute (log factors aside)
    build: Callable[[LinearRegressionConfig, int, int], MetaGradientAlgorithm]


def _maml(task: LinearRegressionConfig, steps: int, tracked: int) -> MetaGradientAlgorithm:
    return make_algorithm("maml", inner_steps=steps, inner_lr=task.default_inner_lr, lam=task.lam,
                          backprop_steps=min(tracked, steps))


def _imaml_gd(task: LinearRegressionConfig, steps: int, cg_steps: int) -> MetaGradientAlgorithm:
    return make_algorithm("imaml", inner_steps=steps, inner_lr=task.default_inner_lr, lam=task.lam, cg_steps=cg_steps)


def _imaml_nesterov(task: LinearRegressionConfig, steps: int, cg_steps: int) -> MetaGradientAlgorithm:
    return make_algorithm("imaml", inner_solver="nesterov", inner_steps=steps, smoothness=task.smoothness,
                          strong_convexity=task.strong_convexity, lam=task.lam, cg_steps=cg_steps)


METHODS = (
    Method("maml", "MAML (GD, full backprop)", "", "kappa log(1/eps)", "Mem(grad) x kappa log(1/eps)", 1.0,
           lambda task, steps, _: _maml(task, steps, steps)),
    Method("truncated", "truncated backprop (GD)", "backprop_steps", "kappa log(1/eps)", "Mem(grad) x log(1/eps)",
           1.0, _maml),
    Method("imaml-gd", "iMAML (GD inner, CG)", "cg_steps", "kappa log(1/eps) + sqrt(kappa) log(1/eps)",
           "Mem(grad) (at most 2x)", 1.0, _imaml_gd),
    Method("imaml-nesterov", "iMAML (Nesterov inner, CG)", "cg_steps", "sqrt(kappa) log(1/eps)",
           "Mem(grad) (at most 2x)", 0.5, _imaml_nesterov),
)
METHOD_KEYS = tuple(m.key for m in METHODS)

COLUMNS = ["method", "label", "kappa", "epsilon", "reached", "inner_steps", "backprop_steps", "cg_steps",
           "least_backprop_steps", "least_cg_steps",
           "grad_evals", "hvp_evals", "work", "rel_error", "saved_bytes", "gradient_saved_bytes", "memory_gradients",
           "evaluations", "dim", "lam", "tasks", "seed", "inner_lr"]


@dataclass(frozen=True)
class ComplexityConfig:
    kappas: tuple[float, ...] = option((10.0, 30.0, 100.0, 300.0, 1000.0), "comma-separated condition numbers")
    epsilons: tuple[float, ...] = option((1e-2, 1e-4, 1e-6), "comma-separated relative errors to reach")
    methods: tuple[str, ...] = option(METHOD_KEYS, "comma-separated methods", choices=METHOD_KEYS, shown="all")
    dim: int = option(100, "input dimension d", at_most=MOST_DIMENSIONS)
    lam: float = option(5.0, "proximal regularization lambda")
    tasks: int = option(1, "tasks per kappa, relative errors averaged", at_most=MOST_TASKS)
    seed: int = option(0, "random seed")
    max_inner_steps: int = option(100_000, "give up beyond this many inner steps", at_most=MOST_STEPS)
    max_cg_steps: int = 0  # 0: 4 x dim (CG is exact in dim steps in exact arithmetic)

    def __post_init__(self) -> None:
        require(len(self.kappas) > 0 and all(k >= 1 for k in self.kappas), f"kappas must be >= 1, got {self.kappas}")
        require(len(self.epsilons) > 0 and all(0 < e < 1 for e in self.epsilons),
                f"epsilons must be between 0 and 1, got {self.epsilons}")
        unknown = sorted(set(self.methods) - set(METHOD_KEYS))
        require(not unknown and len(self.methods) > 0,
                f"unknown method {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHOD_KEYS)}")
        require(self.dim >= 1, f"dim must be >= 1, got {self.dim}")
        require(self.tasks >= 1, f"tasks must be >= 1, got {self.tasks}")
        require(self.max_inner_steps >= 1, f"max inner steps must be >= 1, got {self.max_inner_steps}")

    def task_config(self, kappa: float) -> LinearRegressionConfig:
        return LinearRegressionConfig(dim=self.dim, lam=self.lam, kappa=kappa, n_support=self.dim, n_query=self.dim)

    @property
    def cg_cap(self) -> int:
        return self.max_cg_steps or 4 * self.dim


@dataclass
class Problem:
    """The tasks of one kappa, their meta-parameters and exact meta-gradients."""

    config: LinearRegressionConfig
    model: FunctionalModel
    cases: list[tuple[LinearRegressionTask, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    evaluations: int = 0

    def evaluate(self, algorithm: MetaGradientAlgorithm) -> tuple[float, MetaGradientRecord]:
        """The mean relative error over the tasks (inf if not finite), and the first task's record (the work
        counts, the same for every task of the family)."""
        self.evaluations += 1
        errors, records = [], []
        for task, theta, exact in self.cases:
            result = algorithm.meta_gradient(self.model, theta, task.task)
            errors.append(((result.gradient - exact).norm() / exact.norm()).item())
            records.append(result.record)
        mean = sum(errors) / len(errors)
        return (mean if math.isfinite(mean) else math.inf), records[0]


def make_problem(config: ComplexityConfig, kappa: float) -> Problem:
    task_config = config.task_config(kappa)
    generator = torch.Generator().manual_seed(config.seed)
    problem = Problem(task_config, FunctionalModel(LinearRegressor(config.dim), squared_error_loss))
    for _ in range(config.tasks):
        task = sample_linear_regression_task(task_config, generator)
        theta = torch.randn(config.dim, generator=generator, dtype=torch.float64) / math.sqrt(config.dim)
        problem.cases.append((task, theta, task.exact_meta_gradient(theta, task_config.lam)))
    return problem


def saved_bytes(run: Callable[[], object]) -> int:
    with SavedTensorPeak() as saved:
        run()
    return saved.peak_bytes


def least_work(method: Method, problem: Problem, eps: float, config: ComplexityConfig) -> dict:
    """One row: the least-work configuration of ``method`` reaching ``eps`` on ``problem`` (reached False if none)."""
    task_config = problem.config
    problem.evaluations = 0
    measured: dict[tuple[int, int], tuple[float, MetaGradientRecord]] = {}

    def evaluate(steps: int, second: int) -> tuple[float, MetaGradientRecord]:
        if (steps, second) not in measured:
            measured[steps, second] = problem.evaluate(method.build(task_config, steps, second))
        return measured[steps, second]

    def error(steps: int, second: int) -> float:
        return evaluate(steps, second)[0]

    def work(steps: int, second: int) -> float:
        record = evaluate(steps, second)[1]
        return record.grad_evals + record.hvp_evals

    floor = None  # the least secondary steps (backprop or CG) with which some number of inner steps reaches eps
    if not method.secondary:
        steps = least_reaching(lambda k: error(k, k), eps, 1, config.max_inner_steps)
        found = None if steps is None else (steps, steps)
    else:
        within = method.secondary == "backprop_steps"  # truncated backpropagation: T <= K
        pair = least_work_pair(error, work, eps, config.max_inner_steps,
                               config.max_inner_steps if within else config.cg_cap, secondary_within_primary=within)
        found = None if pair is None else (pair.primary, pair.secondary)
        floor = None if pair is None else pair.secondary_floor
    row = {"method": method.key, "label": method.label, "kappa": task_config.kappa, "epsilon": eps,
           "reached": found is not None, "evaluations": problem.evaluations, "dim": config.dim, "lam": config.lam,
           "tasks": config.tasks, "seed": config.seed, "inner_lr": task_config.default_inner_lr}
    if found is None:
        return row
    rel_error, record = evaluate(*found)
    algorithm = method.build(task_config, *found)
    task, theta = problem.cases[0][0].task, problem.cases[0][1]
    # saved bytes in runs of their own: the hooks would slow every evaluation of the search
    gradient_bytes = saved_bytes(lambda: value_and_gradient(lambda p: problem.model.loss(p, task.support), theta))
    method_bytes = saved_bytes(lambda: algorithm.meta_gradient(problem.model, theta, task))
    row.update(inner_steps=found[0], grad_evals=record.grad_evals, hvp_evals=record.hvp_evals,
               work=record.grad_evals + record.hvp_evals, rel_error=rel_error, saved_bytes=method_bytes,
               gradient_saved_bytes=gradient_bytes, memory_gradients=method_bytes / gradient_bytes)
    if method.secondary == "cg_steps":
        row.update(cg_steps=found[1], least_cg_steps=floor)
    else:  # MAML backpropagates through all its K steps, truncated backpropagation through its T
        row.update(backprop_steps=min(found), least_backprop_steps=found[0] if floor is None else floor)
    return row


def run_complexity(config: ComplexityConfig, progress: bool = True) -> pd.DataFrame:
    methods = [m for m in METHODS if m.key in config.methods]
    rows = []
    with tqdm(total=len(config.kappas) * len(config.epsilons) * len(methods), desc="complexity", unit="cell",
              disable=not progress) as bar:
        for kappa in config.kappas:
            problem = make_problem(config, kappa)
            for eps in config.epsilons:
                for method in methods:
                    bar.set_postfix_str(f"kappa={kappa:g} eps={eps:g} {method.key}")
                    rows.append(least_work(method, problem, eps, config))
                    bar.update()
    return pd.DataFrame(rows, columns=COLUMNS)


def fitted_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slopes of log(work) and log(memory) against log(kappa), per method and eps (reached
    rows only; at least two kappas), beside the theory's exponent of kappa in the compute."""
    theory = {m.key: m for m in METHODS}
    rows = []
    for (key, eps), group in frame[frame["reached"].astype(bool)].groupby(["method", "epsilon"], sort=False):
        if group["kappa"].nunique() < 2:
            continue
        x = np.log(group["kappa"].to_numpy(float))
        rows.append({"method": key, "label": theory[key].label, "epsilon": eps, "kappas": len(group),
                     "work_exponent": float(np.polyfit(x, np.log(group["work"].to_numpy(float)), 1)[0]),
                     "memory_exponent": float(np.polyfit(x, np.log(group["memory_gradients"].to_numpy(float)), 1)[0]),
                     "theory_exponent": theory[key].exponent})
    return pd.DataFrame(rows, columns=["method", "label", "epsilon", "kappas", "work_exponent", "memory_exponent",
                                       "theory_exponent"])


def plot_complexity(frame: pd.DataFrame):
    """Work (top) and memory (bottom) against kappa, log-log, one panel per eps; dashed: the theory's slope
    for each method, drawn through its smallest-kappa point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epsilons = sorted(frame["epsilon"].unique(), reverse=True)
    theory = {m.key: m for m in METHODS}
    fig, axes = plt.subplots(2, len(epsilons), figsize=(4.6 * len(epsilons), 7.5), squeeze=False)
    reached = frame[frame["reached"].astype(bool)]
    for column, eps in enumerate(epsilons):
        for key, group in reached[reached["epsilon"] == eps].groupby("method", sort=False):
            group = group.sort_values("kappa")
            kappa = group["kappa"].to_numpy(float)
            # truncated backprop often coincides with MAML: crosses on a dotted line keep both visible
            style = dict(marker="x", markersize=6, linestyle=":") if key == "truncated" else dict(marker="o", markersize=3)
            line, = axes[0, column].plot(kappa, group["work"], label=theory[key].label, **style)
            slope = theory[key].exponent
            axes[0, column].plot(kappa, group["work"].iloc[0] * (kappa / kappa[0]) ** slope, linestyle="--",
                                 color=line.get_color(), linewidth=0.8)
            axes[1, column].plot(kappa, group["memory_gradients"], color=line.get_color(), **style)
        axes[0, column].set_title(f"eps = {eps:g}")
        axes[1, column].set_xlabel("condition number kappa of the inner objective")
        for row in (0, 1):
            axes[row, column].set_xscale("log")
            axes[row, column].set_yscale("log")
            axes[row, column].grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("least work: gradients + Hessian-vector products")
    axes[1, 0].set_ylabel("memory: saved bytes / one gradient's")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Table 1, measured: work and memory for an eps-accurate meta-gradient (dashed: theory's slope)")
    fig.tight_layout()
    return fig


def write_complexity(config: ComplexityConfig, out: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the sweep; write ``complexity.csv``, ``exponents.csv`` and ``complexity.png`` in ``out`` (atomically)."""
    from metagrad.bench.atomic import save_figure, write_csv

    frame = run_complexity(config, progress=progress)
    exponents = fitted_exponents(frame)
    write_csv(frame, out / "complexity.csv")
    write_csv(exponents, out / "exponents.csv")
    save_figure(plot_complexity(frame), out / "complexity.png")
    return frame, exponents
