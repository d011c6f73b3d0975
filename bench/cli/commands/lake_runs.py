"""score a 20-way run trained on Lake's split on Lake et al.'s 20 one-shot runs.

Lake et al. (2015): 20 runs of 20-way one-shot classification drawn from Omniglot's evaluation alphabets. For each
run, adapt from the checkpoint with the run's own inner loop on its 20 training images, classify its 20 test images
together (BatchNorm batch statistics over them), and compare with the answer key. The run must be 20-way and trained
with --omniglot-split lake. Writes RUN/lake_runs.json: per-run errors, the mean error rate with its 95% interval,
and the published error rates (people 4.5%, Bayesian Program Learning 3.3%).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_device, add_threads, check_device, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    add_device(parser, default=None, shown="the run's")
    add_threads(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.lake_runs import lake_runs

    set_threads(args.threads)
    if args.device is not None:
        check_device(args.device)
    result = lake_runs(args.run_dir, device=args.device)
    published = ", ".join(f"{who} {100 * rate:.1f}%" for who, rate in result["published_error_rate"].items())
    print(f"Lake's 20 runs of 20-way one-shot classification: error {100 * result['error_rate']:.1f} ± "
          f"{100 * result['ci95']:.1f}% (published: {published})")
    print(f"wrote {args.run_dir / 'lake_runs.json'}")
