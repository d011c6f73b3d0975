"""The README is a guide that stays true: at most 300 lines, its links resolve, its API snippet runs as written,
and its small commands are the ones reports/small-commands/run.sh runs and times."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_guide_of_at_most_300_lines():
    assert len(README.splitlines()) <= 300


def test_every_relative_link_and_named_path_resolves():
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", README) if not link.startswith("http")]
    paths = re.findall(r"`((?:reports|bench|algorithms|tests)/[\w./-]+)`", README)
    assert links and paths
    missing = [path for path in links + paths if not (ROOT / path.rstrip("/")).exists()]
    assert not missing, missing


@pytest.mark.slow
def test_the_api_snippet_runs_as_written(small_data_root):
    snippet = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=ROOT, timeout=HANG_S,
                          env={**os.environ, "METAGRAD_DATA": str(small_data_root)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning from a dependency either
    first, second, difference = done.stdout.strip().splitlines()
    assert first.startswith("torch.Size([112965])") and second.startswith("torch.Size([4, 112965])")
    assert float(difference) < 1e-4  # the two engines' meta-gradients of the same task, float32


def test_the_small_commands_are_the_ones_the_committed_script_runs():
    small = [line.split("#")[0].strip() for line in README.splitlines() if re.search(r"#\s*small\b", line)]
    script = (ROOT / "reports" / "small-commands" / "run.sh").read_text()
    run = [line[2:].strip() for line in script.splitlines() if line.startswith("t ")]
    assert small and small == run
    timed = (ROOT / "reports" / "small-commands" / "times.txt").read_text().splitlines()[1:]
    assert [line.split(None, 1)[1] for line in timed] == run  # the committed times are of these commands


def test_the_plug_in_walk_through_shows_the_example_as_it_is():
    """The README's ANIL contract is the class's: its base, its class attributes' values, its methods."""
    import ast

    from metagrad_anil import ANIL

    (cls,) = [node for node in ast.parse(re.findall(r"```python\n(.*?)```", README, re.S)[1]).body
              if isinstance(node, ast.ClassDef)]
    assert cls.name == ANIL.__name__ and [base.id for base in cls.bases] == [ANIL.__bases__[0].__name__]
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            assert getattr(ANIL, node.target.id) == ast.literal_eval(node.value), node.target.id
        else:
            assert isinstance(node, ast.FunctionDef) and callable(getattr(ANIL, node.name)), ast.dump(node)
            shown = [arg.arg for arg in node.args.args]
            assert shown == list(getattr(ANIL, node.name).__code__.co_varnames[:len(shown)]), node.name
