"""Inputs a hostile user would try, each a class of problem: numbers past what the machine holds or can do in
reasonable time, non-finite numbers, lists with repeats. Each is one line on stderr and exit 2, before anything is
computed or written (issue 41's table, the numeric-domain rows)."""
from __future__ import annotations

import pytest

from metagrad.bench.cli import main

HUGE = str(2**70)

CASES = [
    (["exact-solve", "--seed", HUGE], "--seed must be at most 2**63 - 1 in size"),
    (["exact-solve", "--seed", "-1"], "--seed must be from 0 to 2**63 - 1"),
    (["train", "--preset", "omniglot-5w1s-maml", "--seed", HUGE], "--seed must be at most 2**63 - 1 in size"),
    (["eval", "no-such-run", "--seed", HUGE], "--seed must be at most 2**63 - 1 in size"),
    (["train", "--preset", "omniglot-5w1s-maml", "--filters", "100000000000"], "--filters must be at most 4096"),
    (["profile", "--filters", "100000000000"], "--filters must be at most 4096"),
    (["train", "--preset", "omniglot-5w1s-maml", "--max-minutes", "inf"], "--max-minutes must be a finite number"),
    (["train", "--preset", "omniglot-5w1s-maml", "--validation-tasks", "1000000000"],
     "--validation-tasks must be at most 1e+06"),
    (["exact-solve", "--inner-steps", "99999999999999999999"], "--inner-steps must be at most 2**63 - 1 in size"),
    (["exact-solve", "--inner-steps", "1,200000"], "--inner-steps must be at most 100000"),
    (["exact-solve", "--algorithms", "maml,maml"], "--algorithms gives maml more than once"),
    (["exact-solve", "--lam", "inf"], "--lam must be a finite number"),
    (["exact-solve", "--kappa", "nan"], "--kappa must be a finite number"),
    (["train", "--dataset", "folder", "--image-size", "100000", "--algorithm", "maml"], "--image-size must be at most"),
    (["train", "--preset", "omniglot-5w1s-maml", "--train-shots", "0"], "train shots must be >= 1"),
    (["profile", "--cg-steps", "-1"], "CG steps must be >= 0"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(argv)[:60] for argv, _ in CASES])
def test_a_number_outside_its_domain_is_one_line_and_nothing_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result")
    words = [*argv, "--out", str(out)] if argv[0] not in ("eval",) else argv
    assert main(words) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err, err
    assert sorted(path.name for path in out.iterdir()) == ["earlier.txt"]


@pytest.mark.slow
def test_a_resume_that_would_train_nothing_is_refused_and_the_run_left_as_it_was(tmp_path, capsys):
    from tests.data_paths import require_data

    root = require_data("omniglot-py")
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress", "--dataset", "omniglot", "--algorithm", "fomaml", "--ways",
            "5", "--shots", "1", "--queries", "2", "--filters", "4", "--meta-batch", "2", "--iterations", "2",
            "--validate-every", "2", "--validation-tasks", "2", "--data-root", str(root)]
    assert main(argv) == 0
    before = (out / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--iterations", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has done 2 iterations; give more to go on" in err, err
    assert (out / "config.json").read_text() == before
