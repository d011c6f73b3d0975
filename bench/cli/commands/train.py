"""meta-train one algorithm on Omniglot, Mini-ImageNet or a folder of your images (paper Tables 2 and 3).

Meta-train with a meta-batch of tasks, averaged meta-gradients and Adam (or SGD, --outer-optimizer); validate
periodically on a fixed pool of validation tasks; write RUN/config.json, RUN/metrics.csv and RUN/checkpoint.pt
(atomically). --resume continues a run exactly from its checkpoint; Ctrl-C or SIGTERM saves one first. Under
torchrun (e.g. torchrun --standalone --nproc-per-node 2 -m metagrad train ...) the meta-batch is shared out over
the processes and rank 0 writes the files; the result does not depend on the number of processes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import (
    add_config,
    add_no_progress,
    add_set,
    add_threads,
    check_device,
    given,
    set_threads,
)
from metagrad.bench.options import flag
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.training.config import RESUMABLE, TrainConfig
    from metagrad.bench.training.presets import presets

    parser.add_argument("--out", required=True, type=Path, help="the run folder")
    parser.add_argument("--preset", metavar="PRESET",
                        help="a row of Table 2 or 3, e.g. omniglot-5w1s-imaml-hf; one of: " + ", ".join(sorted(presets())))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint, with its own settings; only "
                             f"{', '.join(flag(TrainConfig, name) for name in RESUMABLE)} and --threads may change them")
    add_set(parser, "an algorithm hyperparameter, e.g. --set inner_steps=10 --set inner_solver=newton-cg")
    add_config(parser, TrainConfig, overrides=True)
    add_threads(parser, " (on --resume: the run's own, unless given)")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.training.config import RESUMABLE, TrainConfig, resumed_config, train_config
    from metagrad.bench.training.distributed import environment_rank
    from metagrad.bench.training.run_folder import Run
    from metagrad.bench.training.trainer import train

    options = given(args, TrainConfig)
    if args.resume:
        saved, record = Run(args.out).read_config()
        # an option that says what the run already is (the device, the sampler a script always passes) is honoured
        refused = [flag(TrainConfig, name) for name, value in options.items()
                   if name not in RESUMABLE and getattr(saved, name) != value]
        refused += ["--preset"] if args.preset not in (None, saved.preset) else []
        refused += ["--set"] if any(saved.hyperparameters.get(key, object()) != value
                                    for key, value in args.set or []) else []
        if refused:
            raise ConfigError(f"--resume continues the run with its own settings, and would not honour "
                             f"{', '.join(refused)}; a resume may change only "
                             f"{', '.join(flag(TrainConfig, name) for name in RESUMABLE)} and --threads")
        if options.get("iterations") is not None:  # a resume that would train nothing would still rewrite the run
            import torch

            done = int(Run(args.out).load_checkpoint(torch.device("cpu"))["iteration"])
            if options["iterations"] <= done:
                raise ConfigError(f"--iterations {options['iterations']}: the run in {args.out} has done {done} "
                                  "iterations; give more to go on")
        if args.threads is None and saved.device == "cpu":  # the threads it ran with: float sums depend on them
            args.threads = record.get("threads")
        config = resumed_config(saved, iterations=options.get("iterations"), max_minutes=options.get("max_minutes"),
                                engine=options.get("engine"), cuda_graph=bool(args.cuda_graph),
                                compile=bool(args.compile), channels_last=bool(args.channels_last))
    else:
        missing = [flag for flag, name in (("--dataset", "dataset"), ("--algorithm", "algorithm"))
                   if not args.preset and name not in options]
        if missing:
            raise ConfigError(f"give --preset, or {' and '.join(missing)} (see --help)")
        if options.get("data_root"):  # stored absolute, so that eval finds it from any folder
            options["data_root"] = str(Path(options["data_root"]).expanduser().resolve())
        config = train_config(args.preset, dict(args.set or []), **options)
    set_threads(args.threads)
    check_device(config.device)
    last = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    if environment_rank() != 0:  # under torchrun, rank 0 speaks for the run
        return
    trained = f"{last['iteration']} iterations, {last['train_time_s']:.0f} s of training; " if last else ""
    written = [args.out / name for name in ("config.json", "metrics.csv", "meta_parameters.json")
               if (args.out / name).is_file()]  # meta_parameters.json: an algorithm's own learned values
    print(f"{trained}wrote {', '.join(map(str, written))} and {args.out / 'checkpoint.pt'}")
