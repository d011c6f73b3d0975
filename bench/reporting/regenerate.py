"""Re-run every experiment behind reports/ on this machine: the commands of the README and reports/notes/, or small versions.

An experiment is a list of harness calls sharing one result folder, each built from the harness's own
configuration (``ExactSolveConfig``, ``ProfileConfig``, ``TrainConfig``, ...) and shown as the
``metagrad`` command line it equals. It runs in a temporary folder beside its target and replaces the
target only when all its steps have finished, so an interrupted or failed re-run leaves the earlier
results in place.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from algorithms.registry import ConfigError
from bench.options import command_line


@dataclass(frozen=True)
class Options:
    """What every experiment of one re-run shares: the command line's --seed, --device, --data-root."""

    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class Step:
    """One harness call. ``run`` imports its harness when it runs: nothing heavy at import, and the
    harness functions are looked up by name (which tests rely on to replace them)."""

    command: str  # the `metagrad` command line it equals (or lines, joined by " && "); "{dir}" is the result folder
    run: Callable[[Path, Options], Any]
    threads: int | None = None  # torch threads while it runs (the command's --threads)


@dataclass(frozen=True)
class Experiment:
    folder: str  # relative to OUT
    steps: tuple[Step, ...]
    devices: tuple[str, ...] = ("cpu", "cuda")  # where --device may send it


def _flags(**options: Any) -> str:
    """``--name value`` for each option, as the command line spells it."""
    parts = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, tuple):
            parts.append(f"{flag} {','.join(str(v) for v in value)}")
        elif value is not None and value is not False:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def exact_solve(inner_steps: tuple[int, ...] | None = None, seeds: int | None = None, tasks: int | None = None,
                distinct_eigenvalues: int = 0, algorithms: tuple[str, ...] | None = None) -> Step:
    """``metagrad exact-solve``; a setting left None keeps ExactSolveConfig's default (and its flag out)."""
    def run(folder: Path, options: Options):
        from bench.data.linear_regression import LinearRegressionConfig
        from bench.harnesses.exact_solve import ExactSolveConfig, write_exact_solve

        defaults = ExactSolveConfig()
        config = replace(defaults, task=LinearRegressionConfig(distinct_eigenvalues=distinct_eigenvalues),
                         inner_steps=inner_steps or defaults.inner_steps, seed=options.seed,
                         seeds=defaults.seeds if seeds is None else seeds,
                         tasks_per_seed=defaults.tasks_per_seed if tasks is None else tasks, algorithms=algorithms)
        return write_exact_solve(config, folder, progress=options.progress)

    flags = _flags(inner_steps=inner_steps, seeds=seeds, tasks=tasks, distinct_eigenvalues=distinct_eigenvalues or None,
                   algorithms=algorithms)
    return Step(f"metagrad exact-solve --out {{dir}} {flags}".rstrip(), run)


def profile(**settings: Any) -> Step:
    """``settings``: ProfileConfig fields."""
    def run(folder: Path, options: Options):
        from bench.harnesses.profile import ProfileConfig, write_profile

        config = ProfileConfig(**settings, seed=options.seed, device=options.device, data_root=options.data_root)
        return write_profile(config, folder, progress=options.progress)

    from bench.harnesses.profile import ProfileConfig

    return Step(f"metagrad profile --out {{dir}} {command_line(ProfileConfig, **settings)}".rstrip(), run)


def throughput(threads: int | None = None, **settings: Any) -> Step:
    """``settings``: ThroughputConfig fields."""
    def run(folder: Path, options: Options):
        from bench.harnesses.throughput import ThroughputConfig, write_throughput

        config = ThroughputConfig(**settings, seed=options.seed, device=options.device, data_root=options.data_root)
        return write_throughput(config, folder, progress=options.progress)

    return Step(f"metagrad throughput --out {{dir}} {_flags(threads=threads, **settings)}".rstrip(), run, threads)


def complexity(threads: int | None = None, **settings: Any) -> Step:
    """``settings``: ComplexityConfig fields."""
    def run(folder: Path, options: Options):
        from bench.harnesses.complexity import ComplexityConfig, write_complexity

        return write_complexity(ComplexityConfig(**settings, seed=options.seed), folder, progress=options.progress)

    return Step(f"metagrad complexity --out {{dir}} {_flags(**settings, threads=threads)}".rstrip(), run, threads)


def training(preset: str, hyperparameters: dict[str, Any] | None = None, threads: int | None = None,
             **fields: Any) -> Step:
    """``fields``: TrainConfig fields laid over the preset, as ``metagrad train``'s options are; a ``seed`` among
    them (a second seed's run) wins over the re-run's."""
    def run(folder: Path, options: Options):
        from bench.training.config import train_config
        from bench.training.trainer import train

        config = train_config(preset, hyperparameters, device=options.device, data_root=options.data_root,
                              **{"seed": options.seed, **fields})
        return train(config, folder, progress=options.progress)

    sets = " ".join(f"--set {key}={value}" for key, value in (hyperparameters or {}).items())
    flags = " ".join(part for part in (sets, _flags(**fields, threads=threads)) if part)
    return Step(f"metagrad train --preset {preset} --out {{dir}} {flags}".rstrip(), run, threads)


def resumption(threads: int | None = None, **limits: Any) -> Step:
    """``metagrad train --resume``: the run in the folder continued with its own settings, ``limits``
    (``iterations``, ``max_minutes``) raised."""
    def run(folder: Path, options: Options):
        from bench.training.run_folder import resume_config
        from bench.training.trainer import train

        return train(resume_config(folder, **limits), folder, resume=True, progress=options.progress)

    return Step(f"metagrad train --out {{dir}} --resume {_flags(**limits, threads=threads)}".rstrip(), run, threads)


def evaluation(tasks: int | None = None, threads: int | None = None) -> Step:
    """``metagrad eval`` of the run in the step's folder; ``tasks`` None: EvalConfig's default."""
    def run(folder: Path, options: Options):
        from bench.training.config import EvalConfig
        from bench.training.evaluation import evaluate_run

        return evaluate_run(folder, EvalConfig() if tasks is None else EvalConfig(tasks=tasks), progress=options.progress)

    return Step(f"metagrad eval {{dir}} {_flags(tasks=tasks, threads=threads)}".rstrip(),
                run, threads)


def lake_runs(threads: int | None = None) -> Step:
    def run(folder: Path, options: Options):
        from bench.harnesses.lake_runs import lake_runs

        return lake_runs(folder)

    return Step(f"metagrad lake-runs {{dir}} {_flags(threads=threads)}".rstrip(), run, threads)


def spectrum(at_init: bool = False, threads: int | None = None, **settings: Any) -> Step:
    """``settings``: SpectrumConfig fields."""
    def run(folder: Path, options: Options):
        from bench.harnesses.spectrum import SpectrumConfig, write_spectrum

        return write_spectrum(folder, SpectrumConfig(at_init=at_init, **settings), progress=options.progress)

    return Step(f"metagrad spectrum {{dir}} {_flags(at_init=at_init, **settings, threads=threads)}".rstrip(), run,
                threads)


def one_step_spectra(preset: str, iteration: int, solves: dict[str, dict[str, Any]], threads: int | None = None,
                     **fields: Any) -> Step:
    """The systems of training iteration ``iteration``'s meta-batch, task by task, solved as the run does and with
    the hyperparameter changes of each of ``solves`` (name -> changes): the run is trained to the iteration
    before (``fields`` as ``training``'s) in a scratch folder, which is not a result; only the spectra,
    ``spectrum-NAME.csv``, are kept."""
    train_step = training(preset, None, threads, iterations=iteration - 1, **fields)

    def run(folder: Path, options: Options):
        import tempfile

        from bench.harnesses.spectrum import SpectrumConfig, write_spectrum

        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".scratch-", dir=folder) as scratch:
            trained = Path(scratch) / "run"
            train_step.run(trained, options)
            for name, changes in solves.items():
                write_spectrum(trained, SpectrumConfig(next_meta_batch=True, hyperparameters=changes),
                               folder / f"spectrum-{name}.csv", progress=options.progress)

    spectra = " && ".join(
        " ".join(["metagrad spectrum RUN --next-meta-batch", *(f"--set {key}={value}" for key, value in changes.items()),
                  f"--out {{dir}}/spectrum-{name}.csv", _flags(threads=threads)]).rstrip()
        for name, changes in solves.items())
    return Step(f"{train_step.command.replace('{dir}', 'RUN')} && {spectra}", run, threads)


def _training(name: str, preset: str, hyperparameters: dict[str, Any] | None = None, threads: int | None = None,
              evaluate: dict[str, Any] | None = None, folder: str = "cpu-training",
              spectra: dict[str, Any] | None = None, **fields: Any) -> Experiment:
    steps = [training(preset, hyperparameters, threads, **fields), evaluation(**(evaluate or {}))]
    if spectra is not None:  # the system's spectrum at the start and at the end of the run
        steps += [spectrum(at_init=True, **spectra), spectrum(**spectra)]
    return Experiment(f"{folder}/{name}", tuple(steps))


# iMAML-GD when I + H/lambda is indefinite (README, "When iMAML's system is indefinite"): each lambda with
# each meta-gradient solver, equal iterations, the same seed and so the same tasks; at a size the CPU fits.
CURVATURE_LAMBDAS = (0.5, 2, 8, 24)
CURVATURE_SOLVERS = {"cg": {}, "minres": {"meta_solver": "minres"}, "damped-cg": {"damping": 1}}
CURVATURE_SETTINGS = {
    "omniglot-5w1s": {"filters": 32, "meta_batch": 8, "iterations": 300, "validate_every": 25, "validation_tasks": 50},
    "omniglot-20w5s": {"filters": 16, "meta_batch": 4, "iterations": 100, "validate_every": 10,
                       "validation_tasks": 20},
}
CURVATURE = tuple(
    _training(f"{setting}-lam{lam}-{solver}", f"{setting}-imaml-gd", {"lam": lam, **solver_settings}, threads=1,
              evaluate={"tasks": 200, "threads": 1}, folder="cpu-curvature",
              spectra={"tasks": 10, "steps": 30, "threads": 1}, **options)
    for setting, options in CURVATURE_SETTINGS.items() for lam in CURVATURE_LAMBDAS
    for solver, solver_settings in CURVATURE_SOLVERS.items())

# the algorithms of the paper's results, as the committed ones ran (an algorithm installed since would join a default)
PAPER_ALGORITHMS = ("maml", "fomaml", "reptile", "imaml")

# the first time-boxed runs, made before the batched engine existed: pinned to the per-task engine, which the CPU
# default no longer is for most of them (bench/training/engines.py)
_TIME_BOXED = {"max_minutes": 30, "validate_every": 25, "threads": 1, "engine": "per-task"}

# The commands (README, reports/notes/) of the committed CPU results (reports/); one after the other about 22 hours
# (the training runs were run two at a time, one thread each: 30 minutes of training apiece, validation
# not counted; the curvature study two at a time took 40 minutes).
FULL = (
    # with the worked example of a plug-in, ANIL (examples/metagrad-anil, which must be installed)
    Experiment("exact-solve", (exact_solve(algorithms=PAPER_ALGORITHMS + ("anil",)),), devices=("cpu",)),
    Experiment("exact-solve-5-eigenvalues", (exact_solve(distinct_eigenvalues=5, algorithms=PAPER_ALGORITHMS),),
               devices=("cpu",)),
    Experiment("profile-cpu", (profile(algorithms=PAPER_ALGORITHMS),)),
    Experiment("profile-cpu-anil", (profile(algorithms=("maml", "anil"), batched_tasks=0),)),
    _training("omniglot-5w1s-imaml-gd-lr0.1", "omniglot-5w1s-imaml-gd", {"inner_lr": 0.1}, **_TIME_BOXED),
    _training("omniglot-5w1s-imaml-hf", "omniglot-5w1s-imaml-hf", **_TIME_BOXED),
    _training("omniglot-5w1s-imaml-gd-lr0.03", "omniglot-5w1s-imaml-gd", max_minutes=25, validate_every=25, threads=2,
              engine="per-task"),
    *(_training(f"omniglot-5w1s-{variant}", f"omniglot-5w1s-{variant}", evaluate={"threads": 1}, **_TIME_BOXED)
      for variant in ("maml", "fomaml", "reptile-shared", "imaml-gd")),
    # Nichol et al.'s Reptile takes ~40 iterations a second here, and its validation 50 inner steps a task
    _training("omniglot-5w1s-reptile", "omniglot-5w1s-reptile", evaluate={"threads": 1},
              **{**_TIME_BOXED, "validate_every": 250}),
    _training("mini-imagenet-5w1s-maml", "mini-imagenet-5w1s-maml", evaluate={"threads": 1}, **_TIME_BOXED),
    # the plug-in example, ANIL, as long as the MAML run above (its 915 iterations in 30 minutes)
    _training("omniglot-5w1s-anil", "omniglot-5w1s-anil", evaluate={"threads": 1}, iterations=915, validate_every=25,
              threads=1),
    # iMAML-GD at full size with the batched engine (the CPU default for it), an hour on 2 threads each: the
    # paper's CG and MINRES for the meta-gradient, the same seed and so the same tasks
    *(_training(f"omniglot-5w1s-{variant}-60-minutes", f"omniglot-5w1s-{variant}", evaluate={"threads": 2},
                max_minutes=60, validate_every=100, checkpoint_every=200, threads=2)
      for variant in ("imaml-gd", "imaml-gd-minres")),
    # the same two continued from their 60th minute to 165 minutes of training, one thread each, both at once
    *(Experiment(f"cpu-training/omniglot-5w1s-{variant}-165-minutes", (
        training(f"omniglot-5w1s-{variant}", max_minutes=60, validate_every=100, checkpoint_every=200, threads=2),
        resumption(max_minutes=165, threads=1), evaluation(threads=1)))
      for variant in ("imaml-gd", "imaml-gd-minres")),
    # the same two with other seeds (other initial parameters and tasks): seed 1 for 70 minutes, seeds 2-6 for 30,
    # the two solvers of a seed at once on one thread each
    *(_training(f"omniglot-5w1s-{variant}-seed{seed}-{minutes}-minutes", f"omniglot-5w1s-{variant}",
                evaluate={"threads": 1}, seed=seed, max_minutes=minutes, validate_every=100, checkpoint_every=200,
                threads=1)
      for seed, minutes in ((1, 70), (2, 30), (3, 30), (4, 30), (5, 30), (6, 30)) for variant in ("imaml-gd", "imaml-gd-minres")),
    # seed 4's CG run collapsed after iteration 404: that iteration's 32 systems, the paper's CG against MINRES
    Experiment("cpu-training/omniglot-5w1s-imaml-gd-seed4-iteration-404", (
        one_step_spectra("omniglot-5w1s-imaml-gd", 404, {"cg": {}, "cg-6-steps": {"cg_steps": 6},
                                                          "minres": {"meta_solver": "minres"}},
                         threads=1, seed=4, validate_every=1000, checkpoint_every=1000),)),
    # iMAML-HF once its Newton iterations ran on the stacked network: the batched engine against the per-task one,
    # the same seed and so the same tasks, both at once on one thread each
    *(_training(f"omniglot-5w1s-imaml-hf-{engine}-30-minutes", "omniglot-5w1s-imaml-hf", evaluate={"threads": 1},
                max_minutes=30, validate_every=25, threads=1, engine=engine) for engine in ("batched", "per-task")),
    Experiment("cpu-training/omniglot-20w1s-maml-lake", (
        training("omniglot-20w1s-maml", omniglot_split="lake", max_minutes=20, validate_every=25, threads=2),
        evaluation(threads=2), lake_runs(threads=2))),
    Experiment("throughput-cpu", (throughput(threads=2, iterations=3, check_tasks=8),)),
    *CURVATURE,
    Experiment("complexity", (complexity(threads=1),), devices=("cpu",)),
)

_QUICK_TRAIN = {"filters": 16, "meta_batch": 4, "iterations": 150, "validate_every": 25, "validation_tasks": 20}

# The same pipeline at smoke-test size: a few minutes on 2 CPU cores.
QUICK = (
    Experiment("exact-solve", (exact_solve(inner_steps=(1, 10, 100), seeds=1, tasks=2),), devices=("cpu",)),
    Experiment("exact-solve-5-eigenvalues", (exact_solve(inner_steps=(1, 10, 100), seeds=1, tasks=2,
                                                         distinct_eigenvalues=5),), devices=("cpu",)),
    Experiment("profile-cpu", (profile(filters=16, inner_steps=(1, 4, 16), cg_sweep=(1, 5), repeats=1, rss=False),)),
    Experiment("complexity", (complexity(kappas=(10.0, 30.0, 100.0), epsilons=(1e-2, 1e-4), dim=20),),
               devices=("cpu",)),
    *(_training(f"omniglot-5w1s-{variant}", f"omniglot-5w1s-{variant}", evaluate={"tasks": 100}, **_QUICK_TRAIN)
      for variant in ("maml", "fomaml", "reptile", "reptile-shared", "imaml-gd", "imaml-hf")),
)


def run_experiment(experiment: Experiment, target: Path, options: Options) -> Path:
    """Run ``experiment`` beside ``target`` and put it there once every step has finished."""
    work = target.with_name(f".{target.name}.rerun")
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        for step in experiment.steps:
            print("  " + step.command.replace("{dir}", str(work)), flush=True)
            threads = torch.get_num_threads()
            if step.threads:
                torch.set_num_threads(step.threads)
            try:
                step.run(work, options)
            finally:
                torch.set_num_threads(threads)
    except BaseException as error:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(error, Exception):
            raise ConfigError(f"re-running {experiment.folder} failed ({error}); the earlier results in {target} "
                              "are untouched") from error
        raise
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    return target


def regenerate(out: Path, quick: bool = False, overwrite: bool = False, seed: int = 0, device: str = "cpu",
               data_root: str | None = None, progress: bool = True) -> list[Path]:
    """Run the experiments into ``out``; returns their result folders."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    experiments = [e for e in (QUICK if quick else FULL) if kind in e.devices]
    existing = [e.folder for e in experiments if (out / e.folder).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose "
                          "another --out")
    options = Options(seed=seed, device=device, data_root=data_root, progress=progress)
    done = []
    for number, experiment in enumerate(experiments, 1):
        print(f"[{number}/{len(experiments)}] {experiment.folder}", flush=True)
        done.append(run_experiment(experiment, out / experiment.folder, options))
    return done
