"""render every figure and table from result folders (the paper's numbers beside ours).

Find every registered harness's results below the result folders (exact_solve.csv, profile.csv, throughput.csv,
complexity.csv, training runs, saved benchmark runs, and those of installed plug-in harnesses) and write
OUT/index.md, OUT/figures/*.png and OUT/tables/*.md (Tables 2 and 3: paper, ours, difference, our 95% CI, device,
training length; every run; Fig. 2b ratios; ...). Missing results are shown as missing. --rerun first re-runs, into
OUT, every experiment this machine can (the README's commands: exact-solve, the CPU profile, the time-boxed training
runs and their evaluation, each plug-in harness's own; about a day); --quick re-runs small versions of them (a few
minutes on the CPU). GPU results come from tools/gpu_checks.py and are only rendered.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_device, add_no_progress, add_out, add_seed, check_device
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.data.root import DATA_ROOT_DEFAULT, DATA_ROOT_HELP

    add_out(parser, "the report's folder (created if missing); the result folders default to it")
    parser.add_argument("--results", type=Path, action="append", metavar="DIR",
                        help="a folder to search for results (repeatable; default: OUT itself)")
    parser.add_argument("--rerun", action="store_true", help="re-run the experiments into OUT first (full size)")
    parser.add_argument("--quick", action="store_true", help="re-run small versions of the experiments first")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --rerun/--quick: replace result folders that exist in OUT (each only once its "
                             "re-run has finished)")
    add_seed(parser)
    add_device(parser)
    parser.add_argument("--data-root", default=None, help=f"{DATA_ROOT_HELP} (default {DATA_ROOT_DEFAULT})")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.reporting.report import render_report

    for root in args.results or []:
        if not root.is_dir():
            raise ConfigError(f"--results {root}: no such folder")
    rerun = args.quick or args.rerun
    if not (args.results or rerun or args.out.is_dir()):
        raise ConfigError(f"--out {args.out}: no such folder to render from; give --results DIR (the result folders), "
                         "or --rerun/--quick to make them there first")
    roots = args.results or [args.out]
    if rerun:
        from metagrad.bench.cli.rerun import regenerate

        check_device(args.device)
        regenerate(args.out, quick=args.quick, overwrite=args.overwrite, seed=args.seed, device=args.device,
                   data_root=args.data_root, progress=not args.no_progress)
    written = render_report(roots, args.out)
    print(f"wrote {len(written)} files under {args.out}: index.md, figures/, tables/")
