"""The study of iMAML's meta-gradient system when it is indefinite: per lambda and solver, how often the solve met
non-positive curvature, its residual, the spectrum at the start and the end, the accuracy reached; and the iMAML-GD
presets' full-size runs, the paper's CG against MINRES. Read from training runs; the study's own runs are those whose
spectrum was recorded at initialization and at the end."""
from __future__ import annotations

import pandas as pd

from metagrad.algorithms import make_algorithm
from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.plotting import line_style
from metagrad.bench.reporting.renderers.common import markdown_table, pyplot
from metagrad.bench.reporting.renderers.runs import TrainingRun, read_runs, setting_label, training_length
from metagrad.bench.training.presets import META_SOLVER_VARIANTS, SETTINGS


def _imaml(run: TrainingRun):
    """The run's iMAML with every hyperparameter, those the run left at their defaults included."""
    return make_algorithm(run.config["algorithm"], **run.config["hyperparameters"])


def _curvature_key(run: TrainingRun) -> tuple:
    imaml = _imaml(run)
    return (run.setting, float(imaml.lam), imaml.meta_solver, float(imaml.damping))


def _solver_name(run: TrainingRun) -> str:
    imaml = _imaml(run)
    return f"{imaml.meta_solver}, damping {imaml.damping:g}" if imaml.damping else imaml.meta_solver


def _dips(validated: pd.DataFrame, column: str, spec: str) -> str:
    """'N: a / b': the N validations that fell from the one before (dips), and the mean of ``column`` over the
    logged windows that ended in a dip (a) against the windows that ended rising (b); '—' where none logged it."""
    change = validated["val_accuracy"].diff()

    def mean_over(mask: pd.Series) -> str:
        values = validated.loc[mask, column].dropna() if column in validated else []
        return format(values.mean(), spec) if len(values) else "—"

    return f"{int((change < 0).sum())}: {mean_over(change < 0)} / {mean_over(change >= 0)}"


def full_size_imaml_runs(runs: list[TrainingRun]) -> list[TrainingRun]:
    """iMAML-GD runs of a preset as it stands, the paper's CG (``imaml-gd``) or MINRES (``imaml-gd-minres``),
    outside the curvature study: the two meta-gradient solvers at full size, seeds told apart."""
    runs = [r for r in runs if not r.in_curvature_study and r.variant in META_SOLVER_VARIANTS
            and not r.differences]
    return sorted(runs, key=lambda r: (r.setting, _solver_name(r), int(r.config.get("seed", 0)), r.name))


def full_size_table(runs: list[TrainingRun]) -> str:
    """Per full-size run: its seed, how often its solve met non-positive curvature, its residual (the mean
    over the logged windows, how many windows averaged above 1: a returned meta-gradient that solves the
    system worse than g = 0, and the residual of the windows that ended in a validation dip against the
    others'), and the accuracy it reached."""
    intro = ("## The presets at full size: the paper's CG against MINRES\n\nEvery run of an iMAML-GD preset as "
             "it stands (full network and meta-batch) outside the study above, CG (the paper's) or MINRES for the "
             "meta-gradient; runs of one seed saw the same tasks. 'Residual > 1' counts the logged windows "
             "whose mean relative residual was above 1; 'dips' counts the validations that fell from the one "
             "before, and compares the mean residual of the windows that ended in a dip with that of the "
             "others.\n\n")
    if not runs:
        return intro + "No such runs were found.\n"
    rows = []
    for run in runs:
        metrics = run.metrics
        validated = metrics.dropna(subset=["val_accuracy"])
        best = validated.loc[validated["val_accuracy"].idxmax()] if len(validated) else None
        residual = metrics["cg_residual_mean"].dropna() if "cg_residual_mean" in metrics else pd.Series(dtype=float)
        fraction = metrics.get("cg_negative_curvature_fraction")
        rows.append([
            run.setting, _solver_name(run), str(run.config.get("seed", 0)), run.device, training_length(run),
            f"{fraction.mean():.3f}" if fraction is not None else "—",
            f"{residual.mean():.3g}" if len(residual) else "—",
            f"{int((residual > 1).sum())} of {len(residual)}" if len(residual) else "—",
            _dips(validated, "cg_residual_mean", ".3g"),
            f"{100 * best['val_accuracy']:.1f} (it {int(best['iteration'])})" if best is not None else "—",
            f"{100 * validated['val_accuracy'].iloc[-1]:.1f}" if len(validated) else "—",
            f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}" if run.evaluation
            else "not evaluated", f"`{run.name}`"])
    return intro + markdown_table(["Setting", "Solver", "Seed", "Device", "Training", "Indefinite (all)",
                                    "Residual", "Residual > 1", "Dips: residual in dip / other windows",
                                    "Best validation (%)", "Last validation (%)", "Test (%)", "Run"], rows)


def curvature_table(runs: list[TrainingRun]) -> str:
    """The curvature study: per run, how often the meta-gradient system met non-positive curvature, the
    solve's residual, the spectrum at the start and the end, and the accuracy reached; then the full-size
    runs of the two solvers (``full_size_table``)."""
    full_size = "\n" + full_size_table(full_size_imaml_runs(runs))
    study = sorted((r for r in runs if r.in_curvature_study), key=_curvature_key)
    intro = ("# iMAML's meta-gradient system when it is indefinite\n\nEach run: iMAML with gradient descent inside, "
             "one lambda and one meta-gradient solver, equal iterations and seeds (so the same tasks). "
             "'Indefinite' is the fraction of training tasks whose solve met p^T A p <= 0 (CG stops there; for "
             "MINRES a Lanczos vector with v^T A v <= 0), over the whole run and over its last quarter; 'residual' "
             "is the mean relative residual of the system solved; 'spectrum' is the share of `metagrad spectrum`'s "
             "tasks whose I + H/lambda has a negative eigenvalue, at initialization and at the end. 'Dips' counts "
             "the validations that fell from the one before, and compares the indefinite share of the training "
             "windows that ended in a dip with that of the others.\n\n")
    if not study:
        return intro + "No runs of the study were found.\n" + full_size
    rows = []
    for run in study:
        metrics = run.metrics.dropna(subset=["val_accuracy"])
        fraction = metrics.get("cg_negative_curvature_fraction")
        quarter = metrics[metrics["iteration"] > 0.75 * metrics["iteration"].max()] if len(metrics) else metrics
        last_val = metrics["val_accuracy"].iloc[-1] if len(metrics) else float("nan")
        best = metrics.loc[metrics["val_accuracy"].idxmax()] if len(metrics) else None

        def share(key: str, run: TrainingRun = run) -> str:
            spectrum = run.spectra.get(key)
            return f"{int(spectrum['indefinite'].sum())}/{len(spectrum)}" if spectrum is not None else "—"

        test = (f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}"
                if run.evaluation else "not evaluated")
        rows.append([
            run.setting, f"{_curvature_key(run)[1]:g}", _solver_name(run), f"{run.iterations:,}",
            f"{fraction.mean():.2f}" if fraction is not None else "—",
            f"{quarter['cg_negative_curvature_fraction'].mean():.2f}" if fraction is not None else "—",
            f"{metrics['cg_residual_mean'].mean():.3g}" if "cg_residual_mean" in metrics else "—",
            f"{share('init')} → {share('end')}",
            _dips(metrics, "cg_negative_curvature_fraction", ".2f"),  # a dip's window's curvature against the others'
            f"{100 * best['val_accuracy']:.1f} (it {int(best['iteration'])})" if best is not None else "—",
            f"{100 * last_val:.1f}", test, f"`{run.name}`",
        ])
    return intro + markdown_table(["Setting", "λ", "Solver", "Iterations", "Indefinite (all)", "Indefinite (last ¼)",
                                    "Residual", "Spectrum: indefinite", "Dips: indefinite in dip / other windows",
                                    "Best validation (%)",
                                    "Last validation (%)", "Test (%)", "Run"], rows) + full_size


def plot_curvature(runs: list[TrainingRun], setting: str):
    """Validation accuracy and the share of tasks meeting non-positive curvature against iterations: one
    color per lambda, one line style per solver."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    lambdas = sorted({_curvature_key(r)[1] for r in runs})
    solvers = sorted({_solver_name(r) for r in runs})
    styles = {solver: line_style(i) for i, solver in enumerate(solvers)}
    for run in sorted(runs, key=_curvature_key):
        metrics = run.metrics.dropna(subset=["val_accuracy"])
        color = f"C{lambdas.index(_curvature_key(run)[1])}"
        style, marker = styles[_solver_name(run)]
        label = f"λ {_curvature_key(run)[1]:g}, {_solver_name(run)}"
        axes[0].plot(metrics["iteration"], 100 * metrics["val_accuracy"], color=color, linestyle=style, marker=marker,
                     markersize=3, label=label)
        axes[1].plot(metrics["iteration"], metrics["cg_negative_curvature_fraction"], color=color, linestyle=style,
                     marker=marker, markersize=3, label=label)
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].set_ylabel("share of training tasks whose solve met p^T A p <= 0")
    for ax in axes:
        ax.set_xlabel("meta-iterations")
        ax.grid(True, alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"iMAML-GD, {setting_label(setting)}: lambda and meta-gradient solver (CPU, reduced network)")
    fig.tight_layout()
    return fig


def plot_full_size(runs: list[TrainingRun], setting: str):
    """The full-size iMAML-GD runs (``full_size_imaml_runs``) that logged their solve's residual: validation
    accuracy and the mean relative residual against meta-iterations, one color per solver, one line style per
    run of a solver."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    solvers = sorted({_solver_name(r) for r in runs})
    seen: dict[str, int] = {}
    for run in runs:
        seed, solver = int(run.config.get("seed", 0)), _solver_name(run)
        color = f"C{solvers.index(solver)}"
        nth = seen[solver] = seen.get(solver, -1) + 1
        style, marker = line_style(nth)
        label = f"{_solver_name(run)}, seed {seed}: {run.name} ({run.device})"
        validated = run.metrics.dropna(subset=["val_accuracy"])
        axes[0].plot(validated["iteration"], 100 * validated["val_accuracy"], color=color, linestyle=style,
                     marker=marker, markersize=3, label=label)
        if "cg_residual_mean" in run.metrics:
            logged = run.metrics.dropna(subset=["cg_residual_mean"])
            axes[1].plot(logged["iteration"], logged["cg_residual_mean"], color=color, linestyle=style, marker=marker,
                         markersize=3, label=label)
    axes[1].axhline(1.0, color="grey", linestyle="-.", linewidth=0.8, label="residual of g = 0")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].set_ylabel("mean relative residual of the meta-gradient system")
    for ax in axes:
        ax.set_xlabel("meta-iterations")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"iMAML-GD, {setting_label(setting)}, the preset at full size: CG (the paper's) against MINRES")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    handles += axes[1].get_legend_handles_labels()[0][-1:]  # the line of g = 0
    labels += axes[1].get_legend_handles_labels()[1][-1:]
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    return fig


def render(results: list[Result]) -> Rendering:
    runs = read_runs(results)
    table = Table("curvature.md", "iMAML's meta-gradient system when it is indefinite: lambda and solver",
                  curvature_table(runs))
    figures = []
    for setting in SETTINGS:
        study = [run for run in runs if run.in_curvature_study and run.setting == setting]
        if study:
            figures.append(Figure(f"curvature-{setting}.png", "iMAML-GD with each lambda and meta-gradient solver, "
                                  f"{setting_label(setting)}",
                                  lambda study=study, setting=setting: plot_curvature(study, setting)))
    for setting in SETTINGS:
        full = [run for run in full_size_imaml_runs(runs) if run.setting == setting and "cg_residual_mean" in run.metrics]
        if full:
            figures.append(Figure(f"curvature-full-size-{setting}.png", "iMAML-GD at full size, the paper's CG "
                                  f"against MINRES, {setting_label(setting)}",
                                  lambda full=full, setting=setting: plot_full_size(full, setting)))
    return Rendering((table,), tuple(figures), index=())  # the runs are listed as training runs
