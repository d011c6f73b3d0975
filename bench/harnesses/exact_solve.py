"""Exact-solve harness (paper Figure 2a): each algorithm's meta-gradient against the closed form.

Error is Definition 3 of the paper: ||g - d/dtheta L_test(Alg*(theta))||, with Alg* the exact
minimizer of the proximal inner objective, on linear-regression tasks where that is known in
closed form. Every algorithm runs gradient descent on the same G with the same step size.

An algorithm that learns the proximal weight too (a meta-parameter group ``lambda`` and a method ``lambdas`` giving
every parameter's weight) gets rows for that gradient as well (``wrt`` "lambda"), against its closed form
(``LinearRegressionTask.exact_lambda_gradient``), with lambda one value and one per parameter; those rows start
lambda at the problem's, so the d/dtheta rows are iMAML's problem.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from metagrad.algorithms import FunctionalModel, algorithm_label, algorithm_names, make_algorithm, squared_error_loss
from metagrad.algorithms.meta_parameters import group_slices, groups_of, initial_meta_parameters, network_part
from metagrad.algorithms.registry import algorithm_color, hyperparameter_defaults
from metagrad.bench.data.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task
from metagrad.bench.options import MOST_REPEATS, MOST_STEPS, option
from metagrad.bench.plotting import coinciding, line_style
from metagrad.errors import require

CONVERGED_CG_STEPS = 200  # "CG run to convergence": a cap far above the ~35 iterations it needs at kappa = 50
CONVERGED_CG_TOLERANCE = 1e-14

COLUMNS = ["algorithm", "inner_steps", "cg_steps", "seed", "error", "rel_error", "label", "tasks",
           "cg_iterations", "grad_evals", "hvp_evals", "dim", "lam", "kappa", "distinct_eigenvalues", "inner_lr",
           "diverged", "wrt"]
LAMBDA_SHAPES = ("scalar", "parameter")  # a learned lambda's rows: one weight, and one per parameter


@dataclass(frozen=True)
class Variant:
    label: str
    algorithm: str
    cg_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    wrt: str = "theta"  # the gradient compared: the network's (theta), or an algorithm's own group's (lambda)


def variants(algorithms: tuple[str, ...], cg_steps: tuple[int, ...]) -> tuple[Variant, ...]:
    """Each algorithm once, and an algorithm with a linear system to solve (a ``cg_steps`` hyperparameter, as
    iMAML's) once per CG budget, ``CONVERGED_CG_STEPS`` meaning CG run to convergence; an algorithm that learns
    lambda, its lambda gradient's rows besides, for each of ``LAMBDA_SHAPES``."""
    out = []
    for name in algorithms:
        taken = hyperparameter_defaults(name)
        budgets = [(None, {})] if "cg_steps" not in taken else [
            (steps, {"cg_tolerance": CONVERGED_CG_TOLERANCE} if steps == CONVERGED_CG_STEPS else {})
            for steps in cg_steps]
        rows = [("theta", {}, "")]
        if learns_lambda(name):
            shapes = LAMBDA_SHAPES if "lambda_shape" in taken else (None,)
            rows += [("lambda", {"lambda_shape": shape} if shape else {}, f" ({shape})" if shape else "")
                     for shape in shapes]
        for wrt, shape, words in rows:
            prefix = algorithm_label(name) + (f", d/dlambda{words}" if wrt == "lambda" else "")
            for steps, extra in budgets:
                if steps is None:
                    label = prefix
                elif steps == CONVERGED_CG_STEPS:
                    label = f"{prefix}, CG to convergence"
                else:
                    label = f"{prefix}, {steps} CG steps"
                out.append(Variant(label, name, steps or 0, {**extra, **shape}, wrt))
    return tuple(out)


def learns_lambda(name: str) -> bool:
    """Whether the algorithm learns the proximal weight: a group ``lambda`` and every parameter's weight from it."""
    algorithm = make_algorithm(name)
    model = FunctionalModel(LinearRegressor(2), squared_error_loss)
    return hasattr(algorithm, "lambdas") and "lambda" in [group.name for group in groups_of(algorithm, model)]


def exact_lambda_gradient(algorithm: Any, model: FunctionalModel, task: Any, full: torch.Tensor
                          ) -> tuple[slice, torch.Tensor]:
    """(where the stored lambda group lies in the meta-gradient, its closed form): every lambda_i's closed form,
    chained through the algorithm's map from its stored values to every parameter's weight (the exponential and the
    sharing)."""
    (group,) = [group for group in groups_of(algorithm, model) if group.name == "lambda"]
    part = group_slices(algorithm, model)["lambda"]
    stored = full[part].clone().requires_grad_(True)
    with torch.enable_grad():
        weights = algorithm.lambdas(model, group.values(stored))
        (exact,) = torch.autograd.grad(weights, stored,
                                       task.exact_lambda_gradient(network_part(model, full), weights.detach()))
    return part, exact


@dataclass(frozen=True)
class ExactSolveConfig:
    task: LinearRegressionConfig = option(default_factory=LinearRegressionConfig, nested=True)
    inner_steps: tuple[int, ...] = option((1, 2, 5, 10, 20, 50, 100, 200, 300, 500), "comma-separated inner step counts",
                                          at_most=MOST_STEPS)
    seed: int = option(0, "the first seed")
    seeds: int = option(3, "number of seeds, from --seed on", at_most=MOST_REPEATS)
    tasks_per_seed: int = option(4, "tasks per seed, errors averaged", flag="--tasks", at_most=MOST_REPEATS)
    inner_lr: float | None = option(None, "inner step size", shown="2/(L+mu) of the inner objective, its fastest fixed step")
    algorithms: tuple[str, ...] | None = option(None, "comma-separated registered algorithms, each run on the same "
                                                "proximal inner objective G with the same step",
                                                shown="every registered algorithm", choices=algorithm_names)
    cg_steps: tuple[int, ...] = option((2, 5, CONVERGED_CG_STEPS), "comma-separated CG budgets of algorithms that "
                                       f"solve a linear system (iMAML); {CONVERGED_CG_STEPS}: CG to convergence", at_most=MOST_STEPS)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.algorithms or ()) - set(algorithm_names()))
        require(not unknown, f"unknown algorithm {', '.join(unknown)}; choose from {', '.join(algorithm_names())}")
        require(bool(self.cg_steps) and all(k >= 0 for k in self.cg_steps), "CG steps must be >= 0")
        for name in self.algorithms or ():
            require(sweeps_inner_steps(name), f"{name} has no inner_steps hyperparameter, which exact-solve sweeps")
        require(len(self.inner_steps) > 0 and all(k >= 1 for k in self.inner_steps), "inner steps must be >= 1")
        require(self.seeds >= 1, f"at least one seed is needed, got --seeds {self.seeds}")
        require(self.tasks_per_seed >= 1, f"tasks per seed must be >= 1, got {self.tasks_per_seed}")
        require(self.inner_lr is None or self.inner_lr > 0, f"inner lr must be > 0, got {self.inner_lr}")

    @property
    def swept(self) -> tuple[str, ...]:
        """The algorithms given, else every registered one with inner steps to sweep."""
        return self.algorithms or tuple(filter(sweeps_inner_steps, algorithm_names()))


def sweeps_inner_steps(name: str) -> bool:
    return "inner_steps" in hyperparameter_defaults(name)


def run_exact_solve(config: ExactSolveConfig, progress: bool = True) -> pd.DataFrame:
    """One row per variant x inner steps x seed: errors averaged over that seed's tasks."""
    sweep = variants(config.swept, config.cg_steps)
    cfg = config.task
    lr = config.inner_lr or cfg.default_inner_lr
    # gradient descent on G, a quadratic with largest curvature L, diverges for steps of 2/L or more
    unstable = lr >= 2.0 / cfg.smoothness
    model = FunctionalModel(LinearRegressor(cfg.dim), squared_error_loss)
    rows = []
    seeds = range(config.seed, config.seed + config.seeds)
    total = len(seeds) * config.tasks_per_seed * len(sweep) * len(config.inner_steps)
    with tqdm(total=total, desc="exact-solve", unit="meta-grad", disable=not progress) as bar:
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            tasks = []
            for _ in range(config.tasks_per_seed):
                task = sample_linear_regression_task(cfg, generator)
                theta = torch.randn(cfg.dim, generator=generator, dtype=torch.float64) / math.sqrt(cfg.dim)
                tasks.append((task, theta, task.exact_meta_gradient(theta, cfg.lam)))
            for variant in sweep:
                taken = hyperparameter_defaults(variant.algorithm)
                for steps in config.inner_steps:
                    kwargs = dict(inner_steps=steps, inner_lr=lr, lam=cfg.lam, cg_steps=variant.cg_steps, **variant.extra)
                    algorithm = make_algorithm(variant.algorithm, **{k: v for k, v in kwargs.items() if k in taken})
                    errors, rel_errors, records = [], [], []
                    for task, theta, exact in tasks:
                        # an algorithm's own meta-parameters (step sizes, lambda) at their start
                        full = initial_meta_parameters(algorithm, model, theta)
                        result = algorithm.meta_gradient(model, full, task.task)
                        part = slice(0, model.num_parameters)
                        if variant.wrt == "lambda":
                            part, exact = exact_lambda_gradient(algorithm, model, task, full)
                        error = (result.gradient[part] - exact).norm().item()
                        errors.append(error)
                        rel_errors.append(error / exact.norm().item())
                        records.append(result.record)
                        bar.update()
                    error, rel_error = sum(errors) / len(errors), sum(rel_errors) / len(rel_errors)
                    rows.append({
                        "algorithm": variant.algorithm, "inner_steps": steps, "cg_steps": variant.cg_steps,
                        "seed": seed, "error": error, "rel_error": rel_error,
                        "label": variant.label, "tasks": len(tasks),
                        "cg_iterations": sum(r.cg_iterations for r in records) / len(records),
                        "grad_evals": records[0].grad_evals, "hvp_evals": sum(r.hvp_evals for r in records) / len(records),
                        "dim": cfg.dim, "lam": cfg.lam, "kappa": cfg.kappa,
                        "distinct_eigenvalues": cfg.distinct_eigenvalues, "inner_lr": lr,
                        "diverged": unstable or not (math.isfinite(error) and math.isfinite(rel_error)),
                        "wrt": variant.wrt,
                    })
    return pd.DataFrame(rows, columns=COLUMNS)


def exact_solve_title(frame: pd.DataFrame) -> str:
    """The figure's title, from the problem settings recorded in the rows (older files lack them)."""
    title = "Meta-gradient accuracy on linear regression (paper Fig. 2a)"
    if "dim" not in frame.columns or frame["dim"].isna().all():
        return title
    first = frame.iloc[0]
    title += f"\nd={int(first['dim'])}, lambda={first['lam']:g}, kappa={first['kappa']:g}"
    if first["distinct_eigenvalues"]:
        title += f", {int(first['distinct_eigenvalues'])} distinct eigenvalues"
    return title


def plot_exact_solve(frame: pd.DataFrame, title: str | None = None):
    """Relative error against inner steps, log-log; the line is the mean over seeds, the band min to max. Where the
    rows include a learned lambda's gradient (``wrt`` "lambda"), a second panel beside d/dtheta's draws those."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrt = frame["wrt"].fillna("theta") if "wrt" in frame.columns else pd.Series("theta", index=frame.index)
    panels = [("theta", frame[wrt == "theta"])] + ([("lambda", frame[wrt == "lambda"])] if (wrt == "lambda").any()
                                                   else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (part, rows) in zip(axes[0], panels):
        _draw_errors(ax, rows)
        ax.set_ylabel("relative error ||g - g*|| / ||g*||  (Definition 3)" if part == "theta" else
                      "relative error of d/dlambda (stored log lambda)")
        if len(panels) > 1:
            ax.set_title("d/dtheta" if part == "theta" else "d/dlambda, against its closed form", fontsize=10)
    title = title or "Meta-gradient accuracy on linear regression (paper Fig. 2a)"
    if len(panels) == 1:
        axes[0][0].set_title(title)
    else:
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
    return fig


def _draw_errors(ax: Any, frame: pd.DataFrame) -> None:
    from matplotlib.colors import to_rgb

    groups = list(frame.groupby("label", sort=False))
    statistics = {label: group.groupby("inner_steps")["rel_error"].agg(["mean", "min", "max"]) for label, group in groups}
    same = coinciding([(label, list(stats.index), list(stats["mean"])) for label, stats in statistics.items()], 1e-6)
    drawn: dict[str, int] = {}  # lines drawn so far per family: its CG budgets after the first are dashed, dotted
    families: dict[str, list[str]] = {}  # an algorithm's families of lines (a learned lambda's shapes): darker each
    for nth, (label, group) in enumerate(groups):
        algorithm = group["algorithm"].iloc[0]
        family = re.sub(r", (\d+ CG steps|CG to convergence)$", "", label)
        shades = families.setdefault(algorithm, [])
        if family not in shades:
            shades.append(family)
        index = drawn[family] = drawn.get(family, -1) + 1
        stats = statistics[label]
        # each line thinner than the one before, its marker its own: equal curves (ANIL's and MAML's here) both show,
        # and the legend says they coincide
        shown = f"{label} (= {same[label]})" if label in same else label
        color = [channel * (1 - 0.35 * shades.index(family)) for channel in to_rgb(algorithm_color(algorithm))]
        line, = ax.plot(stats.index, stats["mean"], marker=line_style(nth)[1], markersize=3, label=shown,
                        color=color, linestyle=line_style(index)[0], linewidth=max(0.8, 2.6 - 0.3 * nth))
        ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inner steps")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def write_exact_solve(config: ExactSolveConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    """Run the sweep and write ``out/exact_solve.csv`` and ``out/exact_solve.png`` (each atomically)."""
    from metagrad.bench.atomic import save_figure, write_csv

    frame = run_exact_solve(config, progress=progress)
    write_csv(frame, out / "exact_solve.csv")
    save_figure(plot_exact_solve(frame, exact_solve_title(frame)), out / "exact_solve.png")
    return frame
