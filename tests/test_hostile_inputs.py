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
