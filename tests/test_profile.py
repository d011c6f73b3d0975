from __future__ import annotations

import pandas as pd
import pytest

import metagrad.bench.harnesses.profile as profile
from metagrad.algorithms import algorithm_names
from metagrad.bench.cli import main


@pytest.mark.slow
def test_profile_command_writes_the_csv_contract(tmp_path):
    out = tmp_path / "profile"
    code = main(["profile", "--out", str(out), "--dataset", "synthetic", "--inner-steps", "1,4",
                 "--cg-sweep", "0,3", "--repeats", "2", "--no-rss", "--no-progress"])
    assert code == 0
    frame = pd.read_csv(out / "profile.csv")
    assert list(frame.columns[:10]) == ["algorithm", "inner_steps", "cg_steps", "device", "time_s", "peak_bytes",
                                        "saved_bytes", "flops", "grad_evals", "hvp_evals"]
    steps = frame[frame["sweep"] == "inner_steps"]
    assert set(steps["algorithm"]) == set(algorithm_names())  # every registered algorithm, plug-ins included
    assert (steps["time_s"] > 0).all() and (steps["flops"] > 0).all() and (frame["status"] == "ok").all()
    # deterministic work counters
    maml = steps[steps["algorithm"] == "maml"].set_index("inner_steps")
    assert maml.loc[4, "grad_evals"] == 5 and maml.loc[4, "hvp_evals"] == 4
    assert maml.loc[4, "flops"] > maml.loc[1, "flops"]
    swept = frame[frame["sweep"] == "cg_steps"]
    assert {"imaml", "imaml-lambda"} <= set(swept["algorithm"])  # every algorithm with a linear system
    for _, cg in swept.groupby("algorithm"):
        cg = cg.set_index("cg_steps")
        assert cg.loc[0, "hvp_evals"] == 0 and cg.loc[3, "hvp_evals"] == 3
    assert (out / "profile.png").stat().st_size > 10_000
    # both engines' tasks per second for the algorithms; none for a plain gradient
    algorithms = frame[frame["sweep"].isin(["inner_steps", "cg_steps"])]
    assert (algorithms["tasks_per_s"] == 1 / algorithms["time_s"]).all()
    assert (algorithms["batched_tasks_per_s"] > 0).all() and (algorithms["batched_tasks"] == 8).all()
    assert frame[frame["sweep"] == "gradient"]["batched_tasks_per_s"].isna().all()


def test_a_meta_batch_that_would_not_fit_is_not_run(monkeypatch):
    monkeypatch.setattr(profile, "available_bytes", lambda device: 0)
    config = profile.ProfileConfig(dataset="synthetic", algorithms=("maml",), inner_steps=(2,), cg_sweep=(),
                                   repeats=1, rss=False)
    frame = profile.run_profile(config, progress=False)
    maml = frame[frame["algorithm"] == "maml"].iloc[0]
    assert maml["status"] == "ok" and maml["tasks_per_s"] > 0 and pd.isna(maml["batched_tasks_per_s"])


def test_out_of_memory_is_recorded_not_raised(tmp_path, monkeypatch):
    original = profile.measure_in_process

    def fake(config, problem, measure):
        if measure.algorithm == "maml" and measure.inner_steps == 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return original(config, problem, measure)

    monkeypatch.setattr(profile, "measure_in_process", fake)
    config = profile.ProfileConfig(dataset="synthetic", inner_steps=(1, 4), cg_sweep=(), repeats=1, rss=False,
                                   algorithms=("maml", "fomaml"))
    frame = profile.run_profile(config, progress=False)
    status = frame.set_index(["algorithm", "inner_steps"])["status"]
    assert status[("maml", 4)] == "oom" and status[("maml", 1)] == "ok" and status[("fomaml", 4)] == "ok"


@pytest.mark.parametrize("argv,fragment", [
    (["--dataset", "synthetic", "--algorithms", "maml,protonet"], "protonet"),
    (["--dataset", "synthetic", "--repeats", "0"], "repeats"),
    (["--dataset", "synthetic", "--device", "tpu"], "--device"),
    (["--dataset", "omniglot", "--data-root", "/nonexistent"], "/nonexistent"),
])
def test_bad_input_exit_2(tmp_path, capsys, argv, fragment):
    out = tmp_path / "p"
    assert main(["profile", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0
    assert not out.exists()


def test_an_interrupted_profile_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    """Each row reaches profile.csv as its configuration finishes; Ctrl-C in the fourth leaves the three before it
    and their figure."""
    measured = profile.measure_in_process
    calls = []

    def interrupted_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return measured(*args, **kwargs)

    monkeypatch.setattr(profile, "measure_in_process", interrupted_fourth)
    out = tmp_path / "profile"
    assert main(["profile", "--out", str(out), "--dataset", "synthetic", "--inner-steps", "1,2", "--cg-sweep", "1",
                 "--repeats", "1", "--no-rss", "--no-progress"]) == 130
    frame = pd.read_csv(out / "profile.csv")
    assert list(frame["algorithm"]) == ["gradient (support)", "gradient (query)", "hvp (support)"]
    assert (out / "profile.png").stat().st_size > 0


def test_without_the_rss_measure_the_figure_leaves_its_panels_out(tmp_path):
    config = profile.ProfileConfig(dataset="synthetic", algorithms=("maml", "imaml"), inner_steps=(1, 2),
                                   cg_sweep=(1,), repeats=1, rss=False, batched_tasks=0)
    frame = profile.run_profile(config, progress=False)
    figure = profile.plot_profile(frame, profile.profile_title(frame))
    assert len(figure.axes) == 4 and "--no-rss" in figure._suptitle.get_text()
    assert all("RSS" not in ax.get_ylabel() for ax in figure.axes)
