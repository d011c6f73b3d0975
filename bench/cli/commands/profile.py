"""time, memory and work of each algorithm against inner steps (paper Fig. 2b).

For each algorithm and number of inner steps, one task's meta-gradient after a warm-up: median time of repeats, peak
memory (CUDA max allocated and NVML on a GPU; on the CPU the peak RSS increase of a fresh subprocess), peak bytes
saved for backward, FLOPs, gradient and Hessian-vector-product counts; the per-task engine's tasks/s beside the
batched engine's over a meta-batch of copies of the task; plus a sweep of iMAML's CG steps. Writes OUT/profile.csv
(a row as each configuration finishes, so an interrupted profile keeps them) and OUT/profile.png. A configuration
that runs out of memory is recorded as 'oom'. A small one (15 s on two cores): --dataset random-images
--ways 5 --shots 1 --queries 5 --filters 16 --inner-steps 1,4,16 --cg-sweep 1,5 --repeats 1 --no-rss.
"""
from __future__ import annotations

import argparse

from metagrad.bench.cli.arguments import add_config, add_no_progress, add_out, build_config, check_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.harnesses.profile import ProfileConfig

    add_out(parser)
    add_config(parser, ProfileConfig)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> None:
    from metagrad.bench.harnesses.profile import ProfileConfig, ratios, write_profile

    check_device(args.device)
    config = build_config(ProfileConfig, args)
    frame = write_profile(config, args.out, progress=not args.no_progress)
    shown = ["algorithm", "inner_steps", "cg_steps", "time_s", "peak_bytes", "saved_bytes", "flops", "grad_evals",
             "hvp_evals", "tasks_per_s", "batched_tasks_per_s", "status"]
    print(frame[shown].to_string(index=False))
    for key, value in ratios(frame).items():
        print(f"{key}: {value:.3g}")
    print(f"wrote {args.out / 'profile.csv'} and {args.out / 'profile.png'}")
