"""Saved pytest-benchmark runs (``--benchmark-save``), with the work counters each benchmark recorded."""
from __future__ import annotations

import json
import re
from typing import Any

from metagrad.bench.harnesses.harness import Rendering, Result, Table
from metagrad.bench.reporting.renderers.common import markdown_table


def _natural(text: str) -> list:
    """Sort key that puts "maml-4" before "maml-16"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def benchmarks_table(benchmarks: list[tuple[str, dict[str, Any]]]) -> str:
    intro = ("# Saved benchmark runs (pytest-benchmark)\n\nEach saved run of `pytest tests/benchmarks --benchmark-only "
             "--benchmark-save=NAME`: median time per call and calls per second, with the deterministic counters "
             "the benchmark recorded (gradient and Hessian-vector-product evaluations, FLOPs, peak bytes saved for "
             "backward) and the machine it ran on.\n\n")
    if not benchmarks:
        return intro + "No saved benchmark runs were found.\n"
    sections = []
    for name, saved in benchmarks:
        machine = saved["machine_info"]
        fingerprint = machine.get("metagrad", {})
        described = (f"{fingerprint.get('cpu') or machine.get('cpu', {}).get('brand_raw', '?')}, "
                     f"{fingerprint.get('threads', '?')} threads, torch {fingerprint.get('torch', '?')}"
                     + (f", GPUs: {', '.join(fingerprint['gpus'])}" if fingerprint.get("gpus") else ""))
        rows = []
        for bench in sorted(saved["benchmarks"], key=lambda b: _natural(b["fullname"])):
            info, stats = bench.get("extra_info", {}), bench["stats"]

            def count(key: str, info: dict = info) -> str:
                return f"{info[key]:,}" if key in info else "—"

            rows.append([f"`{bench['name']}`", f"{1000 * stats['median']:.2f}", f"{stats['ops']:.1f}",
                         count("grad_evals"), count("hvp_evals"), count("flops"), count("saved_bytes"),
                         count("images")])
        sections.append(f"## `{name}`\n\n{described}; saved {saved.get('datetime', '?')[:10]}.\n\n"
                        + markdown_table(["Benchmark", "Median (ms)", "Per second", "Gradients", "HVPs", "FLOPs",
                                           "Saved bytes", "Images"], rows))
    return intro + "\n".join(sections)


def render(results: list[Result]) -> Rendering:
    benchmarks = []
    for result in results:
        for path in sorted(result.folder.glob("[0-9][0-9][0-9][0-9]_*.json")):
            saved = json.loads(path.read_text())
            if "benchmarks" in saved and "machine_info" in saved:
                benchmarks.append((f"{result.name}/{path.name}", saved))
    benchmarks.sort(key=lambda item: item[0])
    table = Table("benchmarks.md", "Saved pytest-benchmark runs, with their work counters", benchmarks_table(benchmarks))
    return Rendering((table,), index=tuple(f"- benchmark run: `{name}`" for name, _ in benchmarks)
                     or ("- benchmark runs: none",))
