"""One RSS measurement in a fresh process: ``python -m metagrad.bench.harnesses.profile_worker CONFIG_JSON MEASURE_JSON``.

Builds the problem, runs the configuration once as a warm-up (one-time set-up: kernels, thread
pools, allocator arenas), then resets the kernel's peak-RSS mark, runs it again and prints
{"rss_delta_bytes": peak RSS during the run - RSS just before it}.
"""
from __future__ import annotations

import gc
import json
import sys

from metagrad.bench.harnesses.profile import Measure, ProfileConfig, build_problem, runner
from metagrad.bench.measure.memory import peak_rss_bytes, reset_peak_rss, rss_bytes


def main(argv: list[str]) -> int:
    config_fields = json.loads(argv[0])
    for key in ("algorithms", "inner_steps", "cg_sweep"):  # JSON's lists back to the config's tuples (None stays)
        if config_fields[key] is not None:
            config_fields[key] = tuple(config_fields[key])
    config = ProfileConfig(**config_fields)
    measure = Measure(**json.loads(argv[1]))
    problem = build_problem(config)
    run = runner(config, problem, measure)
    run()
    gc.collect()
    before = rss_bytes()
    if not reset_peak_rss():
        print("cannot reset the peak-RSS mark (/proc/self/clear_refs not writable)", file=sys.stderr)
        return 3
    run()
    peak = peak_rss_bytes()
    print(json.dumps({"rss_delta_bytes": max(peak - before, 0), "rss_before_bytes": before}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
