"""The memory measures themselves, on cases whose size is known."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from metagrad.bench.measure.memory import SavedTensorPeak, subprocess_environment

MIB = 2**20


def test_saved_bytes_count_each_storage_once():
    x = torch.randn(1000, 1000, requires_grad=True)  # 4,000,000 bytes
    with SavedTensorPeak() as saved:
        y = (x * x).sum()  # mul saves x twice: one storage
    assert saved.peak_bytes == 4_000_000 and saved.saves == 2
    a = torch.randn(500, 1000, requires_grad=True)
    with SavedTensorPeak() as saved:
        z = (x[:500] * a).sum()  # a view of x: its whole storage is pinned
    assert saved.peak_bytes == 4_000_000 + 2_000_000
    del y, z


def test_saved_bytes_are_a_peak_not_a_total():
    x = torch.randn(256, 1024, requires_grad=True)  # 1 MiB
    with SavedTensorPeak() as saved:
        for _ in range(10):
            w = x * 2.0  # not saved: a constant factor needs nothing for backward
            loss = (w.exp()).sum()  # exp saves its 1 MiB output
            loss.backward()  # frees the graph
            assert saved.current_bytes == 0
    assert saved.peak_bytes == 1 * MIB
    assert saved.saves == 10


def test_saved_bytes_are_released_with_an_unused_graph():
    x = torch.randn(256, 1024, requires_grad=True)
    with SavedTensorPeak() as saved:
        y = x.tanh()  # saves its output: the case that leaks if the pack hook keeps the grad_fn
        assert saved.current_bytes == 1 * MIB
        del y
    assert saved.current_bytes == 0


@pytest.mark.slow
def test_peak_rss_delta_sees_a_known_allocation():
    code = (
        "import json, torch, gc\n"
        "from metagrad.bench.measure.memory import rss_bytes, reset_peak_rss, peak_rss_bytes\n"
        "t = torch.ones(1024, 1024); del t; gc.collect()\n"
        "before = rss_bytes(); assert reset_peak_rss()\n"
        "t = torch.ones(64, 1024, 1024)  # 256 MiB, touched\n"
        "del t\n"
        "print(json.dumps({'delta': peak_rss_bytes() - before, 'after': rss_bytes() - before}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=subprocess_environment())
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert abs(result["delta"] - 256 * MIB) <= 0.03 * 256 * MIB
    assert result["after"] < 8 * MIB  # freed memory went back: RSS follows live memory
