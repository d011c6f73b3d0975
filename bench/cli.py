"""The ``metagrad`` command: one subcommand per harness."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from algorithms.protocol import ConfigError


class UsageError(Exception):
    """Bad input that the user can fix: printed as one line, exit code 2."""


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _exact_solve(args: argparse.Namespace) -> None:
    from .atomic import save_figure, write_csv
    from .exact_solve import ExactSolveConfig, plot_exact_solve, run_exact_solve
    from .linear_regression import LinearRegressionConfig

    if args.device != "cpu":
        raise UsageError("exact-solve runs in float64 on the CPU; --device must be cpu")
    task = LinearRegressionConfig(dim=args.dim, lam=args.lam, kappa=args.kappa,
                                  distinct_eigenvalues=args.distinct_eigenvalues)
    config = ExactSolveConfig(task=task, inner_steps=args.inner_steps,
                              seeds=tuple(range(args.seed, args.seed + args.seeds)),
                              tasks_per_seed=args.tasks, inner_lr=args.inner_lr)
    frame = run_exact_solve(config, progress=not args.no_progress)
    write_csv(frame, args.out / "exact_solve.csv")
    title = f"Meta-gradient accuracy, linear regression d={task.dim}, lambda={task.lam:g}, kappa={task.kappa:g}"
    if task.distinct_eigenvalues:
        title += f", {task.distinct_eigenvalues} distinct eigenvalues"
    save_figure(plot_exact_solve(frame, title), args.out / "exact_solve.png")
    summary = frame.groupby(["label", "inner_steps"], sort=False)["rel_error"].mean().unstack()
    print(summary.to_string(float_format=lambda v: f"{v:.2e}"))
    print(f"wrote {args.out / 'exact_solve.csv'} and {args.out / 'exact_solve.png'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metagrad",
        description="Benchmark and profile meta-gradient algorithms (MAML, first-order MAML, Reptile, iMAML).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exact = sub.add_parser(
        "exact-solve",
        help="meta-gradient error against the closed form on linear regression (paper Fig. 2a)",
        description="Sweep inner gradient-descent steps for MAML, first-order MAML, Reptile and iMAML (2 and 5 CG "
                    "steps, and CG to convergence) on linear-regression tasks whose exact meta-gradient is known, "
                    "in float64. Writes OUT/exact_solve.csv (algorithm, inner_steps, cg_steps, seed, error, "
                    "rel_error, ...) and OUT/exact_solve.png.",
    )
    _add_common(exact)
    exact.add_argument("--inner-steps", type=_positive_ints, default=(1, 2, 5, 10, 20, 50, 100, 200, 300, 500),
                       help="comma-separated inner step counts (default 1,2,5,10,20,50,100,200,300,500)")
    exact.add_argument("--seeds", type=int, default=3, help="number of seeds, from --seed on (default 3)")
    exact.add_argument("--tasks", type=int, default=4, help="tasks per seed, errors averaged (default 4)")
    exact.add_argument("--dim", type=int, default=50, help="input dimension d (default 50)")
    exact.add_argument("--lam", type=float, default=5.0, help="proximal regularization lambda (default 5)")
    exact.add_argument("--kappa", type=float, default=50.0, help="condition number of the inner objective (default 50)")
    exact.add_argument("--distinct-eigenvalues", type=int, default=0,
                       help="number of distinct eigenvalues of the training Hessian (default 0: all distinct)")
    exact.add_argument("--inner-lr", type=float, default=None,
                       help="inner step size (default 2/(L+mu) of the inner objective)")
    exact.set_defaults(run=_exact_solve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (UsageError, ConfigError) as error:
        print(f"metagrad {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metagrad {args.command}: interrupted; finished files are in place, none half-written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
