"""The harness registry: the command line's subcommands, the report's discovery and rendering, and the re-run list
are read from it; a harness from an installed package joins all three by one entry point; nothing else in bench/
names a harness."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from metagrad import ConfigError, Harness
from metagrad.bench.cli import rerun
from metagrad.bench.harnesses.builtin import BUILTIN_HARNESSES
from metagrad.bench.harnesses.registry import harnesses
from metagrad.plugins import DISABLE_PLUGINS
from tests.installed_package import install_package
from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]

# a harness written as a plug-in author would (only `metagrad` imported): a config, a writer, a renderer
SOURCE = '''
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metagrad import Figure, Harness, Rendering, Table, option, require, write_csv


@dataclass(frozen=True)
class CountConfig:
    count: int = option(3, "how many rows")

    def __post_init__(self):
        require(self.count >= 1, f"count must be >= 1, got {self.count}")


def write(config, out, progress=True):
    write_csv(pd.DataFrame({"row": range(config.count)}), Path(out) / "count.csv")


def render(results):
    rows = sum(len(pd.read_csv(result.folder / "count.csv")) for result in results)
    return Rendering((Table("count.md", "Rows counted", f"# Rows\\n\\n{rows} rows in {len(results)} results\\n"),),
                     (Figure("count.png", "Rows counted", lambda: __import__("matplotlib.pyplot").pyplot.figure()),))


HARNESS = Harness("count", summary="count some rows", description="Writes OUT/count.csv.",
                  config="counting:CountConfig", write="counting:write", results=("count.csv",),
                  render="counting:render", rerun=("--count", "2"))
'''


def _metagrad(*args: str, env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metagrad", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=HANG_S)


@pytest.fixture
def counting(tmp_path) -> dict:
    """The environment of a process that sees an installed package with the harness ``count``, beside one whose
    entry point is broken."""
    folder = tmp_path / "site"
    folder.mkdir()
    env = install_package(folder, "counting", "counting", SOURCE, "metagrad.harnesses",
                          {"count": "counting:HARNESS", "broken": "counting:NO_SUCH_NAME"})
    return {**env, "PYTHONPATH": os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_an_installed_harness_is_a_command_a_result_the_report_renders_and_a_rerun(tmp_path, counting):
    shown = _metagrad("--help", env=counting)
    assert shown.returncode == 0 and "count some rows" in shown.stdout
    # the broken entry point is one line naming it, and the rest works
    assert shown.stderr.count("\n") == 1 and "broken = counting:NO_SUCH_NAME" in shown.stderr
    done = _metagrad("count", "--out", str(tmp_path / "results" / "a"), "--count", "4", env=counting)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "results" / "a" / "count.csv")) == 4
    refused = _metagrad("count", "--out", str(tmp_path / "bad"), "--count", "0", env=counting)
    assert refused.returncode == 2 and refused.stderr.strip().endswith("count must be >= 1, got 0")
    assert not (tmp_path / "bad" / "count.csv").exists()
    report = _metagrad("report", "--out", str(tmp_path / "report"), "--results", str(tmp_path / "results"),
                       env=counting)
    assert report.returncode == 0, report.stderr
    assert "4 rows in 1 results" in (tmp_path / "report" / "tables" / "count.md").read_text()
    assert (tmp_path / "report" / "figures" / "count.png").stat().st_size > 0
    index = (tmp_path / "report" / "index.md").read_text()
    assert "- count: `a`" in index and "(tables/count.md)" in index
    listed = subprocess.run([sys.executable, "-c", "import json; from metagrad.bench.cli.rerun import "
                             "plugin_experiments as p; print(json.dumps([(e.folder, [s.command for s in e.steps]) "
                             "for e in p(False)]))"], capture_output=True, text=True, env=counting, cwd=ROOT,
                            timeout=HANG_S)
    assert ["count", ["metagrad count --out '{dir}' --count 2"]] in json.loads(listed.stdout)


def test_without_plugins_no_installed_harness_is_loaded(counting):
    shown = _metagrad("--help", env={**counting, DISABLE_PLUGINS: "1"})
    listed = [line.split()[0] for line in shown.stdout.splitlines() if line.startswith("    ") and line.split()]
    assert shown.returncode == 0 and "count" not in listed and "counters" in listed and shown.stderr == ""


def test_metagrads_own_harnesses_are_the_commands_and_their_renderers_exist():
    from metagrad.bench.cli.command import commands

    listed = commands()
    for builtin in BUILTIN_HARNESSES:
        assert harnesses()[builtin.name] == builtin
        assert (builtin.name in listed) == builtin.runs
        if builtin.runs:
            builtin.help()  # its summary, read from its command module
        if builtin.render:
            assert callable(builtin.load("render"))


@pytest.mark.parametrize("fields, message", [
    ({"name": "two words", "summary": "x"}, "one word"),
    ({"name": "x", "summary": "", "config": "m:C", "write": "m:w"}, "one-line summary"),
    ({"name": "x", "summary": "x", "out": "somewhere"}, "out must be one of"),
    ({"name": "x", "summary": "x", "config": "m:C"}, "a config needs a write function"),
    ({"name": "x", "summary": "x", "command": "m", "config": "m:C", "write": "m:w"}, "not both"),
    ({"name": "x", "summary": "x", "render": "m.render"}, "must be 'module:attribute'"),
    ({"name": "x", "summary": "x", "render": "m:render"}, "result files it renders"),
])
def test_a_malformed_harness_is_refused_with_what_to_write(fields, message):
    with pytest.raises(ConfigError, match=message):
        Harness(**fields)


def test_the_rerun_runs_through_the_command_line_and_prints_what_ran():
    """Every step of the re-run list is a command line the parser takes (the words that run are the words shown)."""
    from metagrad.bench.cli.command import build_parser

    for experiment in rerun.FULL + rerun.QUICK:
        for step in experiment.steps:
            words = step.resolved(Path("/results/x"), Path("/scratch"), rerun.Options(seed=3, data_root="/data"))
            args = build_parser(words[0]).parse_args(words)
            assert args.command == step.argv[0]
            if "seed" in step.shared and "--seed" not in step.argv:
                assert getattr(args, "seed", 3) == 3, step.command


# Words that are a harness's name and also something else: the data splits (a task source's "train" split)
ALSO_SPLITS = {"train"}


def test_no_file_of_bench_names_a_harness_outside_its_own_modules_and_the_registry():
    """A harness's name is written in the registry (builtin.py), in its own modules (the harness, its command,
    its renderer: files named after it) and in the commands of the committed results (cli/rerun.py); anywhere else
    the command line, the report or the re-run would be a second list of harnesses."""
    allowed = {"bench/harnesses/builtin.py", "bench/harnesses/registry.py", "bench/cli/rerun.py"}
    own = {builtin.name: {builtin.name.replace("-", "_"), (builtin.command or "").rsplit(".", 1)[-1],
                          (builtin.render or ":").split(":")[0].rsplit(".", 1)[-1]} for builtin in BUILTIN_HARNESSES}
    wrong = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in own
                    and node.value not in ALSO_SPLITS and path.stem not in own[node.value]):
                wrong.append(f"{relative}:{node.lineno} {node.value!r}")
    assert not wrong, wrong
