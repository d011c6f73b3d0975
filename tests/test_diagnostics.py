"""The diagnostics behind numbers cited in the code and the notes (``bench/diagnostics/``), each run at a tiny size:
they run as committed, and their own checks hold (the staged product bit for bit the unstaged one; Newton-CG's three
line searches reach vmap's iterate)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from metagrad.bench.diagnostics import channels_last_float32, newton_line_search, shorter_products, staged_products
from tests.limits import HANG_S


def test_staged_products_counts_both_stages_and_checks_them_equal(capsys):
    staged_products.main(["--tasks", "2", "--filters", "4"])
    out = capsys.readouterr().out
    unstaged, first, second = (int(v) for v in re.findall(r"^(?:operations|staged, \w+ stage)[^:]*:\s+(\d+)$", out, re.M))
    assert "bit for bit: True" in out
    assert 0 < second < unstaged and 0 < first < unstaged


def test_shorter_products_counts_fewer_operations_for_the_closed_forms(capsys):
    shorter_products.main([])
    values = [int(v) for v in re.findall(r"(\d+)$", capsys.readouterr().out, re.M)]
    plain, closed, second_order_bn, native_bn, second_order_relu, native_relu, _ = values
    assert closed < plain and second_order_bn < native_bn and second_order_relu < native_relu


@pytest.mark.slow
def test_channels_last_float32_gives_a_float32_sized_difference_per_layout(capsys):
    channels_last_float32.main(["--tasks", "2", "--filters", "4"])
    differences = [float(v) for v in re.findall(r"(\d\.\d+e[-+]\d+)$", capsys.readouterr().out, re.M)]
    # float32 rounding, which iMAML's CG amplifies (the committed 64-filter run: up to 0.1), not a wrong layout
    assert len(differences) == 6 and all(0 < d < 0.5 for d in differences)


@pytest.mark.slow
def test_newton_line_search_reaches_the_same_iterate_with_each_search(capsys, small_data_root):
    root = small_data_root
    newton_line_search.main(["--tasks", "2", "--filters", "4", "--data-root", str(root)])
    out = capsys.readouterr().out
    differences = [float(v) for v in re.findall(r"phi against vmap's: (\S+)\)", out)]
    candidates = [int(v.replace(",", "")) for v in re.findall(r"([\d,]+) task-candidates", out)]
    assert len(differences) == 3 and max(differences) < 1e-10
    whole, searching_only, one_pass = candidates
    assert searching_only < whole == one_pass == 31 * 3 * 2


@pytest.mark.slow
def test_line_search_memory_measures_both_forms_in_processes_of_their_own(small_data_root):
    root = small_data_root
    done = subprocess.run([sys.executable, "-m", "metagrad.bench.diagnostics.line_search_memory", "--settings", "omniglot-5w1s",
                           "--tasks", "1", "--data-root", str(root)], capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    row = done.stdout.strip().splitlines()[-1].split()
    assert row[:3] == ["omniglot-5w1s-imaml-hf", "1", "31"]
    one_pass, searching_only = float(row[3]), float(row[4])
    assert one_pass > 0 and searching_only > 0


@pytest.mark.slow
def test_cli_startup_times_the_top_level_help_and_a_commands(capsys):
    from metagrad.bench.cli import startup as cli_startup

    cli_startup.main(["--repeats", "1", "--commands", "scaling"])
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.rsplit(None, 1)[0].strip() for row in rows] == ['python -c "import torch"', "metagrad --help",
                                                                "metagrad scaling --help"]
    assert all(float(row.rsplit(None, 1)[1]) > 0 for row in rows)
