"""``metagrad peers``: every implementation's meta-gradient against metagrad's per-task one, in float64, on a tiny
ConvNet with BatchNorm. higher's MAML is always installed; torchopt's (``pip install -e '.[peers]'``) is compared where
it is, and is one line saying how to install it where it is not."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from metagrad.bench.harnesses.peers import PeersConfig, build, measure_peers, metagrad_peer, torchopt_imaml
from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(filters=4, queries=3, inner_steps=3, repeats=1, meta_batch=2)
HAS_TORCHOPT = importlib.util.find_spec("torchopt") is not None


@pytest.mark.slow
def test_every_installed_peer_computes_metagrads_meta_gradient(capsys):
    frame = measure_peers(PeersConfig(lam=20.0, **TINY))  # lambda 20: I + H/lambda positive definite here
    measured = frame.dropna(subset=["max_rel_diff"])
    assert set(measured["peer"]) >= {"metagrad per-task", "metagrad batched", "higher"}
    assert (measured["max_rel_diff"] < 1e-12).all(), measured[["algorithm", "peer", "max_rel_diff"]]
    assert (measured["time_per_task_s"] > 0).all() and (measured["tasks_per_s"] > 0).all()
    printed = capsys.readouterr().out
    if HAS_TORCHOPT:
        assert {("maml", "torchopt"), ("imaml", "torchopt")} <= set(zip(measured["algorithm"], measured["peer"]))
    else:
        assert "torchopt (maml): not installed (pip install -e '.[peers]')" in printed
        assert frame[frame["peer"] == "torchopt"]["max_rel_diff"].isna().all()


@pytest.mark.skipif(not HAS_TORCHOPT, reason="torchopt not installed (pip install -e '.[peers]')")
def test_on_an_indefinite_system_the_two_cgs_part_and_the_table_says_why():
    """At lambda = 2 this task's I + H/lambda is indefinite: metagrad's CG stops on the first direction of
    non-positive curvature, torchopt's goes on; one step in, before any such direction, the two agree."""
    config = PeersConfig(lam=2.0, **TINY)
    problem = build(config, torch.float64)
    ours, theirs = metagrad_peer("imaml", config, False)(problem, problem.tasks[:1])[0], \
        torchopt_imaml(config)(problem, problem.tasks[:1])[0]
    assert ((ours - theirs).norm() / ours.norm()).item() > 1e-3
    frame = measure_peers(config, say=lambda line: None)
    note = frame[(frame["algorithm"] == "imaml") & (frame["peer"] == "torchopt")]["note"].iloc[0]
    assert "stopped after" in note and "non-positive curvature" in note
    one = PeersConfig(lam=2.0, cg_steps=1, **{k: v for k, v in TINY.items()})
    problem = build(one, torch.float64)
    first = metagrad_peer("imaml", one, False)(problem, problem.tasks[:1])[0]
    assert ((first - torchopt_imaml(one)(problem, problem.tasks[:1])[0]).norm() / first.norm()).item() < 1e-12


@pytest.mark.slow
def test_the_command_writes_its_table_and_figure(tmp_path):
    out = tmp_path / "peers"
    run = subprocess.run([sys.executable, "-m", "metagrad", "peers", "--out", str(out), "--filters", "4",
                          "--queries", "3", "--inner-steps", "2", "--repeats", "1", "--meta-batch", "2"],
                         capture_output=True, text=True, timeout=HANG_S, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(out / "peers.csv")
    assert {"metagrad per-task", "metagrad batched", "higher", "torchopt"} <= set(frame["peer"])
    assert (out / "peers.png").stat().st_size > 0 and run.stderr == ""
