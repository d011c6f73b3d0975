"""is iMAML's system I + H/lambda positive definite at a run's checkpoint? (Lanczos, float64).

For a fixed pool of tasks: adapt from the run's checkpoint (or its initialization) with the run's inner loop, then
estimate the smallest and largest eigenvalues of the support loss's Hessian at the adapted parameters by Lanczos
with Hessian-vector products, in float64. Writes a CSV (default RUN/spectrum.csv, or RUN/spectrum-init.csv with
--at-init): lambda_min, lambda_max, the paper system's smallest eigenvalue 1 + lambda_min/lambda, whether it is
indefinite, and a lower bound on the number of eigenvalues below -lambda; for iMAML, the run's own meta-gradient
solve of that system per task (residual, iterations, curvature met, the meta-gradient's size against the query
gradient, the least curvature along its products).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_config, add_no_progress, add_set, add_threads, build_config, set_threads
from metagrad.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.harnesses.spectrum import SpectrumConfig

    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default RUN/spectrum.csv; RUN/spectrum-init.csv with --at-init, "
                             "RUN/spectrum-next-meta-batch.csv with --next-meta-batch, -KEY-VALUE for each --set)")
    add_config(parser, SpectrumConfig)
    add_set(parser, "the run's algorithm with this hyperparameter changed, as train's --set: e.g. --set "
                    "meta_solver=minres or --set cg_steps=8 solves the same systems otherwise")
    add_threads(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.spectrum import SpectrumConfig, spectrum_path, write_spectrum

    set_threads(args.threads)
    config = build_config(SpectrumConfig, args, hyperparameters=dict(args.set or []))
    out = args.out or spectrum_path(args.run_dir, config)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the CSV file to write")
    frame = write_spectrum(args.run_dir, config, out, progress=not args.no_progress)
    lam = frame["lam"].iloc[0]
    print(f"iteration {frame['iteration'].iloc[0]}: I + H/lambda (lambda {lam:g}) indefinite for "
          f"{int(frame['indefinite'].sum())} of {len(frame)} {args.split} tasks; lambda_min(H) from "
          f"{frame['lambda_min'].min():.3g} to {frame['lambda_min'].max():.3g}, lambda_max(H) up to "
          f"{frame['lambda_max'].max():.3g}")
    solved = frame.dropna(subset=["solver_residual"])
    if len(solved):
        worst = solved.loc[solved["solver_residual"].idxmax()]
        print(f"{worst['meta_solver']}'s relative residual {solved['solver_residual'].min():.3g} to "
              f"{worst['solver_residual']:.3g} (task {worst['task']}: meta-gradient {worst['meta_gradient_ratio']:.3g} "
              f"times the query gradient, least curvature met {worst['least_curvature']:.3g})")
    print(f"wrote {out}")
