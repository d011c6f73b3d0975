"""Inputs a hostile user would try, each a class of problem: numbers past what the machine holds or can do in
reasonable time, non-finite numbers, lists with repeats, a filesystem that says no, hostile data, a run that has
moved, arguments the parser refuses. Each is one line on stderr and exit 2, before anything is computed or written:
in-process for the numeric domains (fast), then issue 41's table as a user meets it, each case its own process."""
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
     "--validation-tasks must be at most 1000000, got 1000000000"),
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


def test_every_integer_option_of_every_command_has_a_largest_value():
    """The class, not the cases: an integer option without ``at_most`` (a count of steps, tasks, images, repeats)
    would take a value that runs for ever or exhausts memory. Seeds have their own domain."""
    from metagrad.bench.harnesses.registry import harnesses
    from metagrad.bench.options import annotation, options_of
    from metagrad.bench.training.config import EvalConfig, TrainConfig

    configs = [TrainConfig, EvalConfig] + [harness.load("config") for harness in harnesses().values() if harness.config]
    unbounded = [f"{config.__name__}.{field.name}" for config in configs for field in options_of(config)
                 if annotation(field).replace(" | None", "") in ("int", "tuple[int, ...]")
                 and not (field.name == "seed" or field.name.endswith("_seed") or field.metadata.get("at_most"))]
    assert not unbounded, f"integer options without at_most: {unbounded}"


@pytest.mark.slow
def test_a_resume_that_would_train_nothing_is_refused_and_the_run_left_as_it_was(tmp_path, capsys, small_data_root):
    root = small_data_root
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


# Issue 41's table, as a user meets it: each a separate process (`python -m metagrad ...`), every class of input at
# least once. Placeholders: {out} a folder holding an earlier result, {file} a file, {images} a folder data set,
# {bomb} one whose first image's header claims 15000 x 15000 pixels, {run} a training run without its checkpoint.
# Read-only places are made as a path below a file, which no process can create, root included.
TABLE = [
    # numbers past what the machine holds or can do in reasonable time
    ("train --preset omniglot-5w1s-maml --set inner_steps=99999999999999999999 --out {out}/run",
     "maml: inner_steps must be a finite number of at most 100000"),
    ("train --preset omniglot-5w1s-imaml-gd --set lam=1e400 --out {out}/run", "imaml: lam must be a finite number"),
    ("train --preset omniglot-5w1s-maml --threads 100000000 --out {out}/run", "--threads must be from 1 to 1024"),
    ("train --preset omniglot-5w1s-maml --meta-batch 100000000000 --out {out}/run", "--meta-batch must be at most 10000"),
    ("exact-solve --seeds 100000000000 --out {out}", "--seeds must be at most 10000"),
    ("exact-solve --dim 100000000 --out {out}", "--dim must be at most 10000"),
    ("throughput --meta-batch 100000000000 --out {out}", "--meta-batch must be at most 10000"),
    ("variance --tasks 100000000000 --out {out}", "--tasks must be at most 100000"),
    ("report --seed 99999999999999999999 --quick --out {out}", "a seed is from 0 to 2**63 - 1"),
    ("train --preset omniglot-5w1s-maml --max-minutes 1e308 --out {out}/run", "--max-minutes must be at most 1000000"),
    ("eval {run} --tasks 1000001", "--tasks must be at most 1000000, got 1000001"),
    ("eval {run} --seed 99999999999999999999", "--seed must be at most 2**63 - 1 in size"),
    # arguments the parser refuses: one line too
    ("exact-solve --inner-steps , --out {out}", "expected comma-separated integers"),
    ("profile --dataset nope --out {out}", "invalid choice: 'nope'"),
    # a filesystem that says no
    ("train --preset omniglot-5w1s-maml --out {file}/run", "is a file, so no folder can be made below it"),
    ("exact-solve --out {file}/results", "is a file, so no folder can be made below it"),
    ("report --results {out} --out {file}/report", "is a file, so no folder can be made below it"),
    ("eval {file}", "is a file, not a run folder"),
    ("train --dataset folder --data-root '' --algorithm maml --out {out}/run", "--data-root is empty"),
    # data that is hostile
    ("train --dataset folder --data-root {bomb} --algorithm maml --image-size 16 --ways 2 --queries 2 --out {out}/run",
     "is too large to decode (Image size (225000000 pixels)"),
    ("train --dataset folder --data-root {images} --algorithm maml --image-size 100000 --out {out}/run",
     "--image-size must be at most 1024"),
    ("train --dataset folder --data-root {images} --algorithm maml --ways 5 --queries 2 --image-size 16 --out {out}/run",
     "give --ways 2 or fewer, or more classes to the val split with --class-split TRAIN,VAL"),
    ("train --dataset omniglot --algorithm maml --class-split 0.5,0.2 --out {out}/run",
     "--class-split is a folder's or a plug-in data set's; omniglot has its own split"),
    # a run that has moved, and the check of an algorithm that is not there
    ("eval {run} --tasks 2", "is not a folder: give --data-root where its data set is now"),
    ("algorithms --check protonet", "--check protonet: no such algorithm"),
    ("throughput --algorithms protonet --out {out}", "unknown algorithm 'protonet'"),
    # silently accepted before
    ("exact-solve --algorithms maml,maml --out {out}", "--algorithms gives maml more than once"),
    ("train --preset omniglot-5w1s-maml --train-shots 0 --out {out}/run", "train shots must be >= 1"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    import json
    import struct
    import zlib
    from pathlib import Path

    from tests.test_folder_dataset import write_images

    root = tmp_path_factory.mktemp("hostile")
    images = write_images(root / "images")
    bomb = write_images(root / "bomb")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (bomb / "class00" / "00.png").write_bytes(  # a valid PNG header, 15000 x 15000 RGB, and almost no data
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 15000, 15000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    run = root / "run"
    run.mkdir()
    saved = json.loads((Path(__file__).parents[1] / "reports" / "cpu-training" / "omniglot-5w1s-anil" /
                        "config.json").read_text())
    saved["config"].update(dataset="folder", data_root=str(root / "moved-away"), image_size=16, ways=2, queries=2)
    (run / "config.json").write_text(json.dumps(saved))
    (root / "a-file").write_text("not a folder")
    return {"images": images, "bomb": bomb, "run": run, "file": root / "a-file", "root": root}


def _snapshot(folder) -> dict:
    return {str(path): (path.read_bytes() if path.is_file() else None) for path in sorted(folder.rglob("*"))
            if "cache" not in path.parts}


@pytest.mark.slow
@pytest.mark.parametrize("line, message", TABLE, ids=[line[:60] for line, _ in TABLE])
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(tmp_path, places, line, message):
    import os
    import shlex
    import subprocess
    import sys

    from tests.limits import HANG_S

    out = tmp_path / "results"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result")
    words = [word.format(out=out, **{key: value for key, value in places.items() if key != "root"})
             for word in shlex.split(line)]
    before = {**_snapshot(tmp_path), **_snapshot(places["root"])}
    environment = {**os.environ, "METAGRAD_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", "metagrad", *words], capture_output=True, text=True,
                          timeout=HANG_S, env=environment)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, (proc.returncode, err)
    assert message in err, err
    assert {**_snapshot(tmp_path), **_snapshot(places["root"])} == before


@pytest.mark.parametrize("group, reset", [("metagrad.datasets", "metagrad.bench.data.sources:_plugins"),
                                          ("metagrad.algorithms", "metagrad.algorithms.registry:_plugins_loaded"),
                                          ("metagrad.harnesses", "metagrad.bench.harnesses.registry:_plugins_loaded")])
def test_a_plug_in_entry_point_naming_a_number_is_one_warning_naming_it(monkeypatch, capsys, group, reset):
    """An entry point that names something that is not an algorithm class, a data set or a harness (here math.pi):
    one line naming the entry and what it should name; the command goes on without it."""
    import importlib
    import importlib.metadata

    import metagrad.plugins

    module, attribute = reset.split(":")
    assert hasattr(importlib.import_module(module), attribute)
    entry = importlib.metadata.EntryPoint(name="not-a-plug-in", value="math:pi", group=group)
    monkeypatch.setattr(metagrad.plugins.importlib.metadata, "entry_points",
                        lambda group=None: [entry] if group == entry.group else [])
    monkeypatch.setattr(importlib.import_module(module), attribute, None if "sources" in module else False)
    if group == "metagrad.datasets":
        from metagrad.bench.data.sources import plugin_datasets as load
    elif group == "metagrad.algorithms":
        from metagrad.algorithms.registry import load_plugins as load
    else:
        from metagrad.bench.harnesses.registry import load_plugins as load
    load()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "warning: the plug-in" in err and "not-a-plug-in = math:pi was not loaded" in err
    assert "__qualname__" not in err and "float" in err, err
