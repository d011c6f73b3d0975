"""Training runs: Tables 2 and 3 (the paper's accuracy beside ours), every run, Lake's benchmark, validation curves
per setting and the test-accuracy figure."""
from __future__ import annotations

import re

from metagrad.bench.harnesses.harness import Figure, Rendering, Result, Table
from metagrad.bench.plotting import line_style
from metagrad.bench.reporting.paper import OTHER_PAPERS, OTHER_VARIANTS, PAPER_ACCURACY, TABLES
from metagrad.bench.reporting.renderers.common import markdown_table, pyplot
from metagrad.bench.reporting.renderers.runs import (
    TrainingRun,
    read_runs,
    representative_run,
    setting_label,
    settings_of,
    table_runs,
    training_length,
)
from metagrad.bench.training.presets import ALGORITHM_LABELS, SETTINGS, variant_color, variant_label


def accuracy_table(runs: list[TrainingRun], key: str) -> str:
    """The paper's accuracy per cell beside ours, one column group per kind of device (CPU, GPU): each
    group shows its own representative run, so a short GPU run never hides behind a long CPU run."""
    title, settings = TABLES[key]
    groups = (("CPU", False), ("GPU", True))
    header = ["Setting", "Algorithm", "Paper (%)"]
    for group, _ in groups:
        header += [f"{group}: ours (%)", f"{group}: ours − paper", f"{group}: 95% CI (test tasks)", f"{group}: device",
                   f"{group}: training", f"{group}: run"]
    rows, filled = [], {group: 0 for group, _ in groups}
    others = {variant: variant_label(variant) for variant in OTHER_VARIANTS}
    for setting in settings:
        for variant, label in {**ALGORITHM_LABELS, **others}.items():
            paper = PAPER_ACCURACY.get((setting, variant)) or OTHER_PAPERS.get((setting, variant))
            if variant in others and paper is None and not any(representative_run(
                    [r for r in table_runs(runs) if r.on_gpu == gpu], setting, variant) for _, gpu in groups):
                continue  # an algorithm the paper did not run, with neither its own paper's number nor a run here
            if paper is None:
                row = [setting_label(setting), label, "—"]
            else:
                row = [setting_label(setting), label, f"{paper.mean} ± {paper.ci}" if variant in ALGORITHM_LABELS
                       else str(paper)]
            for group, gpu in groups:
                device_runs = [r for r in table_runs(runs) if r.on_gpu == gpu]
                run = representative_run(device_runs, setting, variant)
                if run is None:
                    unevaluated = [r.name for r in device_runs if r.setting == setting and r.variant == variant]
                    note = "not evaluated: " + ", ".join(unevaluated) if unevaluated else "no run"
                    row += ["missing", "—", "—", "—", "—", note]
                    continue
                filled[group] += variant in ALGORITHM_LABELS
                ours = 100 * run.evaluation["accuracy"]
                differences = run.differences
                name = f"`{run.name}`" + (" (" + "; ".join(differences) + ")" if differences else "")
                row += [f"{ours:.2f}", f"{ours - paper.value:+.2f}" if paper else "—",
                        f"± {100 * run.evaluation['ci95']:.2f} ({run.evaluation['tasks']})", run.device,
                        training_length(run), name]
            rows.append(row)
    cells = len(settings) * len(ALGORITHM_LABELS)
    intro = (
        f"# {title}: the paper's accuracy beside ours\n\n"
        f"Of {cells} cells, {filled['CPU']} have an evaluated CPU run of ours and {filled['GPU']} an evaluated GPU "
        "run. \"Paper\" is the value printed in the paper (± its 95% confidence interval); \"ours\" is the mean "
        "test accuracy of our run over a fixed pool of test tasks (`metagrad eval`), with its 95% confidence "
        "half-width. Each device group shows one run per cell: where several exist, the one matching the preset "
        "as it stands today (bench/training/presets.py), then the longest; every run is listed in [runs.md](runs.md). The "
        "paper trained 60,000 meta-iterations; the \"training\" columns give ours: a short run is not a "
        "reproduction. Below the paper's rows, algorithms it did not run: their \"Paper\" column is the number their "
        "own paper printed, where it printed one (named beside it; MAML++'s is for all its parts, of which "
        "metagrad's LSLR is one), not ours and not the iMAML paper's.\n\n"
    )
    return intro + markdown_table(header, rows)


def runs_table(runs: list[TrainingRun]) -> str:
    header = ["Run", "Setting", "Algorithm", "Departs from preset", "Device", "Training", "Best validation (%)",
              "Last validation (%)", "Test (%)", "Support loss after adaptation"]
    rows = []
    for run in runs:
        metrics = run.metrics.dropna(subset=["val_accuracy"]) if len(run.metrics) else run.metrics
        if len(metrics):
            best = metrics.loc[metrics["val_accuracy"].idxmax()]
            last = metrics.iloc[-1]
            best_text = f"{100 * best['val_accuracy']:.2f} (it {int(best['iteration'])})"
            last_text = f"{100 * last['val_accuracy']:.2f} ± {100 * last['val_ci95']:.2f}"
        else:
            best_text = last_text = "—"
        if run.evaluation:
            test = f"{100 * run.evaluation['accuracy']:.2f} ± {100 * run.evaluation['ci95']:.2f}"
            loss = run.evaluation.get("support_loss_after_adaptation")
            loss_text = f"{loss:.3f}" if loss is not None else "—"
        else:
            test, loss_text = "not evaluated", "—"
        label = setting_label(run.setting) if run.setting in SETTINGS else run.setting
        rows.append([f"`{run.name}`", label, variant_label(run.variant),
                     "; ".join(run.differences) or "—", run.device, training_length(run), best_text, last_text, test,
                     loss_text])
    intro = (f"# Training runs\n\n{len(runs)} runs found. Validation accuracy is on a fixed pool of "
             "validation tasks; test accuracy on 600 fixed test tasks unless the run's eval.json says otherwise.\n\n")
    return intro + (markdown_table(header, rows) if rows else "No training runs were found.\n")


def lake_table(runs: list[TrainingRun]) -> str:
    """Runs trained on Lake's split: Lake's 20 one-shot runs and the 600 tasks of his evaluation alphabets."""
    from metagrad.bench.harnesses.lake_runs import PUBLISHED_ERROR

    intro = ("# Lake et al.'s one-shot benchmark\n\nRuns meta-trained on Lake's background alphabets "
             "(`--omniglot-split lake`), scored by `metagrad lake-runs` on his 20 runs of 20-way one-shot "
             "classification (error rate over the runs, 95% interval) and by `metagrad eval` on 600 tasks of the "
             "evaluation alphabets. Published error rates: "
             + ", ".join(f"{who} {100 * rate:.1f}%" for who, rate in PUBLISHED_ERROR.items()) + ".\n\n")
    runs = [run for run in runs if run.config.get("omniglot_split", "random") == "lake"]
    if not runs:
        return intro + "No runs on Lake's split were found.\n"
    rows = [[f"`{run.name}`", variant_label(run.variant),
             f"{100 * run.lake['error_rate']:.1f} ± {100 * run.lake['ci95']:.1f}" if run.lake else "not scored",
             f"{100 * (1 - run.evaluation['accuracy']):.1f} ± {100 * run.evaluation['ci95']:.1f}" if run.evaluation
             else "not evaluated", run.device, training_length(run)] for run in runs]
    return intro + markdown_table(["Run", "Algorithm", "Lake's 20 runs: error (%)",
                                    "600 evaluation-alphabet tasks: error (%)", "Device", "Training"], rows)


def _variant_order(variant: str) -> tuple:
    """The paper's rows first, in their order, then the other variants by name."""
    rows = list(ALGORITHM_LABELS)
    return (rows.index(variant), "") if variant in rows else (len(rows), variant)


def shown_run(runs: list[TrainingRun]) -> TrainingRun:
    """The run a figure draws in full for a group of runs of one variant: the evaluated ones first, then as a table
    cell picks (matching the preset as it stands, then the longest), then by name."""
    return min(runs, key=lambda r: (r.evaluation is None, bool(r.differences), -r.iterations, -r.train_minutes, r.name))


def _integer_or_log_axis(ax, values: list[float]) -> None:
    """A log axis where runs of seconds sit beside runs of hours; else whole-number ticks where the values are
    iterations."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_validation(runs: list[TrainingRun], setting: str):
    """Validation accuracy against meta-iterations and against training time: one run per variant drawn in full
    (``shown_run``, in the variant's colour, its 95% band), the variant's other runs as thin lines of the same colour;
    the paper's test accuracy dotted in that colour. The legend has one entry per variant."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    groups: dict[str, list[TrainingRun]] = {}
    for run in runs:
        if len(run.metrics.dropna(subset=["val_accuracy"])):
            groups.setdefault(run.variant, []).append(run)
    minutes: list[float] = []
    iterations: list[float] = []
    papers = False
    sharing: dict[str, int] = {}  # colour -> variants drawn in it so far: each its own line style and marker
    for variant in sorted(groups, key=_variant_order):
        color, shown = variant_color(variant), shown_run(groups[variant])
        style, marker = line_style(sharing.get(color, 0))
        sharing[color] = sharing.get(color, 0) + 1
        for run in sorted(groups[variant], key=lambda r: r is shown):  # the shown run on top
            metrics = run.metrics.dropna(subset=["val_accuracy"])
            x_time = metrics["train_time_s"] / 60
            minutes += list(x_time)
            iterations += list(metrics["iteration"])
            y = 100 * metrics["val_accuracy"]
            for ax, x in ((axes[0], metrics["iteration"]), (axes[1], x_time)):
                if run is shown:
                    others = len(groups[variant]) - 1
                    label = (f"{variant_label(variant)}: {run.name} ({run.device})"
                             + (f"; thin: {others} other run{'s' if others > 1 else ''}" if others else ""))
                    ax.plot(x, y, color=color, linewidth=2, linestyle=style, marker=marker, markersize=3,
                            label=label if ax is axes[0] else None)
                    band = 100 * metrics["val_ci95"]
                    if len(metrics) > 1:
                        ax.fill_between(x, y - band, y + band, color=color, alpha=0.15)
                    else:  # one validation: its interval as an error bar
                        ax.errorbar(x, y, yerr=band, color=color, capsize=3)
                else:
                    ax.plot(x, y, color=color, linewidth=0.8, linestyle=style, alpha=0.45)
        paper = PAPER_ACCURACY.get((setting, variant))
        if paper:
            papers = True
            for ax in axes:
                ax.axhline(paper.value, color=color, linestyle=":", linewidth=1.2)
    ways = int(re.fullmatch(r".+-(\d+)w\d+s", setting).group(1))
    for ax in axes:
        ax.axhline(100 / ways, color="grey", linestyle="-.", linewidth=0.8)
        ax.grid(True, alpha=0.3)
    _integer_or_log_axis(axes[0], iterations)
    _integer_or_log_axis(axes[1], minutes)
    axes[0].set_xlabel("meta-iterations")
    axes[1].set_xlabel("training time (minutes, wall clock; validation excluded)")
    axes[0].set_ylabel("validation accuracy (%), band: 95% CI")
    fig.suptitle(f"{setting_label(setting)}: validation accuracy during meta-training")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    if papers:
        handles.append(plt.Line2D([], [], color="black", linestyle=":"))
        labels.append("the paper's test accuracy, in the algorithm's colour")
    handles.append(plt.Line2D([], [], color="grey", linestyle="-."))
    labels.append("chance")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    return fig


def plot_test_accuracy(runs: list[TrainingRun]):
    """Per setting with an evaluated run, each variant's test accuracy with its 95% CI (the run each device group of
    Tables 2 and 3 would show), the paper's value marked where it has one; the paper's rows, then every other variant
    with an evaluated run (a plug-in's, a user's data set's)."""
    plt = pyplot()
    evaluated = [run for run in runs if run.evaluation]
    settings = settings_of(evaluated)
    if not settings:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "No evaluated training run yet (metagrad eval RUN)", ha="center", va="center")
        return fig
    rows_of = {}
    for setting in settings:
        paper_rows = list(ALGORITHM_LABELS) if setting in SETTINGS else []
        own = sorted({run.variant for run in evaluated if run.setting == setting} - set(paper_rows), key=_variant_order)
        rows_of[setting] = paper_rows + own
    tallest = max(len(rows) for rows in rows_of.values())
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings) + 1.5, 0.55 * tallest + 2.0),
                             squeeze=False)
    for ax, setting in zip(axes[0], settings):
        rows = rows_of[setting]
        for row, variant in enumerate(rows):
            paper = PAPER_ACCURACY.get((setting, variant))
            if paper:
                ax.errorbar(paper.value, row + 0.2, xerr=paper.half_width, fmt="x", color="black", capsize=3)
            ours = [run for gpu in (False, True)
                    if (run := representative_run([r for r in evaluated if r.on_gpu == gpu], setting, variant))]
            for run in ours:
                accuracy, y = 100 * run.evaluation["accuracy"], row - (0.25 if run.on_gpu else 0.0)
                ax.errorbar(accuracy, y, xerr=100 * run.evaluation["ci95"], fmt="s" if run.on_gpu else "o", capsize=3,
                            color=variant_color(variant), markersize=6, markerfacecolor="white" if run.on_gpu else None)
                ax.annotate(f"{accuracy:.1f}", (accuracy, y), xytext=(0, 5), textcoords="offset points", fontsize=7,
                            ha="center", va="bottom")
            if not ours:
                ax.text(0.03, row, "no run of ours", transform=ax.get_yaxis_transform(), fontsize=8, color="grey",
                        va="center")
        chance = 100 / int(re.fullmatch(r".+-(\d+)w\d+s", setting).group(1))
        ax.axvline(chance, color="grey", linestyle="-.", linewidth=0.8)
        ax.set_xlim(chance - 5, 101)
        ax.set_title(setting_label(setting), fontsize=10)
        ax.set_xlabel("test accuracy (%)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_yticks(range(len(rows)), [variant_label(v) for v in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.6)  # first row on top
    handles = [plt.Line2D([], [], marker="x", color="black", linestyle="", label="paper ± 95% CI"),
               plt.Line2D([], [], marker="o", color="grey", linestyle="", label="ours, CPU ± 95% CI"),
               plt.Line2D([], [], marker="s", color="grey", markerfacecolor="white", linestyle="",
                          label="ours, GPU ± 95% CI"),
               plt.Line2D([], [], color="grey", linestyle="-.", label="chance")]
    fig.suptitle("Few-shot test accuracy: ours (per device, the run Tables 2 and 3 show) against the paper's", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 0.0), frameon=False)
    return fig


def render(results: list[Result]) -> Rendering:
    runs = read_runs(results)
    tables = [Table(f"{key}.md", title + ", paper against ours", accuracy_table(runs, key))
              for key, (title, _) in TABLES.items()]
    tables += [Table("runs.md", "Every training run", runs_table(runs)),
               Table("lake-runs.md", "Lake et al.'s one-shot benchmark: runs on Lake's split", lake_table(runs))]
    figures = []
    for setting in settings_of(table_runs(runs)):
        shown = [run for run in table_runs(runs) if run.setting == setting]
        if shown:
            figures.append(Figure(f"validation-{setting}.png", "Validation accuracy against meta-iterations and "
                                  f"training time, {setting_label(setting)}",
                                  lambda shown=shown, setting=setting: plot_validation(shown, setting)))
    figures.append(Figure("test-accuracy.png", "Test accuracy with 95% CI per algorithm and setting, the paper's "
                          "value marked", lambda: plot_test_accuracy(table_runs(runs))))
    index = tuple(f"- training run: `{run.name}` ({'evaluated' if run.evaluation else 'not evaluated'})" for run in runs)
    return Rendering(tuple(tables), tuple(figures), index or ("- training runs: none",),
                     missing=() if runs else ("accuracy plots (no training runs)",))
