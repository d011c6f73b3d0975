"""Re-run every experiment behind reports/ on this machine: the commands of the README and reports/notes/, or small versions.

An experiment is a list of ``metagrad`` command lines sharing one result folder, each run through the command line's
own ``main``: the line printed is the line that ran. It runs in a temporary folder beside its target and replaces the
target only when all its steps have finished, so an interrupted or failed re-run leaves the earlier results in place.
Every registered harness with a re-run of its own (``Harness.rerun``, plug-ins' included) joins the list.
"""
from __future__ import annotations

import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metagrad.bench.harnesses.registry import harnesses
from metagrad.bench.options import arguments
from metagrad.errors import ConfigError, RerunError

SHARED = {"seed": "--seed", "device": "--device", "data_root": "--data-root"}  # what every experiment of a re-run shares


@dataclass(frozen=True)
class Options:
    """What every experiment of one re-run shares: the command line's --seed, --device, --data-root."""

    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class Step:
    """One ``metagrad`` command line: its words after ``metagrad``; "{dir}" is the experiment's result folder and
    "{scratch}" a folder removed once the experiment has finished. ``shared``: the re-run's options it takes (keys of
    ``SHARED``), given only where they differ from the command's defaults."""

    argv: tuple[str, ...]
    shared: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command line, as a user would type it."""
        return "metagrad " + shlex.join(self.argv)

    def resolved(self, folder: Path, scratch: Path, options: Options) -> list[str]:
        """The words that run, with the folders filled in and the shared options added (each where it is not the
        re-run's default, and the command has it)."""
        words = [word.replace("{dir}", str(folder)).replace("{scratch}", str(scratch)) for word in self.argv]
        accepted = _flags_of(self.argv[0])
        defaults = Options()
        for key in self.shared:
            value = getattr(options, key)
            if value != getattr(defaults, key) and SHARED[key] not in words and SHARED[key] in accepted:
                words += [SHARED[key], str(value)]
        if not options.progress and "--no-progress" in accepted:
            words.append("--no-progress")
        return words


def _flags_of(command: str) -> set[str]:
    """The option strings of ``metagrad COMMAND``."""
    import argparse

    from metagrad.bench.cli.command import command_module

    parser = argparse.ArgumentParser(add_help=False)
    command_module(command).add_arguments(parser)
    return set(parser._option_string_actions)


@dataclass(frozen=True)
class Experiment:
    folder: str  # relative to OUT
    steps: tuple[Step, ...]
    devices: tuple[str, ...] = ("cpu", "cuda")  # where --device may send it


def _threads(threads: int | None) -> list[str]:
    return ["--threads", str(threads)] if threads else []


def exact_solve(inner_steps: tuple[int, ...] | None = None, seeds: int | None = None, tasks: int | None = None,
                distinct_eigenvalues: int = 0, algorithms: tuple[str, ...] | None = None) -> Step:
    """``metagrad exact-solve``; a setting left None keeps ExactSolveConfig's default (and its flag out)."""
    from metagrad.bench.harnesses.exact_solve import ExactSolveConfig

    return Step(("exact-solve", "--out", "{dir}", *arguments(
        ExactSolveConfig, inner_steps=inner_steps, seeds=seeds, tasks_per_seed=tasks,
        distinct_eigenvalues=distinct_eigenvalues or None, algorithms=algorithms)), ("seed",))


def profile(**settings: Any) -> Step:
    """``settings``: ProfileConfig fields."""
    from metagrad.bench.harnesses.profile import ProfileConfig

    return Step(("profile", "--out", "{dir}", *arguments(ProfileConfig, **settings)), ("seed", "device", "data_root"))


def throughput(threads: int | None = None, **settings: Any) -> Step:
    """``settings``: ThroughputConfig fields."""
    from metagrad.bench.harnesses.throughput import ThroughputConfig

    return Step(("throughput", "--out", "{dir}", *arguments(ThroughputConfig, **settings), *_threads(threads)),
                ("seed", "device", "data_root"))


def complexity(threads: int | None = None, **settings: Any) -> Step:
    """``settings``: ComplexityConfig fields."""
    from metagrad.bench.harnesses.complexity import ComplexityConfig

    return Step(("complexity", "--out", "{dir}", *arguments(ComplexityConfig, **settings), *_threads(threads)),
                ("seed",))


def training(preset: str, hyperparameters: dict[str, Any] | None = None, threads: int | None = None,
             out: str = "{dir}", **fields: Any) -> Step:
    """``fields``: TrainConfig fields laid over the preset, as ``metagrad train``'s options are; a ``seed`` among
    them (a second seed's run) wins over the re-run's."""
    from metagrad.bench.training.config import TrainConfig

    sets = [word for key, value in (hyperparameters or {}).items() for word in ("--set", f"{key}={value}")]
    return Step(("train", "--preset", preset, "--out", out, *sets, *arguments(TrainConfig, **fields),
                 *_threads(threads)), ("seed", "device", "data_root"))


def resumption(threads: int | None = None, **limits: Any) -> Step:
    """``metagrad train --resume``: the run in the folder continued with its own settings, ``limits``
    (``iterations``, ``max_minutes``) raised."""
    from metagrad.bench.training.config import TrainConfig

    return Step(("train", "--out", "{dir}", "--resume", *arguments(TrainConfig, **limits), *_threads(threads)))


def evaluation(tasks: int | None = None, threads: int | None = None) -> Step:
    """``metagrad eval`` of the run in the step's folder; ``tasks`` None: EvalConfig's default."""
    from metagrad.bench.training.config import EvalConfig

    return Step(("eval", "{dir}", *arguments(EvalConfig, tasks=tasks), *_threads(threads)))


def lake_runs(threads: int | None = None) -> Step:
    return Step(("lake-runs", "{dir}", *_threads(threads)))


def spectrum(at_init: bool = False, threads: int | None = None, run: str = "{dir}", out: str | None = None,
             hyperparameters: dict[str, Any] | None = None, **settings: Any) -> Step:
    """``settings``: SpectrumConfig fields."""
    from metagrad.bench.harnesses.spectrum import SpectrumConfig

    sets = [word for key, value in (hyperparameters or {}).items() for word in ("--set", f"{key}={value}")]
    return Step(("spectrum", run, *arguments(SpectrumConfig, at_init=at_init, **settings), *sets,
                 *(("--out", out) if out else ()), *_threads(threads)))


def one_step_spectra(preset: str, iteration: int, solves: dict[str, dict[str, Any]], threads: int | None = None,
                     **fields: Any) -> tuple[Step, ...]:
    """The systems of training iteration ``iteration``'s meta-batch, task by task, solved as the run does and with
    the hyperparameter changes of each of ``solves`` (name -> changes): the run is trained to the iteration
    before (``fields`` as ``training``'s) in a scratch folder, which is not a result; only the spectra,
    ``spectrum-NAME.csv``, are kept."""
    trained = "{scratch}/run"
    return (training(preset, None, threads, out=trained, iterations=iteration - 1, **fields),
            *(spectrum(threads=threads, run=trained, out=f"{{dir}}/spectrum-{name}.csv", next_meta_batch=True,
                       hyperparameters=changes) for name, changes in solves.items()))


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

# learned meta-parameters and the fixed ones they extend: MAML and its learned step sizes, iMAML-GD (lambda = 2) and
# its learned lambda of each shape
LEARNED_META_PARAMETER_VARIANTS = ("maml", "meta-sgd", "maml-lslr", "imaml-gd", "imaml-lambda-scalar",
                                   "imaml-lambda-layer", "imaml-lambda-parameter")
EQUAL_TIME_MINUTES = 10

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
    Experiment("cpu-training/omniglot-5w1s-imaml-gd-seed4-iteration-404", one_step_spectra(
        "omniglot-5w1s-imaml-gd", 404, {"cg": {}, "cg-6-steps": {"cg_steps": 6}, "minres": {"meta_solver": "minres"}},
        threads=1, seed=4, validate_every=1000, checkpoint_every=1000)),
    # iMAML-HF once its Newton iterations ran on the stacked network: the batched engine against the per-task one,
    # the same seed and so the same tasks, both at once on one thread each
    *(_training(f"omniglot-5w1s-imaml-hf-{engine}-30-minutes", "omniglot-5w1s-imaml-hf", evaluate={"threads": 1},
                max_minutes=30, validate_every=25, threads=1, engine=engine) for engine in ("batched", "per-task")),
    Experiment("cpu-training/omniglot-20w1s-maml-lake", (
        training("omniglot-20w1s-maml", omniglot_split="lake", max_minutes=20, validate_every=25, threads=2),
        evaluation(threads=2), lake_runs(threads=2))),
    Experiment("throughput-cpu", (throughput(threads=2, iterations=3, check_tasks=8),)),
    *CURVATURE,
    # learned meta-parameters against the fixed ones, at equal time (reports/notes/meta-parameters.md): the same seed
    # and so the same initial network and tasks, 10 minutes of training each, one thread, two runs at a time, all on
    # the per-task engine (the learned ones have no batched engine of their own: the same engine keeps it a
    # comparison of the algorithms)
    Experiment("exact-solve-learned-lambda", (exact_solve(algorithms=("imaml", "imaml-lambda")),), devices=("cpu",)),
    # time and memory against inner steps for the three and the two they extend (20-way 5-shot Omniglot), reduced:
    # one repeat, no RSS subprocess, no batched column (~6 min on two cores)
    Experiment("profile-cpu-learned-meta-parameters", (profile(
        algorithms=("maml", "meta-sgd", "maml-lslr", "imaml", "imaml-lambda"), inner_steps=(1, 4, 16, 64),
        cg_sweep=(1, 5, 20), repeats=1, rss=False, batched_tasks=0),)),
    *(_training(f"omniglot-5w1s-{variant}", f"omniglot-5w1s-{variant}", evaluate={"threads": 1},
                folder="learned-meta-parameters", max_minutes=EQUAL_TIME_MINUTES, validate_every=50, threads=1,
                engine="per-task")
      for variant in LEARNED_META_PARAMETER_VARIANTS),
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


def plugin_experiments(quick: bool) -> tuple[Experiment, ...]:
    """Each harness's own re-run (``Harness.rerun``, or ``Harness.quick`` for ``--quick``), into a folder of its name:
    how a plug-in's measurement joins the list."""
    found = []
    for name, harness in harnesses().items():
        words = harness.quick if quick and harness.quick is not None else harness.rerun
        if words is not None:
            found.append(Experiment(name, (Step((name, "--out", "{dir}", *words)),), devices=("cpu",)))
    return tuple(found)


def run_experiment(experiment: Experiment, target: Path, options: Options) -> Path:
    """Run ``experiment`` beside ``target`` and put it there once every step has finished."""
    from metagrad.bench.cli.command import main

    work = target.with_name(f".{target.name}.rerun")
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".scratch-", dir=work.parent) as scratch:
            for step in experiment.steps:
                words = step.resolved(work, Path(scratch), options)
                print("  metagrad " + shlex.join(words), flush=True)
                threads = torch.get_num_threads()
                try:
                    code = main(words)
                finally:
                    torch.set_num_threads(threads)  # a step's --threads is its own
                if code == 130:
                    raise KeyboardInterrupt
                if code:
                    raise RerunError(f"re-running {experiment.folder} failed (metagrad {words[0]} exited with {code}); "
                                     f"the earlier results in {target} are untouched")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    return target


def regenerate(out: Path, quick: bool = False, overwrite: bool = False, seed: int = 0, device: str = "cpu",
               data_root: str | None = None, progress: bool = True) -> list[Path]:
    """Run the experiments into ``out``; returns their result folders."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    experiments = [e for e in (QUICK if quick else FULL) + plugin_experiments(quick) if kind in e.devices]
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
