"""least work and memory for an eps-accurate meta-gradient against kappa (paper Table 1, measured).

On linear-regression tasks in float64, for each condition number kappa of the inner objective and each target eps,
find each method's least work (gradients + Hessian-vector products) whose meta-gradient has relative error <= eps
against the closed form (Definition 3): MAML with full backprop (inner steps K), truncated backprop (K and the
backpropagated steps T), iMAML with a gradient-descent or a Nesterov inner loop (K and the CG steps). Writes
OUT/complexity.csv (one row per method x kappa x eps: the configuration, its work, memory in units of one gradient's
saved bytes), OUT/exponents.csv (fitted exponents of kappa beside the theory's) and OUT/complexity.png (log-log, the
theory's slopes dashed).
"""
from __future__ import annotations

import argparse
import sys

from metagrad.bench.cli.arguments import (
    add_config,
    add_device,
    add_no_progress,
    add_out,
    add_threads,
    build_config,
    set_threads,
)
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.harnesses.complexity import ComplexityConfig

    add_out(parser)
    add_config(parser, ComplexityConfig)
    add_device(parser, shown="cpu; complexity runs in float64 on the CPU")
    add_threads(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.complexity import ComplexityConfig, write_complexity

    if args.device != "cpu":
        raise ConfigError("complexity runs in float64 on the CPU; --device must be cpu")
    set_threads(args.threads)
    config = build_config(ComplexityConfig, args)
    frame, exponents = write_complexity(config, args.out, progress=not args.no_progress)
    shown = ["method", "kappa", "epsilon", "inner_steps", "backprop_steps", "cg_steps", "work", "memory_gradients"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(exponents.drop(columns="label").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    missed = frame[~frame["reached"].astype(bool)]
    if len(missed):
        print(f"metagrad complexity: warning: {len(missed)} of {len(frame)} cells did not reach eps within "
              f"{config.max_inner_steps} inner steps; marked reached=False", file=sys.stderr)
    print(f"wrote {args.out / 'complexity.csv'}, {args.out / 'exponents.csv'} and {args.out / 'complexity.png'}")
