"""meta-gradient error against the closed form on linear regression (paper Fig. 2a).

Sweep inner gradient-descent steps for every registered algorithm (MAML, first-order MAML, Reptile, iMAML at 2 and 5
CG steps and CG to convergence, and any plug-in; or --algorithms) on linear-regression tasks whose exact
meta-gradient is known, in float64. Writes OUT/exact_solve.csv
(algorithm, inner_steps, cg_steps, seed, error, rel_error, ...) and OUT/exact_solve.png.
"""
from __future__ import annotations

import argparse
import sys

from metagrad.bench.cli.arguments import add_config, add_device, add_no_progress, add_out, build_config
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.harnesses.exact_solve import ExactSolveConfig

    add_out(parser)
    add_config(parser, ExactSolveConfig)
    add_device(parser, shown="cpu; exact-solve runs in float64 on the CPU")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.exact_solve import ExactSolveConfig, write_exact_solve

    if args.device != "cpu":
        raise ConfigError("exact-solve runs in float64 on the CPU; --device must be cpu")
    config = build_config(ExactSolveConfig, args)
    task = config.task
    frame = write_exact_solve(config, args.out, progress=not args.no_progress)
    if frame["diverged"].any():
        print(f"metagrad exact-solve: warning: {int(frame['diverged'].sum())} of {len(frame)} configurations diverged "
              f"(inner lr {frame['inner_lr'].iloc[0]:.3g}; gradient descent on G diverges from 2/L = "
              f"{2 / task.smoothness:.3g} on); they are marked in the CSV's diverged column", file=sys.stderr)
    summary = frame.groupby(["label", "inner_steps"], sort=False)["rel_error"].mean().unstack()
    print(summary.to_string(float_format=lambda v: f"{v:.2e}"))
    print(f"wrote {args.out / 'exact_solve.csv'} and {args.out / 'exact_solve.png'}")
