"""`metagrad report`: tables from result files only, missing cells as missing, byte-for-byte
regeneration of the committed tables, and re-runs that never clobber results half-way."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from metagrad.bench.cli import main
from metagrad.bench.cli import rerun as regenerate_module
from metagrad.bench.cli.rerun import Experiment, exact_solve, regenerate
from metagrad.bench.harnesses.exact_solve import ExactSolveConfig, variants
from metagrad.bench.harnesses.registry import harness
from metagrad.bench.reporting.paper import PAPER_ACCURACY
from metagrad.bench.reporting.renderers.runs import read_runs, representative_run
from metagrad.bench.reporting.report import discover, render_report
from metagrad.bench.training.presets import preset

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "tests" / "fixtures" / "paper-tables.md"  # the paper's Tables 2 and 3, transcribed apart from paper.py


def _notes() -> str:
    return NOTES.read_text()


def test_paper_numbers_are_those_of_the_notes():
    text = _notes()
    rows = {"MAML": "maml", "first-order MAML": "fomaml", "Reptile": "reptile", "iMAML, GD": "imaml-gd",
            "iMAML, Hessian-free": "imaml-hf"}
    settings = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s")
    for label, variant in rows.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")[1:]]
        for setting, cell in zip(settings, cells, strict=True):
            paper = PAPER_ACCURACY[(setting, variant)]
            assert f"{paper.mean} ± {paper.ci}" == cell, (setting, variant)
    table3 = next(line for line in text.splitlines() if line.startswith("Table 3"))
    printed = re.findall(r"(\d+\.\d+) ± (\d+\.\d+)", table3)
    ours = [PAPER_ACCURACY[("mini-imagenet-5w1s", v)] for v in rows.values()]
    assert printed == [(p.mean, p.ci) for p in ours]


@pytest.mark.slow
def test_committed_tables_and_index_regenerate_byte_for_byte(tmp_path):
    (tmp_path / "notes").mkdir()  # as beside the committed report: the index links it
    render_report([ROOT / "reports"], tmp_path)
    committed = sorted(p.relative_to(ROOT / "reports") for p in (ROOT / "reports" / "tables").glob("*.md"))
    assert committed, "reports/tables is not committed"
    regenerated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "tables").glob("*.md"))
    assert regenerated == committed
    for relative in [*committed, Path("index.md")]:
        assert (tmp_path / relative).read_bytes() == (ROOT / "reports" / relative).read_bytes(), relative
    assert {p.name for p in (tmp_path / "figures").glob("*.png")} == \
        {p.name for p in (ROOT / "reports" / "figures").glob("*.png")}


def _fake_run(folder: Path, preset_name: str, accuracy: float | None, iterations: int = 40,
              **hyperparameters) -> None:
    """A run folder as `metagrad train` and `metagrad eval` write it, with known numbers."""
    config = preset(preset_name)
    config["hyperparameters"] = {**config["hyperparameters"], **hyperparameters}
    config.update(device="cpu", filters=None, seed=0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": config, "device_name": "Test CPU", "threads": 2}))
    pd.DataFrame({"iteration": [iterations // 2, iterations], "train_time_s": [30.0, 60.0],
                  "val_accuracy": [0.4, 0.45], "val_ci95": [0.02, 0.02]}).to_csv(folder / "metrics.csv", index=False)
    if accuracy is not None:
        (folder / "eval.json").write_text(json.dumps({
            "accuracy": accuracy, "ci95": 0.01, "tasks": 600, "split": "test", "iteration": iterations,
            "train_time_s": 60.0, "threads": 2}))


def _row(table: str, setting: str, algorithm: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [setting, algorithm]:
            return cells
    raise AssertionError(f"no row {setting} / {algorithm}")


@pytest.mark.slow
def test_numbers_come_from_the_result_files_and_missing_cells_say_so(tmp_path):
    results = tmp_path / "results"
    _fake_run(results / "a", "omniglot-20w5s-maml", accuracy=0.5)
    _fake_run(results / "b", "mini-imagenet-5w1s-reptile", accuracy=None)  # trained, never evaluated
    render_report([results], tmp_path / "out")
    table2 = (tmp_path / "out" / "tables" / "table2-omniglot.md").read_text()
    assert "Of 20 cells, 1 have an evaluated CPU run of ours and 0 an evaluated GPU run" in table2
    no_run = ["missing", "—", "—", "—", "—", "no run"]
    assert _row(table2, "Omniglot 20-way 5-shot", "MAML") == [
        "Omniglot 20-way 5-shot", "MAML", "98.9 ± 0.2", "50.00", "-48.90", "± 1.00 (600)", "Test CPU (2 threads)",
        "40 of 60,000 it, 1.0 min", "`a`", *no_run]
    assert _row(table2, "Omniglot 5-way 1-shot", "Reptile")[3:] == no_run + no_run
    table3 = (tmp_path / "out" / "tables" / "table3-mini-imagenet.md").read_text()
    assert "Of 5 cells, 0 have" in table3
    assert _row(table3, "Mini-ImageNet 5-way 1-shot", "Reptile")[3] == "missing"
    assert _row(table3, "Mini-ImageNet 5-way 1-shot", "Reptile")[8] == "not evaluated: b"
    index = (tmp_path / "out" / "index.md").read_text()
    assert "Figure 2a (no exact_solve.csv)" in index and "Figure 2b (no profile.csv)" in index
    assert (tmp_path / "out" / "figures" / "test-accuracy.png").stat().st_size > 0
    assert (tmp_path / "out" / "figures" / "validation-omniglot-20w5s.png").is_file()


def test_algorithms_the_paper_did_not_run_show_their_own_papers_numbers_and_learned_values(tmp_path):
    """Meta-SGD and MAML++'s LSLR below the paper's rows, with the number their own paper printed (named), where
    there is one or a run of ours; a run's meta_parameters.json in the learned-values table and figure."""
    results = tmp_path / "results"
    _fake_run(results / "m", "omniglot-5w1s-meta-sgd", accuracy=0.9)
    (results / "m" / "meta_parameters.json").write_text(json.dumps({
        "iteration": 40, "groups": {"step_sizes": [{"label": "features.0.weight", "mean": 0.5, "min": 0.3,
                                                    "max": 0.7, "count": 576}]},
        "initial": {"step_sizes": [{"label": "features.0.weight", "mean": 0.4, "min": 0.4, "max": 0.4,
                                    "count": 576}]}}))
    render_report([results], tmp_path / "out")
    table2 = (tmp_path / "out" / "tables" / "table2-omniglot.md").read_text()
    assert _row(table2, "Omniglot 5-way 1-shot", "Meta-SGD")[2:5] == [
        "99.53 ± 0.26 (Li et al. 2017, Meta-SGD)", "90.00", "-9.53"]
    assert _row(table2, "Omniglot 5-way 1-shot", "MAML++ LSLR")[2:4] == [
        "99.47 (Antoniou et al. 2019, MAML++ whole, not LSLR alone)", "missing"]
    assert "Of 20 cells, 0 have an evaluated CPU run" in table2  # the paper's cells alone
    with pytest.raises(AssertionError, match="no row"):  # neither a published number nor a run
        _row(table2, "Omniglot 20-way 5-shot", "Meta-SGD")
    table3 = (tmp_path / "out" / "tables" / "table3-mini-imagenet.md").read_text()
    assert _row(table3, "Mini-ImageNet 5-way 1-shot", "Meta-SGD")[2:4] == ["50.47 ± 1.87 (Li et al. 2017, Meta-SGD)",
                                                                           "missing"]
    learned = (tmp_path / "out" / "tables" / "learned-meta-parameters.md").read_text()
    assert "| `m` | step_sizes | features.0.weight | 576 | 0.4 | 0.5 | 0.3 to 0.7 |" in learned
    assert (tmp_path / "out" / "figures" / "learned-meta-parameters.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_gpu_run_has_its_own_column_group_beside_a_longer_cpu_run(tmp_path):
    results = tmp_path / "results"
    _fake_run(results / "cpu", "omniglot-5w1s-maml", accuracy=0.95, iterations=900)
    _fake_run(results / "gpu", "omniglot-5w1s-maml", accuracy=0.987, iterations=60000)
    _fake_run(results / "short-gpu", "omniglot-5w1s-maml", accuracy=0.9, iterations=100)
    for name in ("gpu", "short-gpu"):
        saved = json.loads((results / name / "config.json").read_text())
        saved["config"]["device"], saved["device_name"] = "cuda", "NVIDIA H200"
        (results / name / "config.json").write_text(json.dumps(saved))
    render_report([results], tmp_path / "out")
    table2 = (tmp_path / "out" / "tables" / "table2-omniglot.md").read_text()
    assert "Of 20 cells, 1 have an evaluated CPU run of ours and 1 an evaluated GPU run" in table2
    row = _row(table2, "Omniglot 5-way 1-shot", "MAML")
    assert row[3:9] == ["95.00", "-3.70", "± 1.00 (600)", "Test CPU (2 threads)", "900 of 60,000 it, 1.0 min", "`cpu`"]
    assert row[9:] == ["98.70", "+0.00", "± 1.00 (600)", "NVIDIA H200", "60,000 of 60,000 it, 1.0 min", "`gpu`"]


def test_a_cell_shows_the_run_matching_the_preset_then_the_longest(tmp_path):
    _fake_run(tmp_path / "long-but-off-preset", "omniglot-5w1s-imaml-gd", 0.9, iterations=500, inner_lr=0.1)
    _fake_run(tmp_path / "short", "omniglot-5w1s-imaml-gd", 0.6, iterations=40)
    _fake_run(tmp_path / "longer", "omniglot-5w1s-imaml-gd", 0.7, iterations=80)
    runs = read_runs(discover([tmp_path], [harness("train")])["train"])
    assert representative_run(runs, "omniglot-5w1s", "imaml-gd").name == "longer"
    off = next(r for r in runs if r.name == "long-but-off-preset")
    assert off.differences == ["inner_lr 0.1 (preset 0.03)"]
    assert representative_run(runs, "omniglot-5w1s", "maml") is None


@pytest.mark.slow
def test_stale_report_files_are_removed_and_results_are_not(tmp_path):
    _fake_run(tmp_path / "run", "omniglot-5w1s-maml", 0.5)
    render_report([tmp_path], tmp_path)
    assert (tmp_path / "figures" / "validation-omniglot-5w1s.png").is_file()
    (tmp_path / "run" / "eval.json").unlink()
    (tmp_path / "run" / "metrics.csv").unlink()  # no longer a run: its validation figure must go
    render_report([tmp_path], tmp_path)
    assert not (tmp_path / "figures" / "validation-omniglot-5w1s.png").exists()
    assert (tmp_path / "run" / "config.json").is_file()


@pytest.mark.slow
def test_report_cli_rejects_bad_input_in_one_line(tmp_path):
    command = [sys.executable, "-m", "metagrad", "report", "--out", str(tmp_path / "out"),
               "--results", str(tmp_path / "nowhere")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such folder" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_report_written_to_a_new_folder_has_every_link_resolve(tmp_path, capsys):
    """--out may be a new folder when --results names where the results are; every link of its index resolves
    there (the notes are linked only where a notes/ folder lies beside the report)."""
    _fake_run(tmp_path / "results" / "run", "omniglot-5w1s-maml", 0.5)
    assert main(["report", "--out", str(tmp_path / "new"), "--results", str(tmp_path / "results"), "--no-progress"]) == 0
    links = re.findall(r"\]\(([^)]+)\)", (tmp_path / "new" / "index.md").read_text())
    assert links and all((tmp_path / "new" / link).exists() for link in links) and "notes/" not in links
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "missing")]) == 2
    assert "give --results DIR" in capsys.readouterr().err and not (tmp_path / "missing").exists()


def test_rerun_refuses_to_replace_results_without_overwrite(tmp_path, capsys):
    (tmp_path / "exact-solve").mkdir()
    assert main(["report", "--out", str(tmp_path), "--quick"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "index.md").exists()


def test_rerun_replaces_a_result_only_when_its_commands_finished(tmp_path, monkeypatch):
    target = tmp_path / "exact-solve"
    target.mkdir()
    (target / "earlier.txt").write_text("earlier result")
    failing = Experiment("exact-solve", (exact_solve(inner_steps=(1,), seeds=1, tasks=1), exact_solve(tasks=0)))
    monkeypatch.setattr(regenerate_module, "QUICK", (failing,))
    monkeypatch.setattr(regenerate_module, "plugin_experiments", lambda quick: ())
    with pytest.raises(Exception, match="earlier results"):
        regenerate(tmp_path, quick=True, overwrite=True, progress=False)
    assert (target / "earlier.txt").read_text() == "earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exact-solve"]  # no half-done folder left

    tiny = Experiment("exact-solve", (exact_solve(inner_steps=(1, 2), seeds=1, tasks=1),))
    monkeypatch.setattr(regenerate_module, "QUICK", (tiny,))
    assert regenerate(tmp_path, quick=True, overwrite=True, progress=False) == [target]
    assert sorted(p.name for p in target.iterdir()) == ["exact_solve.csv", "exact_solve.png"]
    # 2 step counts x (each registered algorithm, those with a linear system at 3 CG budgets, a learned lambda's
    # gradient besides), one seed
    swept = ExactSolveConfig()
    assert len(pd.read_csv(target / "exact_solve.csv")) == 2 * len(variants(swept.swept, swept.cg_steps))


@pytest.mark.slow
def test_the_curvature_study_has_its_own_table_and_never_fills_a_cell_of_table_2(tmp_path):
    study = tmp_path / "cpu-curvature" / "omniglot-20w5s-lam0.5-minres"
    _fake_run(study, "omniglot-20w5s-imaml-gd", 0.8, lam=0.5, meta_solver="minres")
    metrics = pd.DataFrame({"iteration": [10, 20, 30, 40], "train_time_s": [1.0, 2.0, 3.0, 4.0],
                            "val_accuracy": [0.4, 0.5, 0.45, 0.6], "val_ci95": 0.02,
                            "cg_negative_curvature_fraction": [0.0, 0.2, 0.6, 0.4], "cg_residual_mean": 0.5})
    metrics.to_csv(study / "metrics.csv", index=False)
    pd.DataFrame({"indefinite": [True, False]}).to_csv(study / "spectrum-init.csv", index=False)
    pd.DataFrame({"indefinite": [True, True]}).to_csv(study / "spectrum.csv", index=False)
    render_report([tmp_path], tmp_path / "out")
    table2 = (tmp_path / "out" / "tables" / "table2-omniglot.md").read_text()
    assert _row(table2, "Omniglot 20-way 5-shot", "iMAML, GD")[3] == "missing"
    curvature = (tmp_path / "out" / "tables" / "curvature.md").read_text()
    row = next(line for line in curvature.splitlines() if "omniglot-20w5s-lam0.5-minres" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # lambda, solver, iterations, indefinite over the run and its last quarter (iteration > 30), the
    # spectrum's share at the start and the end, one dip (40 -> 45 at iteration 30) whose window was 0.6
    # indefinite against 0.2 and 0.4 for the rising windows, best and last validation, test accuracy
    assert cells[1:11] == ["0.5", "minres", "40", "0.30", "0.40", "0.5", "1/2 → 2/2", "1: 0.60 / 0.30", "60.0 (it 40)",
                           "60.0"]
    assert cells[11] == "80.00 ± 1.00"
    assert (tmp_path / "out" / "figures" / "curvature-omniglot-20w5s.png").stat().st_size > 0


@pytest.mark.slow
def test_full_size_runs_of_both_solvers_are_compared_by_seed_and_residual(tmp_path):
    """The curvature table's second part lists the iMAML-GD preset runs as they stand, CG and MINRES, with
    their seeds and how many logged windows' residual was above 1; a study run (its spectra recorded) and a reduced
    run are not in it."""
    for name, preset_name, seed in (("cg", "omniglot-5w1s-imaml-gd", 0), ("minres", "omniglot-5w1s-imaml-gd-minres", 3),
                                    ("reduced", "omniglot-5w1s-imaml-gd", 0), ("study", "omniglot-5w1s-imaml-gd", 0)):
        folder = tmp_path / ("cpu-curvature" if name == "study" else "cpu-training") / name
        _fake_run(folder, preset_name, 0.9 if name == "minres" else None)
        saved = json.loads((folder / "config.json").read_text())
        saved["config"].update(seed=seed, filters=8 if name == "reduced" else None)
        (folder / "config.json").write_text(json.dumps(saved))
        pd.DataFrame({"iteration": [10, 20, 30], "train_time_s": [1.0, 2.0, 3.0], "val_accuracy": [0.5, 0.7, 0.6],
                      "val_ci95": 0.02, "cg_negative_curvature_fraction": [0.1, 0.0, 0.2],
                      "cg_residual_mean": [2.0, 0.5, 1.5] if name == "cg" else [0.3, 0.1, 0.05]}
                     ).to_csv(folder / "metrics.csv", index=False)
        if name == "study":  # the study's runs recorded their system's spectrum at the start and the end
            for spectrum in ("spectrum-init.csv", "spectrum.csv"):
                pd.DataFrame({"indefinite": [True]}).to_csv(folder / spectrum, index=False)
    render_report([tmp_path], tmp_path / "out")
    curvature = (tmp_path / "out" / "tables" / "curvature.md").read_text()
    full_size = curvature[curvature.index("## The presets at full size"):]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in full_size.splitlines()
            if line.startswith("| omniglot")]
    # setting, solver, seed, device, training, indefinite, residual mean, windows above 1, one dip (70 -> 60
    # at iteration 30) and its window's residual against the one rising window's, best and last validation,
    # test, run
    assert [row[:3] + row[5:] for row in rows] == [
        ["omniglot-5w1s", "cg", "0", "0.100", "1.33", "2 of 3", "1: 1.5 / 0.5", "70.0 (it 20)", "60.0",
         "not evaluated", "`cpu-training/cg`"],
        ["omniglot-5w1s", "minres", "3", "0.100", "0.15", "0 of 3", "1: 0.05 / 0.1", "70.0 (it 20)", "60.0",
         "90.00 ± 1.00", "`cpu-training/minres`"]]
    assert (tmp_path / "out" / "figures" / "curvature-full-size-omniglot-5w1s.png").stat().st_size > 0


@pytest.mark.parametrize("quick", [True, False])
def test_every_rerun_experiment_builds_valid_configurations(tmp_path, monkeypatch, quick):
    """`--rerun` and `--quick` hand each harness a configuration it accepts, and each step's command
    line names the same settings (the harnesses themselves are replaced by recorders here, each stopping its
    command once it has seen the configuration)."""
    import metagrad.bench.harnesses.complexity
    import metagrad.bench.harnesses.exact_solve
    import metagrad.bench.harnesses.lake_runs
    import metagrad.bench.harnesses.profile
    import metagrad.bench.harnesses.spectrum
    import metagrad.bench.harnesses.throughput
    import metagrad.bench.training.evaluation
    import metagrad.bench.training.run_folder
    import metagrad.bench.training.trainer

    seen: list[tuple[str, object]] = []

    class Recorded(Exception):
        """Raised by a recorder once it has seen its configuration: the command stops there."""

    def recorder(kind: str):
        def record(config, folder, *args, **kwargs):
            if kind == "train":  # what a resume reads
                folder.mkdir(parents=True, exist_ok=True)
                metagrad.bench.training.run_folder.Run(folder).write_config(config, {"threads": 1})
            seen.append((kind, config))
            raise Recorded
        return record

    monkeypatch.setattr(metagrad.bench.harnesses.exact_solve, "write_exact_solve", recorder("exact-solve"))
    monkeypatch.setattr(metagrad.bench.harnesses.profile, "write_profile", recorder("profile"))
    monkeypatch.setattr(metagrad.bench.harnesses.complexity, "write_complexity", recorder("complexity"))
    monkeypatch.setattr(metagrad.bench.harnesses.throughput, "write_throughput", recorder("throughput"))
    monkeypatch.setattr(metagrad.bench.training.trainer, "train", recorder("train"))
    monkeypatch.setattr(metagrad.bench.training.evaluation, "evaluate_run",
                        lambda folder, evaluation, **kwargs: recorder("eval")(evaluation, folder))
    monkeypatch.setattr(metagrad.bench.harnesses.lake_runs, "lake_runs",
                        lambda folder, **kwargs: recorder("lake-runs")(kwargs, folder))
    monkeypatch.setattr(metagrad.bench.harnesses.spectrum, "write_spectrum",
                        lambda folder, config, *args, **kwargs: recorder("spectrum")(config, folder))
    experiments = regenerate_module.QUICK if quick else regenerate_module.FULL
    options = regenerate_module.Options(progress=False)
    for experiment in experiments:  # each step's words, through the command line as a re-run runs them
        folder, scratch = tmp_path / experiment.folder, tmp_path / "scratch" / experiment.folder
        for step in experiment.steps:
            with pytest.raises(Recorded):
                main(step.resolved(folder, scratch, options))
    commands = [step.command for experiment in experiments for step in experiment.steps]
    assert [kind for kind, _ in seen] == [command.split()[1] for command in commands]
    for (kind, config), command in zip(seen, commands):
        if kind == "train" and "--resume" in command:  # the run's own config, these limits raised
            for key, value in re.findall(r"--(iterations|max-minutes) (\S+)", command):
                assert float(getattr(config, key.replace("-", "_"))) == float(value), command
            continue
        if kind == "train":
            assert f"--preset {config.preset}" in command
            for key, value in config.hyperparameters.items():
                if f"--set {key}=" in command:
                    assert f"--set {key}={value}" in command
            if "--filters" in command:
                assert f"--filters {config.filters}" in command
            if "--iterations" in command:
                assert f"--iterations {config.iterations}" in command
            # a second seed's run keeps its own seed; every other run the re-run's (0 here)
            seed = re.search(r"--seed (\d+)", command)
            assert config.seed == (int(seed.group(1)) if seed else 0), command
        if kind in ("eval", "exact-solve"):  # a flag left out keeps its dataclass's default, and only then
            tasks = re.search(r"--tasks (\d+)", command)
            field = "tasks" if kind == "eval" else "tasks_per_seed"
            assert getattr(config, field) == (int(tasks.group(1)) if tasks else getattr(type(config)(), field))
        if kind == "exact-solve":
            seeds = re.search(r"--seeds (\d+)", command)
            assert config.seeds == (int(seeds.group(1)) if seeds else type(config)().seeds), command
        if kind == "spectrum":
            assert ("--next-meta-batch" in command) == config.next_meta_batch
            assert ("--at-init" in command) == config.at_init
            assert config.hyperparameters == {key: json.loads(value) if value[0].isdigit() else value
                                              for key, value in re.findall(r"--set (\w+)=(\S+)", command)}, command


def test_a_run_on_lakes_split_is_in_the_lake_table_and_not_in_table_2(tmp_path):
    run = tmp_path / "lake-run"
    _fake_run(run, "omniglot-20w1s-maml", 0.9)
    saved = json.loads((run / "config.json").read_text())
    saved["config"]["omniglot_split"] = "lake"
    (run / "config.json").write_text(json.dumps(saved))
    (run / "lake_runs.json").write_text(json.dumps({"error_rate": 0.25, "ci95": 0.05, "runs": []}))
    render_report([tmp_path], tmp_path / "out")
    table2 = (tmp_path / "out" / "tables" / "table2-omniglot.md").read_text()
    assert _row(table2, "Omniglot 20-way 1-shot", "MAML")[3] == "missing"
    lake = (tmp_path / "out" / "tables" / "lake-runs.md").read_text()
    row = next(line for line in lake.splitlines() if "`lake-run`" in line)
    assert [c.strip() for c in row.strip("|").split("|")][1:4] == ["MAML", "25.0 ± 5.0", "10.0 ± 1.0"]


def test_a_batched_only_throughput_result_takes_its_ratio_from_the_same_devices_per_task_row():
    """tools/gpu_checks.py measures the engines in separate runs: the ratio comes from the other result's per-task
    row of the same device and preset (marked *), never from another device's, and a comparison the run
    skipped (--check-tasks 0), or operations a result predates, show as a dash, not nan."""
    from metagrad.bench.harnesses.throughput import COLUMNS
    from metagrad.bench.reporting.renderers.throughput import throughput_table

    def frame(engine: str, device_name: str, tasks_per_s: float, check: float, operations: float = float("nan")):
        row = dict.fromkeys(COLUMNS, float("nan"))
        row.update(preset="omniglot-5w1s-maml", algorithm="maml", engine=engine, device="cuda", meta_batch=32,
                   device_name=device_name, tasks_per_s=tasks_per_s, cuda_graph=engine == "batched",
                   compiled=False, sampler="device", threads=16, max_rel_diff_vs_per_task=check,
                   max_rel_diff_float32=check, operations_per_meta_batch=operations)
        return pd.DataFrame([row], columns=COLUMNS)

    results = [("per-task", frame("per-task", "GPU A", 50.0, float("nan"))),
               ("graph", frame("batched", "GPU A", 3000.0, float("nan"))),
               ("other", frame("batched", "GPU B", 4000.0, 1e-15, 1234.0))]
    rows = {line.split(" | ")[0].strip("|` "): line.split(" | ") for line in throughput_table(results).splitlines()
            if line.startswith("| `")}
    assert rows["graph"][6] == "60.0*" and rows["graph"][7:9] == ["—", "—"] and rows["graph"][11:] == ["—", "— |"]
    assert rows["other"][6] == "—" and rows["other"][8] == "1,234" and rows["other"][11] == "1.0e-15"
    assert rows["per-task"][4] == "50"


def test_a_task_by_task_batched_row_is_said_so_and_has_no_speed_up():
    """A plug-in without a batched engine of its own runs its per-task engine in the batched row: the same code, so
    its ratio to the per-task row is no speed-up, and the table says why instead."""
    from metagrad.bench.harnesses.throughput import COLUMNS
    from metagrad.bench.reporting.renderers.throughput import throughput_table

    rows = []
    for engine, tasks_per_s in (("per-task", 10.0), ("batched", 10.4)):
        row = dict.fromkeys(COLUMNS, float("nan"))
        row.update(preset="omniglot-5w1s-anil", algorithm="anil", engine=engine, device="cpu", meta_batch=32,
                   device_name="CPU", tasks_per_s=tasks_per_s, threads=2, task_by_task=engine == "batched")
        rows.append(row)
    table = throughput_table([("plug-in", pd.DataFrame(rows, columns=COLUMNS))])
    row = next(line for line in table.splitlines() if line.startswith("| `plug-in`")).split(" | ")
    assert row[6] == "— (task by task)"


@pytest.mark.slow
def test_a_damaged_result_is_skipped_with_one_warning_naming_it_and_the_rest_rendered(tmp_path):
    """Issue 41's damaged result files: a CSV without a column it needs, text in a number column, a config.json
    missing fields. Each is left out with one warning line naming its folder; the readable results are rendered."""
    import shutil

    results = tmp_path / "results"
    run = ROOT / "reports" / "gpu-h200" / "train-omniglot-5w1s-imaml-gd"
    shutil.copytree(ROOT / "reports" / "exact-solve", results / "solve-good")
    shutil.copytree(ROOT / "reports" / "exact-solve", results / "solve-no-label")
    for name in ("run-good", "run-text-in-metrics", "run-config-missing-fields"):
        shutil.copytree(run, results / name)
    frame = pd.read_csv(results / "solve-no-label" / "exact_solve.csv")
    frame.drop(columns=["label"]).to_csv(results / "solve-no-label" / "exact_solve.csv", index=False)
    metrics = pd.read_csv(results / "run-text-in-metrics" / "metrics.csv").astype({"train_time_s": str})
    metrics.loc[0, "train_time_s"] = "eleven"
    metrics.to_csv(results / "run-text-in-metrics" / "metrics.csv", index=False)
    saved = json.loads((results / "run-config-missing-fields" / "config.json").read_text())
    del saved["config"]["dataset"], saved["config"]["algorithm"]
    (results / "run-config-missing-fields" / "config.json").write_text(json.dumps(saved))
    before = {path: path.read_bytes() for path in results.rglob("*") if path.is_file()}

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "metagrad", "report", "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(warnings) == 3 and all(line.startswith("metagrad report: warning: skipped ") for line in warnings)
    for name in ("solve-no-label", "run-text-in-metrics", "run-config-missing-fields"):
        assert sum(str(results / name) in line for line in warnings) == 1, (name, warnings)
    assert (out / "figures" / "fig2a-solve-good.png").is_file() and not (out / "figures" / "fig2a-solve-no-label.png").exists()
    runs = (out / "tables" / "runs.md").read_text()
    assert "`run-good`" in runs and "run-text-in-metrics" not in runs and "run-config-missing-fields" not in runs
    assert {path: path.read_bytes() for path in results.rglob("*") if path.is_file()} == before  # only read
    assert not [path for path in out.rglob(".*.tmp")]
