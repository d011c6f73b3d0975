"""count the benchmarks' deterministic work; --gate FILE fails on any change, --save FILE accepts it.

The work of each benchmark case (the cases tests/benchmarks times: one task's meta-gradient of every registered
algorithm at 1, 4 and 16 inner steps on a synthetic and an Omniglot problem, a gradient and a Hessian-vector product,
the Omniglot presets' tasks and meta-batches per engine, the samplers), counted once, untimed: gradient and
Hessian-vector-product evaluations, FLOPs, peak bytes saved for backward, device operations, images. These do not
move with the machine's load, so they gate: --gate FILE exits 1 with one line per benchmark whose counters differ from
FILE's (or that FILE lacks); --save FILE writes them (entries of benchmarks not counted here are kept). A plug-in
author's own CI: metagrad counters --algorithms NAME --problems synthetic --gate FILE (no data needed). metagrad's own counter file is
reports/benchmarks/counters-cpu.json, gated by the README's test command. Cases whose data is missing under the
data root are left out, with one line saying so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metagrad.bench.cli.arguments import add_device, add_threads, check_device, comma_separated, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algorithms", type=comma_separated(str), default=None, metavar="A,B",
                        help="only these registered algorithms' meta-gradient cases (default: every case)")
    parser.add_argument("--problems", type=comma_separated(str), default=None, metavar="P,Q",
                        help="with --algorithms: only these problems (synthetic: no data needed; omniglot)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--gate", type=Path, metavar="FILE", default=None,
                      help="compare with this counter file: exit 1 on any changed or missing benchmark")
    what.add_argument("--save", type=Path, metavar="FILE", default=None,
                      help="write the counters into this counter file (accepting what changed; commit it)")
    parser.add_argument("--data-root", default=None,
                        help="the data folder (default $METAGRAD_DATA, else the user's data folder); cases whose "
                             "data it lacks are left out")
    add_device(parser)
    add_threads(parser)


def _data_root(given: str | None) -> Path | None:
    from metagrad.bench.data.root import resolve_data_root
    from metagrad.errors import ConfigError

    try:
        return resolve_data_root(given)
    except ConfigError:
        if given is not None:
            raise
        return None  # no data anywhere: the cases that need none still count


def run(args: argparse.Namespace) -> None:
    import torch

    from metagrad.algorithms.registry import algorithm_names
    from metagrad.bench.regression.cases import PROBLEMS, all_cases, prepare
    from metagrad.bench.regression.gate import WorkChanged, current_commit, gate_failure, gated, load_counters, save_counters
    from metagrad.errors import require

    check_device(args.device)
    set_threads(args.threads)
    known = algorithm_names()
    for name in args.algorithms or ():
        require(name in known, f"--algorithms: no algorithm {name!r}; registered: {', '.join(known)}")
    require(args.problems is None or args.algorithms, "--problems needs --algorithms (it chooses their cases)")
    for problem in args.problems or ():
        require(problem in PROBLEMS, f"--problems: no problem {problem!r}; there are {', '.join(PROBLEMS)}")
    baseline = load_counters(args.gate) if args.gate is not None else None
    root = _data_root(args.data_root)
    cases = all_cases(tuple(args.algorithms) if args.algorithms else None)
    if args.problems:
        cases = [case for case in cases if case.params[0] in args.problems]
    missing = sorted({case.data for case in cases if case.data and (root is None or not (root / case.data).exists())})
    counted = [case for case in cases if case.data not in missing]
    if missing:
        print(f"left out {len(cases) - len(counted)} cases: no {', '.join(missing)} under "
              f"{root if root is not None else 'any data root (give --data-root or set METAGRAD_DATA)'}")
    require(counted, "no case to count: every one needs data the data root lacks")
    device = torch.device(args.device)
    results, failures = {}, []
    chosen = (f" --algorithms {','.join(args.algorithms)}" if args.algorithms else "") + \
        (f" --problems {','.join(args.problems)}" if args.problems else "")
    accept = f"metagrad counters{chosen} --save {args.gate}"
    for case in counted:
        counters = gated(prepare(case, device, str(root) if root else None).count())
        results[case.name] = counters
        shown = "  ".join(f"{key}={value:,}" for key, value in counters.items())
        print(f"{case.name}  {shown}" + ("  (not gated: " + case.not_gated + ")" if case.not_gated else ""))
        if baseline is not None and not case.not_gated:
            failure = gate_failure(case.name, counters, baseline, args.gate, accept)
            if failure:
                failures.append(failure)
    if args.save is not None:
        saved, accepted = save_counters(args.save, results, {c.name: c.not_gated for c in counted if c.not_gated},
                                        device.type, torch.__version__, current_commit(Path(args.save).parent))
        for line in accepted:
            print(f"accepted: {line}")
        print(f"wrote {args.save}: {len(saved.benchmarks)} benchmarks gated, {len(saved.not_gated)} not gated")
    if baseline is not None:
        for failure in failures:
            print(failure)
        if failures:
            raise WorkChanged(f"the work of {len(failures)} of {len(counted)} benchmarks differs from {args.gate}")
        print(f"gate: the work of all {len(counted)} benchmarks equals {args.gate}")
