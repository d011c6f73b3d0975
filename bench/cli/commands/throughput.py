"""tasks per second of each preset's training iteration, per-task engine against batched.

For each preset and engine: sample meta-batches from the preset's training split, compute their meta-gradients, step
Adam; time whole iterations after a warm-up. Writes OUT/throughput.csv (preset, algorithm, engine, device,
device_name, meta_batch, tasks_per_s, iteration_s, grad_evals, hvp_evals per task, max_rel_diff_vs_per_task: the
batched engine's largest relative difference from the per-task reference over one meta-batch, in float64;
max_rel_diff_float32: the same in float32) and OUT/throughput.png.
"""
from __future__ import annotations

import argparse

from metagrad.bench.cli.arguments import (
    add_config,
    add_no_progress,
    add_out,
    add_threads,
    build_config,
    check_device,
    set_threads,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.harnesses.throughput import ThroughputConfig

    add_out(parser)
    add_config(parser, ThroughputConfig)
    add_threads(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.throughput import ThroughputConfig, speedups, write_throughput

    check_device(args.device)
    set_threads(args.threads)
    config = build_config(ThroughputConfig, args)
    frame = write_throughput(config, args.out, progress=not args.no_progress)
    shown = ["preset", "engine", "meta_batch", "tasks_per_s", "iteration_s", "grad_evals", "hvp_evals",
             "max_rel_diff_vs_per_task", "max_rel_diff_float32"]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ratios = speedups(frame)
    if len(ratios):
        print(ratios.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {args.out / 'throughput.csv'} and {args.out / 'throughput.png'}")
