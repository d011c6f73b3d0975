"""The ``metagrad`` command: one subcommand per harness."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from algorithms.protocol import ConfigError
from bench.training.distributed import DistributedError, environment_rank

if TYPE_CHECKING:
    from bench.harnesses.complexity import ComplexityConfig
    from bench.harnesses.exact_solve import ExactSolveConfig
    from bench.harnesses.profile import ProfileConfig
    from bench.harnesses.spectrum import SpectrumConfig
    from bench.harnesses.throughput import ThroughputConfig
    from bench.training.trainer import EvalConfig

# Commands whose --out names a folder (spectrum's names a CSV file).
FOLDER_OUTPUTS = ("exact-solve", "profile", "train", "throughput", "complexity", "scaling", "report")
CHANNELS_LAST_HELP = ("batched engine: the stacked network's activations in channels-last memory (NHWC), the layout of "
                      "cuDNN's tensor-core convolutions, which otherwise transpose to it and back around every "
                      "convolution; the same function (README, \"Two engines\")")


class UsageError(Exception):
    """Bad input that the user can fix: printed as one line, exit code 2."""


def _number_list(kind: type = int, minimum: float | None = None):
    """An argparse type: comma-separated numbers of ``kind`` (int or float), each at least ``minimum``."""
    noun = "integers" if kind is int else "numbers"

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {noun}, got {text!r}") from None
        if not values or (minimum is not None and any(v < minimum for v in values)):
            raise argparse.ArgumentTypeError(f"expected {noun} >= {minimum}, got {text!r}")
        return values

    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, help="data folder (default $METAGRAD_DATA or ../shared/data)")


def _exact_solve_config(args: argparse.Namespace) -> ExactSolveConfig:
    from bench.data.linear_regression import LinearRegressionConfig
    from bench.harnesses.exact_solve import ExactSolveConfig

    task = LinearRegressionConfig(dim=args.dim, lam=args.lam, kappa=args.kappa,
                                  distinct_eigenvalues=args.distinct_eigenvalues)
    return ExactSolveConfig(task=task, inner_steps=args.inner_steps, seeds=tuple(range(args.seed, args.seed + args.seeds)),
                            tasks_per_seed=args.tasks, inner_lr=args.inner_lr)


def _exact_solve(args: argparse.Namespace) -> None:
    from bench.harnesses.exact_solve import write_exact_solve

    if args.device != "cpu":
        raise UsageError("exact-solve runs in float64 on the CPU; --device must be cpu")
    config = _exact_solve_config(args)
    task = config.task
    frame = write_exact_solve(config, args.out, progress=not args.no_progress)
    if frame["diverged"].any():
        print(f"metagrad exact-solve: warning: {int(frame['diverged'].sum())} of {len(frame)} configurations diverged "
              f"(inner lr {frame['inner_lr'].iloc[0]:.3g}; gradient descent on G diverges from 2/L = "
              f"{2 / task.smoothness:.3g} on); they are marked in the CSV's diverged column", file=sys.stderr)
    summary = frame.groupby(["label", "inner_steps"], sort=False)["rel_error"].mean().unstack()
    print(summary.to_string(float_format=lambda v: f"{v:.2e}"))
    print(f"wrote {args.out / 'exact_solve.csv'} and {args.out / 'exact_solve.png'}")


def _complexity_config(args: argparse.Namespace) -> ComplexityConfig:
    from bench.harnesses.complexity import ComplexityConfig

    return ComplexityConfig(kappas=args.kappas, epsilons=args.epsilons, methods=args.methods, dim=args.dim,
                            lam=args.lam, tasks=args.tasks, seed=args.seed, max_inner_steps=args.max_inner_steps)


def _complexity(args: argparse.Namespace) -> None:
    from bench.harnesses.complexity import write_complexity

    if args.device != "cpu":
        raise UsageError("complexity runs in float64 on the CPU; --device must be cpu")
    _set_threads(args)
    config = _complexity_config(args)
    frame, exponents = write_complexity(config, args.out, progress=not args.no_progress)
    shown = ["method", "kappa", "epsilon", "inner_steps", "backprop_steps", "cg_steps", "work", "memory_gradients"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(exponents.drop(columns="label").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    missed = frame[~frame["reached"].astype(bool)]
    if len(missed):
        print(f"metagrad complexity: warning: {len(missed)} of {len(frame)} cells did not reach eps within "
              f"{config.max_inner_steps} inner steps; marked reached=False", file=sys.stderr)
    print(f"wrote {args.out / 'complexity.csv'}, {args.out / 'exponents.csv'} and {args.out / 'complexity.png'}")


def _scaling(args: argparse.Namespace) -> None:
    from bench.harnesses.scaling import write_scaling

    for run in args.runs:
        if not run.is_dir():
            raise UsageError(f"{run}: no such run folder")
    frame = write_scaling(args.runs, args.out)
    shown = ["run", "preset", "engine", "world_size", "threads", "tasks_per_s", "speedup"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {args.out / 'scaling.csv'} and {args.out / 'scaling.png'}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _shown(value: object) -> str:
    """A default as --help shows it, the way the option takes it (a tuple comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _option(parser: argparse.ArgumentParser, flag: str, default: object, text: str, note: str = "",
            **kwargs: object) -> None:
    """An option whose default comes from a config dataclass, and whose --help ends with it."""
    parser.add_argument(flag, default=default, help=f"{text} (default {_shown(default)}{note})", **kwargs)


def _profile_config(args: argparse.Namespace) -> ProfileConfig:
    from bench.harnesses.profile import ProfileConfig

    return ProfileConfig(dataset=args.dataset, ways=args.ways, shots=args.shots, queries=args.queries,
                         filters=args.filters, algorithms=args.algorithms, inner_steps=args.inner_steps,
                         imaml_cg_steps=args.cg_steps, cg_sweep=args.cg_sweep,
                         cg_sweep_inner_steps=args.cg_sweep_inner_steps, lam=args.lam, inner_lr=args.inner_lr,
                         repeats=args.repeats, rss=not args.no_rss, device=args.device, seed=args.seed,
                         data_root=args.data_root, batched_tasks=args.batched_tasks)


def _profile(args: argparse.Namespace) -> None:
    from bench.harnesses.profile import ratios, write_profile

    _check_device(args.device)
    config = _profile_config(args)
    frame = write_profile(config, args.out, progress=not args.no_progress)
    shown = ["algorithm", "inner_steps", "cg_steps", "time_s", "peak_bytes", "saved_bytes", "flops", "grad_evals",
             "hvp_evals", "tasks_per_s", "batched_tasks_per_s", "status"]
    print(frame[shown].to_string(index=False))
    for key, value in ratios(frame).items():
        print(f"{key}: {value:.3g}")
    print(f"wrote {args.out / 'profile.csv'} and {args.out / 'profile.png'}")


def _key_values(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _train(args: argparse.Namespace) -> None:
    from bench.training.trainer import resume_config, train, train_config

    if args.resume:  # the run's own config; only --iterations, --max-minutes and --engine may change
        from bench.training.trainer import Run

        saved_config, saved = Run(args.out).read_config()
        if args.threads is None and args.device == "cpu":  # the threads it ran with: float sums depend on them
            args.threads = saved.get("threads")
    elif not args.preset:
        missing = [flag for flag, value in (("--dataset", args.dataset), ("--algorithm", args.algorithm)) if value is None]
        if missing:
            raise UsageError(f"give --preset, or {' and '.join(missing)} (see --help)")
    _set_threads(args)
    _check_device(args.device)
    overrides = {name: getattr(args, name) for name in (
        "ways", "shots", "queries", "meta_batch", "meta_lr", "iterations", "validate_every", "validation_tasks",
        "checkpoint_every", "max_minutes", "filters", "data_root", "omniglot_split", "meta_lr_final", "train_shots",
        "train_queries", "outer_optimizer")}
    if args.resume:  # only how long to train and the engine may change; train() keeps the rest
        if args.sampler not in ("auto", saved_config.sampler):
            raise UsageError(f"--sampler {args.sampler}: the run draws its tasks with the {saved_config.sampler} "
                             "sampler, and a resumed run keeps its task stream")
        config = resume_config(args.out, iterations=overrides["iterations"], max_minutes=overrides["max_minutes"],
                               engine=None if args.engine == "auto" else args.engine, cuda_graph=args.cuda_graph,
                               compile=args.compile, channels_last=args.channels_last)
    else:
        config = train_config(args.preset, dict(args.set or []), dataset=args.dataset, algorithm=args.algorithm,
                              seed=args.seed, device=args.device, dtype=args.dtype, cuda_graph=args.cuda_graph,
                              compile=args.compile, channels_last=args.channels_last,
                              engine=None if args.engine == "auto" else args.engine,
                              sampler=None if args.sampler == "auto" else args.sampler, **overrides)
    last = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    if environment_rank() != 0:  # under torchrun, rank 0 speaks for the run
        return
    if last:
        print(f"iteration {last['iteration']}: validation accuracy {last['val_accuracy']:.4f} ± {last['val_ci95']:.4f} "
              f"({last['train_time_s']:.0f} s of training)")
    print(f"wrote {args.out / 'config.json'}, {args.out / 'metrics.csv'} and {args.out / 'checkpoint.pt'}")


def _eval_config(args: argparse.Namespace) -> EvalConfig:
    from bench.training.trainer import EvalConfig

    return EvalConfig(split=args.split, tasks=args.tasks, seed=args.seed, device=args.device,
                      engine=None if args.engine == "auto" else args.engine)


def _evaluate(args: argparse.Namespace) -> None:
    from bench.training.trainer import evaluate_run

    _set_threads(args)
    if args.device is not None:
        _check_device(args.device)
    result = evaluate_run(args.run_dir, _eval_config(args), progress=not args.no_progress)
    if environment_rank() != 0:
        return
    print(f"{args.split} accuracy {100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f} % over {result['tasks']} "
          f"tasks (checkpoint at iteration {result['iteration']})")
    print(f"wrote {args.run_dir / 'eval.json'}")


def _throughput_config(args: argparse.Namespace) -> ThroughputConfig:
    from bench.harnesses.throughput import ThroughputConfig

    return ThroughputConfig(presets=args.presets, engines=args.engines, meta_batch=args.meta_batch, filters=args.filters,
                            iterations=args.iterations, warmup=args.warmup, device=args.device,
                            cuda_graph=args.cuda_graph, sampler=args.sampler, seed=args.seed, data_root=args.data_root,
                            trace=args.trace, compile=args.compile, check_tasks=args.check_tasks,
                            channels_last=args.channels_last)


def _throughput(args: argparse.Namespace) -> None:
    from bench.harnesses.throughput import speedups, write_throughput

    _check_device(args.device)
    _set_threads(args)
    config = _throughput_config(args)
    frame = write_throughput(config, args.out, progress=not args.no_progress)
    shown = ["preset", "engine", "meta_batch", "tasks_per_s", "iteration_s", "grad_evals", "hvp_evals",
             "max_rel_diff_vs_per_task", "max_rel_diff_float32"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ratios = speedups(frame)
    if len(ratios):
        print(ratios.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {args.out / 'throughput.csv'} and {args.out / 'throughput.png'}")


def _spectrum_config(args: argparse.Namespace) -> SpectrumConfig:
    from bench.harnesses.spectrum import SpectrumConfig

    return SpectrumConfig(tasks=args.tasks, steps=args.steps, split=args.split, seed=args.seed, at_init=args.at_init,
                          next_meta_batch=args.next_meta_batch, hyperparameters=dict(args.set or []))


def _spectrum(args: argparse.Namespace) -> None:
    from bench.harnesses.spectrum import spectrum_path, write_spectrum

    _set_threads(args)
    config = _spectrum_config(args)
    out = args.out or spectrum_path(args.run_dir, config)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the CSV file to write")
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


def _lake_runs(args: argparse.Namespace) -> None:
    from bench.harnesses.lake_runs import lake_runs

    _set_threads(args)
    if args.device is not None:
        _check_device(args.device)
    result = lake_runs(args.run_dir, device=args.device)
    published = ", ".join(f"{who} {100 * rate:.1f}%" for who, rate in result["published_error_rate"].items())
    print(f"Lake's 20 runs of 20-way one-shot classification: error {100 * result['error_rate']:.1f} ± "
          f"{100 * result['ci95']:.1f}% (published: {published})")
    print(f"wrote {args.run_dir / 'lake_runs.json'}")


def _report(args: argparse.Namespace) -> None:
    from bench.reporting.report import render_report

    for root in args.results or []:
        if not root.is_dir():
            raise UsageError(f"--results {root}: no such folder")
    rerun = args.quick or args.rerun
    if not (args.results or rerun or args.out.is_dir()):
        raise UsageError(f"--out {args.out}: no such folder, and no --results to render from (or --rerun/--quick)")
    roots = args.results or [args.out]
    if rerun:
        from bench.reporting.regenerate import regenerate

        _check_device(args.device)
        regenerate(args.out, quick=args.quick, overwrite=args.overwrite, seed=args.seed, device=args.device,
                   data_root=args.data_root, progress=not args.no_progress)
    written = render_report(roots, args.out)
    print(f"wrote {len(written)} files under {args.out}: index.md, figures/, tables/")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None) is not None:
        import torch

        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def _check_device(device: str) -> None:
    import torch

    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metagrad",
        description="Benchmark and profile meta-gradient algorithms (MAML, first-order MAML, Reptile, iMAML).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Every subcommand's defaults are its config dataclass's (bench/<harness>.py), read here, never repeated.
    from bench.harnesses.exact_solve import ExactSolveConfig

    exact_defaults = ExactSolveConfig()
    regression = exact_defaults.task
    exact = sub.add_parser(
        "exact-solve",
        help="meta-gradient error against the closed form on linear regression (paper Fig. 2a)",
        description="Sweep inner gradient-descent steps for MAML, first-order MAML, Reptile and iMAML (2 and 5 CG "
                    "steps, and CG to convergence) on linear-regression tasks whose exact meta-gradient is known, "
                    "in float64. Writes OUT/exact_solve.csv (algorithm, inner_steps, cg_steps, seed, error, "
                    "rel_error, ...) and OUT/exact_solve.png.",
    )
    _add_common(exact)
    _option(exact, "--inner-steps", exact_defaults.inner_steps, "comma-separated inner step counts",
            type=_number_list(int, 1))
    _option(exact, "--seeds", len(exact_defaults.seeds), "number of seeds, from --seed on", type=int)
    _option(exact, "--tasks", exact_defaults.tasks_per_seed, "tasks per seed, errors averaged", type=int)
    _option(exact, "--dim", regression.dim, "input dimension d", type=int)
    _option(exact, "--lam", regression.lam, "proximal regularization lambda", type=float)
    _option(exact, "--kappa", regression.kappa, "condition number of the inner objective", type=float)
    _option(exact, "--distinct-eigenvalues", regression.distinct_eigenvalues,
            "number of distinct eigenvalues of the training Hessian", ": all distinct", type=int)
    exact.add_argument("--inner-lr", type=float, default=None,
                       help="inner step size (default 2/(L+mu) of the inner objective)")
    exact.set_defaults(run=_exact_solve)

    from bench.harnesses.profile import DATASETS, ProfileConfig

    profile_defaults = ProfileConfig()
    profile = sub.add_parser(
        "profile",
        help="time, memory and work of each algorithm against inner steps (paper Fig. 2b)",
        description="For each algorithm and number of inner steps, one task's meta-gradient after a warm-up: "
                    "median time of repeats, peak memory (CUDA max allocated and NVML on a GPU; on the CPU the "
                    "peak RSS increase of a fresh subprocess), peak bytes saved for backward, FLOPs, gradient and "
                    "Hessian-vector-product counts; the per-task engine's tasks/s beside the batched engine's over a "
                    "meta-batch of copies of the task; plus a sweep of iMAML's CG steps. Writes OUT/profile.csv and "
                    "OUT/profile.png. A configuration that runs out of memory is recorded as 'oom'.",
    )
    _add_common(profile)
    _option(profile, "--dataset", profile_defaults.dataset, "omniglot (real characters, needs --data-root), "
            "random-images (same shapes), or synthetic linear regression", choices=DATASETS)
    _add_data_root(profile)
    _option(profile, "--ways", profile_defaults.ways, "classes per task", type=int)
    _option(profile, "--shots", profile_defaults.shots, "support images per class", type=int)
    _option(profile, "--queries", profile_defaults.queries, "query images per class", type=int)
    _option(profile, "--filters", profile_defaults.filters, "ConvNet filters", type=int)
    _option(profile, "--algorithms", profile_defaults.algorithms, "comma-separated", type=_names)
    _option(profile, "--inner-steps", profile_defaults.inner_steps, "comma-separated", type=_number_list(int, 1))
    _option(profile, "--cg-steps", profile_defaults.imaml_cg_steps, "iMAML CG steps in the inner-step sweep", type=int)
    _option(profile, "--cg-sweep", profile_defaults.cg_sweep, "iMAML CG steps for the second sweep",
            type=_number_list(int, 0))
    _option(profile, "--cg-sweep-inner-steps", profile_defaults.cg_sweep_inner_steps, "inner steps during the CG sweep",
            type=int)
    _option(profile, "--lam", profile_defaults.lam, "iMAML lambda", type=float)
    _option(profile, "--inner-lr", profile_defaults.inner_lr, "inner step size", type=float)
    _option(profile, "--repeats", profile_defaults.repeats, "timed repeats per configuration", type=int)
    profile.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measure (CPU)")
    _option(profile, "--batched-tasks", profile_defaults.batched_tasks,
            "meta-batch of the batched engine's tasks/s column (copies of the task)", "; 0: not measured", type=int)
    profile.set_defaults(run=_profile)

    from algorithms import algorithm_names
    from bench.data.omniglot import SPLIT_PROTOCOLS
    from bench.training.engines import ENGINES, SAMPLERS
    from bench.training.presets import presets
    from bench.training.trainer import OUTER_OPTIMIZERS

    train = sub.add_parser(
        "train",
        help="meta-train one algorithm on Omniglot or Mini-ImageNet (paper Tables 2 and 3)",
        description="Meta-train with a meta-batch of tasks, averaged meta-gradients and Adam (or SGD, "
                    "--outer-optimizer); validate periodically on a fixed pool of validation tasks; write "
                    "RUN/config.json, RUN/metrics.csv and RUN/checkpoint.pt (atomically). --resume continues a run "
                    "exactly from its checkpoint; Ctrl-C or SIGTERM saves one first. Under torchrun (e.g. "
                    "torchrun --standalone --nproc-per-node 2 -m bench.cli train ...) the meta-batch is shared "
                    "out over the processes and rank 0 writes the files; the result does not depend on the number "
                    "of processes. Presets: " + ", ".join(sorted(presets())),
    )
    train.add_argument("--out", required=True, type=Path, help="run folder")
    train.add_argument("--preset", help="a row of Table 2 or 3, e.g. omniglot-5w1s-imaml-hf")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint, with its own settings; "
                            "--iterations and --max-minutes (total training time) may be raised")
    train.add_argument("--dataset", choices=("omniglot", "mini-imagenet"), help="without --preset")
    train.add_argument("--algorithm", choices=algorithm_names(), help="without --preset")
    train.add_argument("--set", type=_key_values, action="append", metavar="KEY=VALUE",
                       help="algorithm hyperparameter, e.g. --set inner_steps=10 --set inner_solver=newton-cg")
    for flag, kind, text in (("--ways", int, "classes per task"), ("--shots", int, "support images per class"),
                             ("--queries", int, "query images per class"), ("--meta-batch", int, "tasks per step"),
                             ("--meta-lr", float, "outer step size"), ("--iterations", int, "outer steps"),
                             ("--meta-lr-final", float, "anneal the outer step size linearly to this at --iterations"),
                             ("--train-shots", int, "support images per class of the meta-training tasks"),
                             ("--train-queries", int, "query images per class of the meta-training tasks"),
                             ("--validate-every", int, "iterations between validations"),
                             ("--validation-tasks", int, "validation pool size"),
                             ("--checkpoint-every", int, "iterations between checkpoints"),
                             ("--max-minutes", float, "stop after this much training time (checkpointed)"),
                             ("--filters", int, "ConvNet filters (default 64 Omniglot, 32 Mini-ImageNet)")):
        train.add_argument(flag, type=kind, default=None, help=text + " (overrides the preset)")
    train.add_argument("--outer-optimizer", choices=OUTER_OPTIMIZERS, default=None,
                       help="adam (the shared outer loop) or sgd (theta <- theta - meta_lr x mean meta-gradient; "
                            "Nichol et al.'s Reptile); overrides the preset")
    train.add_argument("--omniglot-split", choices=SPLIT_PROTOCOLS, default=None,
                       help="Omniglot's classes: random (the paper's: 1200 of the 1623 characters for meta-training, "
                            "423 for testing; default) or lake (Lake et al.: the 30 background alphabets for "
                            "meta-training, the 20 evaluation alphabets for testing; see metagrad lake-runs)")
    _add_data_root(train)
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (on --resume: the run's own, unless given)")
    train.add_argument("--engine", choices=("auto", *ENGINES), default="auto",
                       help="per-task (the reference: one task after another) or batched (the meta-batch at "
                            "once: on the ConvNet's stacked network, Nesterov's steps under vmap); auto: the one "
                            "measured faster on the device, algorithm and task size: batched on CUDA; on the CPU "
                            "batched for MAML, Reptile and iMAML with GD or Newton-CG where an inner step takes few "
                            "images (at most 5 for MAML and Newton-CG, 20 for Reptile, 25 for GD: bench/training/engines.py), "
                            "per-task otherwise; batched where --channels-last, --cuda-graph or --compile asks for "
                            "it (on --resume: the run's own)")
    train.add_argument("--cuda-graph", action="store_true",
                       help="batched engine on CUDA: capture the whole iteration as a CUDA graph and replay it")
    train.add_argument("--compile", action="store_true",
                       help="batched engine: the iteration through torch.compile (mode reduce-overhead) instead of "
                            "--cuda-graph; compiling takes seconds to minutes (metagrad throughput --compile "
                            "measures both)")
    train.add_argument("--channels-last", action="store_true", help=CHANNELS_LAST_HELP + " (on --resume: as given)")
    train.add_argument("--sampler", choices=("auto", *SAMPLERS), default="auto",
                       help="who draws the meta-training tasks: host (a torch.Generator, task by task) or device "
                            "(the split's images held on the device, each meta-batch a function of the seed and "
                            "the iteration: no host work, drawn inside a CUDA graph); auto: device on CUDA, host "
                            "on the CPU. The two give different task streams; a resumed run keeps its own")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="parameters and images (default float32)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(run=_train)

    from bench.training.trainer import EvalConfig

    eval_defaults = EvalConfig()
    evaluate = sub.add_parser(
        "eval",
        help="evaluate a training run on a fixed pool of test tasks",
        description="Adapt from the run's last checkpoint to each task of a fixed, seeded pool (600 test tasks by "
                    "default) with the run's own inner loop; write RUN/eval.json with accuracy, ci95 (95% "
                    "confidence half-width), tasks and split.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    _option(evaluate, "--split", eval_defaults.split, "the split the tasks come from",
            choices=("train", "val", "test"))
    _option(evaluate, "--tasks", eval_defaults.tasks, "number of tasks", type=int)
    _option(evaluate, "--seed", eval_defaults.seed, "seed of the task pool", type=int)
    evaluate.add_argument("--device", default=None, help="default: the run's device")
    _add_threads(evaluate)
    evaluate.add_argument("--engine", choices=("auto", *ENGINES), default="auto",
                          help="per-task or batched (chunks of the run's meta-batch); auto: batched on CUDA, on "
                               "the CPU batched for MAML, Reptile and iMAML with GD or Newton-CG where an inner step "
                               "of the adaptation takes few images (bench/training/engines.py) and per-task otherwise. Both "
                               "score the same tasks")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(run=_evaluate)

    from bench.harnesses.throughput import ThroughputConfig

    throughput_defaults = ThroughputConfig()
    throughput = sub.add_parser(
        "throughput",
        help="tasks per second of each preset's training iteration, per-task engine against batched",
        description="For each preset and engine: sample meta-batches from the preset's training split, compute "
                    "their meta-gradients, step Adam; time whole iterations after a warm-up. Writes "
                    "OUT/throughput.csv (preset, algorithm, engine, device, device_name, meta_batch, tasks_per_s, "
                    "iteration_s, grad_evals, hvp_evals per task, max_rel_diff_vs_per_task: the batched engine's "
                    "largest relative difference from the per-task reference over one meta-batch, in float64; "
                    "max_rel_diff_float32: the same in float32) and "
                    "OUT/throughput.png.",
    )
    _add_common(throughput)
    _option(throughput, "--presets", throughput_defaults.presets, "comma-separated presets", type=_names)
    _option(throughput, "--engines", throughput_defaults.engines, f"comma-separated, from {', '.join(ENGINES)}",
            type=_names)
    throughput.add_argument("--meta-batch", type=int, default=None, help="tasks per iteration (default: the preset's)")
    throughput.add_argument("--filters", type=int, default=None, help="ConvNet filters (default: the preset's network)")
    _option(throughput, "--iterations", throughput_defaults.iterations, "timed iterations per row", type=int)
    _option(throughput, "--warmup", throughput_defaults.warmup, "untimed iterations first", type=int)
    _add_threads(throughput)
    throughput.add_argument("--cuda-graph", action="store_true",
                            help="batched rows: capture each iteration as a CUDA graph and replay it")
    _option(throughput, "--sampler", throughput_defaults.sampler, "who draws the meta-batches (metagrad train --sampler)",
            choices=SAMPLERS)
    throughput.add_argument("--compile", action="store_true",
                            help="batched rows: the whole iteration through torch.compile (mode reduce-overhead, "
                                 "fullgraph), the other way to take the launches out; warmup_s holds the compile time")
    throughput.add_argument("--channels-last", action="store_true", help=CHANNELS_LAST_HELP)
    throughput.add_argument("--trace", action="store_true",
                            help="after the timed iterations, profile as many more (torch.profiler): kernel "
                                 "launches, host synchronizations and copies per iteration in the CSV, and "
                                 "OUT/trace-PRESET-ENGINE.txt with the operators and kernels that took the time")
    throughput.add_argument("--check-tasks", type=int, default=None,
                            help="batched rows: compare this many tasks' meta-gradients with the per-task engine's "
                                 "(default the whole meta-batch; 0 skips the comparison and leaves its columns empty)")
    _add_data_root(throughput)
    throughput.set_defaults(run=_throughput)

    from bench.harnesses.complexity import METHOD_KEYS, ComplexityConfig

    defaults = ComplexityConfig()
    complexity = sub.add_parser(
        "complexity",
        help="least work and memory for an eps-accurate meta-gradient against kappa (paper Table 1, measured)",
        description="On linear-regression tasks in float64, for each condition number kappa of the inner objective "
                    "and each target eps, find each method's least work (gradients + Hessian-vector products) whose "
                    "meta-gradient has relative error <= eps against the closed form (Definition 3): MAML with full "
                    "backprop (inner steps K), truncated backprop (K and the backpropagated steps T), iMAML with a "
                    "gradient-descent or a Nesterov inner loop (K and the CG steps). Writes OUT/complexity.csv "
                    "(one row per method x kappa x eps: the configuration, its work, memory in units of one "
                    "gradient's saved bytes), OUT/exponents.csv (fitted exponents of kappa beside the theory's) "
                    "and OUT/complexity.png (log-log, the theory's slopes dashed).",
    )
    _add_common(complexity)
    _option(complexity, "--kappas", defaults.kappas, "comma-separated condition numbers", type=_number_list(float))
    _option(complexity, "--epsilons", defaults.epsilons, "comma-separated relative errors to reach",
            type=_number_list(float))
    complexity.add_argument("--methods", type=_names, default=defaults.methods,
                            help=f"comma-separated, from {', '.join(METHOD_KEYS)} (default all)")
    _option(complexity, "--dim", defaults.dim, "input dimension d", type=int)
    _option(complexity, "--lam", defaults.lam, "proximal regularization lambda", type=float)
    _option(complexity, "--tasks", defaults.tasks, "tasks per kappa, relative errors averaged", type=int)
    _option(complexity, "--max-inner-steps", defaults.max_inner_steps, "give up beyond this many inner steps", type=int)
    _add_threads(complexity)
    complexity.set_defaults(run=_complexity)

    scaling = sub.add_parser(
        "scaling",
        help="training tasks per second against the number of processes, from runs (torchrun or not)",
        description="For each run folder written by metagrad train (one process, or several under torchrun): its "
                    "processes, threads per process and training throughput (tasks over training time, validation "
                    "excluded). Writes OUT/scaling.csv (with the speedup over the one-process run of the same "
                    "preset, engine and threads) and OUT/scaling.png.",
    )
    scaling.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by metagrad train")
    scaling.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    scaling.set_defaults(run=_scaling)

    from bench.harnesses.spectrum import SpectrumConfig

    spectrum_defaults = SpectrumConfig()
    spectrum = sub.add_parser(
        "spectrum",
        help="is iMAML's system I + H/lambda positive definite at a run's checkpoint? (Lanczos, float64)",
        description="For a fixed pool of tasks: adapt from the run's checkpoint (or its initialization) with the "
                    "run's inner loop, then estimate the smallest and largest eigenvalues of the support loss's "
                    "Hessian at the adapted parameters by Lanczos with Hessian-vector products, in float64. Writes "
                    "a CSV (default RUN/spectrum.csv, or RUN/spectrum-init.csv with --at-init): lambda_min, "
                    "lambda_max, the paper system's smallest eigenvalue 1 + lambda_min/lambda, whether it is "
                    "indefinite, and a lower bound on the number of eigenvalues below -lambda; for iMAML, the "
                    "run's own meta-gradient solve of that system per task (residual, iterations, curvature met, "
                    "the meta-gradient's size against the query gradient, the least curvature along its products).",
    )
    spectrum.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    spectrum.add_argument("--out", type=Path, default=None,
                          help="CSV to write (default RUN/spectrum.csv; RUN/spectrum-init.csv with --at-init, "
                               "RUN/spectrum-next-meta-batch.csv with --next-meta-batch, -KEY-VALUE for each --set)")
    _option(spectrum, "--tasks", spectrum_defaults.tasks, "tasks in the pool", type=int)
    _option(spectrum, "--steps", spectrum_defaults.steps, "Lanczos steps per task", type=int)
    spectrum.add_argument("--split", default=spectrum_defaults.split, choices=("train", "val", "test"))
    _option(spectrum, "--seed", spectrum_defaults.seed, "seed of the task pool and start vectors", type=int)
    spectrum.add_argument("--at-init", action="store_true", help="the run's initial meta-parameters, not its checkpoint")
    spectrum.add_argument("--next-meta-batch", action="store_true",
                          help="instead of a fixed pool, the training tasks of the iteration after the checkpoint "
                               "(with --at-init, of the first iteration; --tasks is then the run's meta-batch): "
                               "one training step's outliers task by task")
    spectrum.add_argument("--set", type=_key_values, action="append", metavar="KEY=VALUE",
                          help="the run's algorithm with this hyperparameter changed, as train's --set: e.g. "
                               "--set meta_solver=minres or --set cg_steps=8 solves the same systems otherwise")
    _add_threads(spectrum)
    spectrum.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    spectrum.set_defaults(run=_spectrum)

    lake = sub.add_parser(
        "lake-runs",
        help="score a 20-way run trained on Lake's split on Lake et al.'s 20 one-shot runs",
        description="Lake et al. (2015): 20 runs of 20-way one-shot classification drawn from Omniglot's evaluation "
                    "alphabets. For each run, adapt from the checkpoint with the run's own inner loop on its 20 "
                    "training images, classify its 20 test images together (BatchNorm batch statistics over them), "
                    "and compare with the answer key. The run must be 20-way and trained with --omniglot-split lake. "
                    "Writes RUN/lake_runs.json: per-run errors, the mean error rate with its 95% interval, and the "
                    "published error rates (people 4.5%, Bayesian Program Learning 3.3%).",
    )
    lake.add_argument("run_dir", type=Path, metavar="RUN", help="run folder written by metagrad train")
    lake.add_argument("--device", default=None, help="default: the run's device")
    _add_threads(lake)
    lake.set_defaults(run=_lake_runs)

    report = sub.add_parser(
        "report",
        help="render every figure and table from result folders (the paper's numbers beside ours)",
        description="Find exact_solve.csv, profile.csv and training runs (config.json, metrics.csv, eval.json) "
                    "below the result folders and write OUT/index.md, OUT/figures/*.png (Fig. 2a, Fig. 2b, "
                    "validation accuracy against meta-iterations and wall-clock, test accuracy with the paper's "
                    "values) and OUT/tables/*.md (Tables 2 and 3: paper, ours, difference, our 95% CI, device, "
                    "training length; every run; Fig. 2b ratios; saved benchmark runs). Missing results are shown as "
                    "missing. "
                    "--rerun first re-runs, into OUT, every experiment this machine can (the README's commands: "
                    "exact-solve, the CPU profile, the time-boxed training runs and their evaluation; hours); "
                    "--quick re-runs small versions of them (a few minutes on the CPU). GPU results come from "
                    "bench/gpu_checks.sh and are only rendered.",
    )
    _add_common(report)
    report.add_argument("--results", type=Path, action="append", metavar="DIR",
                        help="a folder to search for results (repeatable; default: OUT itself)")
    report.add_argument("--rerun", action="store_true", help="re-run the experiments into OUT first (full size)")
    report.add_argument("--quick", action="store_true", help="re-run small versions of the experiments first")
    report.add_argument("--overwrite", action="store_true",
                        help="with --rerun/--quick: replace result folders that exist in OUT (each only once its "
                             "re-run has finished)")
    _add_data_root(report)
    report.set_defaults(run=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = getattr(args, "out", None)
        if args.command in FOLDER_OUTPUTS and out is not None and out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file; give a folder for the results")
        args.run(args)
    except (UsageError, ConfigError) as error:
        if environment_rank() == 0:  # every process of a torchrun launch meets the same bad input
            print(f"metagrad {args.command}: error: {error}", file=sys.stderr)
        return 2
    except DistributedError as error:
        print(f"metagrad {args.command}: error (rank {environment_rank()}): {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if environment_rank() == 0:
            print(f"metagrad {args.command}: interrupted; finished files are in place, none half-written",
                  file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
