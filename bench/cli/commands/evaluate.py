"""evaluate a training run on a fixed pool of test tasks.

Adapt from the run's last checkpoint to each task of a fixed, seeded pool (600 test tasks by default) with the run's
own inner loop; write RUN/eval.json with accuracy, ci95 (95% confidence half-width), tasks and split.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_config, add_no_progress, add_threads, build_config, check_device, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.training.config import EvalConfig

    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    add_config(parser, EvalConfig)
    add_threads(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.training.config import EvalConfig
    from metagrad.bench.training.distributed import environment_rank
    from metagrad.bench.training.evaluation import evaluate_run

    set_threads(args.threads)
    if args.device is not None:
        check_device(args.device)
    result = evaluate_run(args.run_dir, build_config(EvalConfig, args), progress=not args.no_progress)
    if environment_rank() != 0:
        return
    print(f"{args.split} accuracy {100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f} % over {result['tasks']} "
          f"tasks (checkpoint at iteration {result['iteration']})")
    print(f"wrote {args.run_dir / 'eval.json'}")
