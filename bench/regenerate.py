"""Re-run every experiment behind reports/ on this machine: the README's commands, or small versions.

Each experiment is a list of `metagrad` command lines sharing one result folder. It runs in a
temporary folder beside its target and replaces the target only when all its commands have
finished, so an interrupted or failed re-run leaves the earlier results in place.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from algorithms.protocol import ConfigError


@dataclass(frozen=True)
class Experiment:
    folder: str  # relative to OUT
    commands: tuple[tuple[str, ...], ...]  # argv for bench.cli.main; "{dir}" is the result folder
    devices: tuple[str, ...] = ("cpu", "cuda")  # where --device may send it


def _training(name: str, preset: str, *options: str, evaluate: tuple[str, ...] = ()) -> Experiment:
    return Experiment(f"cpu-training/{name}", (
        ("train", "--preset", preset, "--out", "{dir}", *options),
        ("eval", "{dir}", *evaluate),
    ))


# The README's commands for the committed CPU results (reports/); one after the other about 5 hours
# (they were run two at a time, one thread each: 30 minutes of training apiece, validation not counted).
FULL = (
    Experiment("exact-solve", (("exact-solve", "--out", "{dir}"),), devices=("cpu",)),
    Experiment("exact-solve-5-eigenvalues", (("exact-solve", "--out", "{dir}", "--distinct-eigenvalues", "5"),),
               devices=("cpu",)),
    Experiment("profile-cpu", (("profile", "--out", "{dir}"),)),
    _training("omniglot-5w1s-imaml-gd-lr0.1", "omniglot-5w1s-imaml-gd", "--set", "inner_lr=0.1",
              "--max-minutes", "30", "--validate-every", "25", "--threads", "1"),
    _training("omniglot-5w1s-imaml-hf", "omniglot-5w1s-imaml-hf", "--max-minutes", "30", "--validate-every", "25",
              "--threads", "1"),
    _training("omniglot-5w1s-imaml-gd-lr0.03", "omniglot-5w1s-imaml-gd", "--max-minutes", "25",
              "--validate-every", "25", "--threads", "2"),
    *(_training(f"omniglot-5w1s-{variant}", f"omniglot-5w1s-{variant}", "--max-minutes", "30", "--validate-every", "25",
                "--threads", "1", evaluate=("--threads", "1"))
      for variant in ("maml", "fomaml", "reptile", "imaml-gd")),
    _training("mini-imagenet-5w1s-maml", "mini-imagenet-5w1s-maml", "--max-minutes", "30", "--validate-every", "25",
              "--threads", "1", evaluate=("--threads", "1")),
)

_QUICK_TRAIN = ("--filters", "16", "--meta-batch", "4", "--iterations", "150", "--validate-every", "25",
                "--validation-tasks", "20")

# The same pipeline at smoke-test size: a few minutes on 2 CPU cores.
QUICK = (
    Experiment("exact-solve", (("exact-solve", "--out", "{dir}", "--inner-steps", "1,10,100", "--seeds", "1",
                                "--tasks", "2"),), devices=("cpu",)),
    Experiment("exact-solve-5-eigenvalues", (("exact-solve", "--out", "{dir}", "--inner-steps", "1,10,100",
                                              "--seeds", "1", "--tasks", "2", "--distinct-eigenvalues", "5"),),
               devices=("cpu",)),
    Experiment("profile-cpu", (("profile", "--out", "{dir}", "--filters", "16", "--inner-steps", "1,4,16",
                                "--cg-sweep", "1,5", "--repeats", "1", "--no-rss"),)),
    *(_training(f"omniglot-5w1s-{variant}", f"omniglot-5w1s-{variant}", *_QUICK_TRAIN, evaluate=("--tasks", "100"))
      for variant in ("maml", "fomaml", "reptile", "imaml-gd", "imaml-hf")),
)


def _argv(command: tuple[str, ...], folder: Path, seed: int, device: str, data_root: str | None,
          progress: bool) -> list[str]:
    argv = [part.replace("{dir}", str(folder)) for part in command]
    if argv[0] in ("exact-solve", "profile", "train"):
        argv += ["--seed", str(seed)]
    if argv[0] in ("profile", "train"):
        argv += ["--device", device]
        if data_root:
            argv += ["--data-root", data_root]
    if not progress:
        argv.append("--no-progress")
    return argv


def regenerate(out: Path, quick: bool = False, overwrite: bool = False, seed: int = 0, device: str = "cpu",
               data_root: str | None = None, progress: bool = True) -> list[Path]:
    """Run the experiments into ``out``; returns their result folders."""
    from .cli import main

    kind = "cuda" if device.startswith("cuda") else "cpu"
    experiments = [e for e in (QUICK if quick else FULL) if kind in e.devices]
    existing = [e.folder for e in experiments if (out / e.folder).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose "
                          "another --out")
    done = []
    for number, experiment in enumerate(experiments, 1):
        target = out / experiment.folder
        work = target.with_name(f".{target.name}.rerun")
        if work.exists():
            shutil.rmtree(work)
        work.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{number}/{len(experiments)}] {experiment.folder}", flush=True)
        try:
            for command in experiment.commands:
                argv = _argv(command, work, seed, device, data_root, progress)
                print("  metagrad " + " ".join(argv), flush=True)
                status = main(argv)
                if status == 130:
                    raise KeyboardInterrupt
                if status != 0:
                    raise ConfigError(f"re-running {experiment.folder} failed (metagrad {argv[0]} exited {status}); "
                                      f"the earlier results in {target} are untouched")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        done.append(target)
    return done
