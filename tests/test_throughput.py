"""`metagrad throughput`: the CSV contract, the engines doing the same work, and bad input."""
from __future__ import annotations

import pandas as pd
import pytest

from metagrad.bench.cli import main
from metagrad.bench.harnesses.throughput import COLUMNS


@pytest.mark.slow
def test_throughput_writes_its_csv_and_plot_and_the_engines_agree(tmp_path, capsys, small_data_root):
    root = small_data_root
    out = tmp_path / "tp"
    assert main(["throughput", "--out", str(out), "--presets", "omniglot-5w1s-maml,omniglot-5w1s-imaml-gd",
                 "--filters", "4", "--meta-batch", "2", "--iterations", "1", "--warmup", "0",
                 "--data-root", str(root), "--no-progress"]) == 0
    frame = pd.read_csv(out / "throughput.csv")
    assert list(frame.columns) == COLUMNS
    assert (out / "throughput.png").stat().st_size > 0
    assert len(frame) == 4 and set(frame["engine"]) == {"per-task", "batched"}
    assert (frame["tasks_per_s"] > 0).all() and (frame["meta_batch"] == 2).all()
    assert (frame["operations_per_meta_batch"] > 0).all()
    for _, rows in frame.groupby("preset"):
        per_task, batched = (rows[rows["engine"] == e].iloc[0] for e in ("per-task", "batched"))
        assert per_task["grad_evals"] == batched["grad_evals"]
        assert 0 <= batched["max_rel_diff_vs_per_task"] < 1e-10  # float64
        assert 0 <= batched["max_rel_diff_float32"] < 1.0
    imaml = frame[frame["algorithm"] == "imaml"]
    assert (imaml["hvp_evals"] > 0).all()
    assert "batched_over_per_task" in capsys.readouterr().out
    assert not frame["channels_last"].any()
    # the stacked network channels last: the batched rows say so, and still equal the per-task engine
    assert main(["throughput", "--out", str(out / "nhwc"), "--presets", "omniglot-5w1s-imaml-gd", "--engines",
                 "batched", "--channels-last", "--filters", "4", "--meta-batch", "2", "--iterations", "1",
                 "--warmup", "0", "--data-root", str(root), "--no-progress"]) == 0
    nhwc = pd.read_csv(out / "nhwc" / "throughput.csv")
    assert nhwc["channels_last"].all() and (nhwc["max_rel_diff_vs_per_task"] < 1e-10).all()


@pytest.mark.slow
def test_any_registered_algorithm_is_measured_at_its_defaults_presets_or_none(tmp_path, monkeypatch, small_data_root):
    """--algorithms: a plug-in with no preset (the simplest one) gets a row at its default hyperparameters on the
    default setting's tasks, beside a built-in's."""
    from dataclasses import dataclass
    from typing import ClassVar

    import metagrad.algorithms.registry as registry
    from metagrad.algorithms.protocol import InnerGradientDescentConfig
    from metagrad.bench.training.presets import presets
    from tests.test_registry import StepFromAdaptation

    monkeypatch.setattr(registry, "ALGORITHMS", dict(registry.ALGORITHMS))
    monkeypatch.setattr(registry, "ENTRIES", dict(registry.ENTRIES))

    @dataclass(frozen=True)
    class NoPresets(StepFromAdaptation):
        name: ClassVar[str] = "test-no-presets"

    registry.register(NoPresets, origin="a test")
    assert not any(settings["algorithm"] == "test-no-presets" for settings in presets().values())
    assert isinstance(NoPresets(), InnerGradientDescentConfig)
    out = tmp_path / "tp"
    assert main(["throughput", "--out", str(out), "--algorithms", "test-no-presets,maml", "--filters", "4",
                 "--meta-batch", "2", "--iterations", "1", "--warmup", "0", "--data-root",
                 str(small_data_root), "--no-progress"]) == 0
    frame = pd.read_csv(out / "throughput.csv")
    assert list(frame["preset"]) == ["omniglot-5w1s-test-no-presets-defaults"] * 2 + ["omniglot-5w1s-maml-defaults"] * 2
    assert (frame["tasks_per_s"] > 0).all() and (frame["max_rel_diff_vs_per_task"].fillna(0) < 1e-10).all()
    plug_in = frame[frame["algorithm"] == "test-no-presets"]
    assert list(plug_in["task_by_task"]) == [False, True] and (plug_in["grad_evals"] == 6).all()  # 5 steps + query


@pytest.mark.parametrize("argv,fragment", [
    (["--algorithms", "protonet"], "unknown algorithm 'protonet'; registered: maml"),
    (["--presets", "omniglot-5w1s-protonet"], "unknown preset"),
    (["--engines", "turbo"], "engines"),
    (["--iterations", "0"], "iterations"),
])
def test_bad_throughput_input_is_one_line_exit_2(tmp_path, capsys, argv, fragment):
    out = tmp_path / "tp"
    assert main(["throughput", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()


def test_throughput_out_naming_a_file_is_exit_2(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep")
    assert main(["throughput", "--out", str(out), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err and out.read_text() == "keep"


@pytest.mark.slow
def test_traced_rows_with_the_device_sampler_say_where_the_time_goes(tmp_path, small_data_root):
    root = small_data_root
    out = tmp_path / "tp"
    assert main(["throughput", "--out", str(out), "--presets", "omniglot-5w1s-fomaml", "--filters", "4",
                 "--meta-batch", "2", "--iterations", "2", "--warmup", "0", "--sampler", "device", "--trace",
                 "--data-root", str(root), "--no-progress"]) == 0
    frame = pd.read_csv(out / "throughput.csv")
    assert set(frame["sampler"]) == {"device"}
    # on the CPU there is no CUDA runtime to call: the counts are zero, not missing
    assert (frame[["kernel_launches_per_iteration", "host_syncs_per_iteration", "copies_per_iteration"]] == 0).all().all()
    for engine in ("per-task", "batched"):
        text = (out / f"trace-omniglot-5w1s-fomaml-{engine}.txt").read_text()
        assert "kernel launches per iteration: 0" in text and "aten::convolution" in text
    untraced = tmp_path / "plain"
    assert main(["throughput", "--out", str(untraced), "--presets", "omniglot-5w1s-fomaml", "--filters", "4",
                 "--meta-batch", "2", "--iterations", "1", "--warmup", "0", "--engines", "batched",
                 "--data-root", str(root), "--no-progress"]) == 0
    assert pd.read_csv(untraced / "throughput.csv")["kernel_launches_per_iteration"].isna().all()
    assert not list(untraced.glob("trace-*"))


@pytest.mark.slow
def test_a_stopped_throughput_run_keeps_its_finished_rows_and_the_check_can_be_skipped(tmp_path, monkeypatch, small_data_root):
    """The CSV is rewritten after every row (tools/gpu_checks.py stops a run at its timeout); --check-tasks 0
    leaves the comparison's columns empty, a positive count compares that many tasks."""
    import metagrad.bench.harnesses.throughput

    root = small_data_root
    measure, calls = metagrad.bench.harnesses.throughput.measure, []

    def measure_then_stop(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[2])
        return measure(*args, **kwargs)

    monkeypatch.setattr(metagrad.bench.harnesses.throughput, "measure", measure_then_stop)
    out = tmp_path / "tp"
    argv = ["throughput", "--out", str(out), "--presets", "omniglot-5w1s-fomaml,omniglot-5w1s-maml", "--filters", "4",
            "--meta-batch", "3", "--iterations", "1", "--warmup", "0", "--data-root", str(root), "--no-progress"]
    assert main([*argv, "--check-tasks", "0"]) == 130
    frame = pd.read_csv(out / "throughput.csv")
    assert calls == ["per-task", "batched"] and list(frame["engine"]) == calls
    batched = frame[frame["engine"] == "batched"]
    assert batched[["max_rel_diff_vs_per_task", "max_rel_diff_float32"]].isna().all().all()
    assert not list(out.glob(".*.tmp"))
    calls.clear()
    assert main([*argv, "--check-tasks", "2", "--engines", "batched"]) == 0
    checked = pd.read_csv(out / "throughput.csv")
    assert len(checked) == 2 and (checked["max_rel_diff_vs_per_task"] < 1e-10).all()
