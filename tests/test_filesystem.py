"""A filesystem that says no: every command that writes a folder checks it can before any work starts; a write that
fails later is one line naming the path; a cache that cannot be written or is damaged is a warning, never a failure.

Root ignores permission bits, so an unwritable place is made as a path below a file (no folder can be made there) or a
folder squatting on a result file's name, which fail for root too."""
from __future__ import annotations

import pytest
import torch

from metagrad.bench.cli import main
from metagrad.bench.cli.command import _writes_a_folder, commands
from metagrad.bench.data import root as data_root

# what each command needs beside --out to reach the check (the others need nothing)
POSITIONAL = {"scaling": ["a-run"]}


@pytest.mark.parametrize("command", [name for name in commands() if _writes_a_folder(name)])
def test_every_command_that_writes_a_folder_refuses_one_that_cannot_be_made_before_any_work(tmp_path, capsys,
                                                                                              command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "results"
    assert main([command, *POSITIONAL.get(command, []), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{blocker} is a file, so no folder can be made below it" in err, err
    assert blocker.read_text() == "not a folder"


def test_a_write_that_fails_after_the_work_is_one_line_naming_the_path(tmp_path, capsys):
    (tmp_path / "exact_solve.csv").mkdir()  # a folder where the result file goes
    argv = ["exact-solve", "--out", str(tmp_path), "--inner-steps", "1", "--seeds", "1", "--tasks", "1",
            "--algorithms", "fomaml", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metagrad exact-solve: error: cannot write or read") and err.count("\n") == 0, err
    assert "exact_solve.csv" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exact_solve.csv"]  # no temporary file left


def test_a_cache_that_cannot_be_made_is_a_warning_and_the_value_is_returned(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("METAGRAD_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(data_root, "_warned", set())
    value = data_root.cached("values.pt", lambda: torch.arange(3))
    assert value.tolist() == [0, 1, 2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metagrad: warning: the cache folder" in err and "decoding without a cache" in err


def test_a_damaged_cache_file_is_decoded_again_and_rewritten(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path))
    monkeypatch.setattr(data_root, "_warned", set())
    (tmp_path / "values.pt").write_bytes(b"PK\x03\x04 truncated")
    made = []
    value = data_root.cached("values.pt", lambda: made.append(1) or torch.ones(2))
    assert value.tolist() == [1.0, 1.0] and made == [1]
    assert "is damaged" in capsys.readouterr().err
    assert torch.load(tmp_path / "values.pt").tolist() == [1.0, 1.0]  # rewritten whole
    again = data_root.cached("values.pt", lambda: made.append(2) or torch.zeros(2))
    assert again.tolist() == [1.0, 1.0] and made == [1]  # read back, not made again


def test_a_cache_file_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path))
    monkeypatch.setattr(data_root, "_warned", set())
    (tmp_path / "values.pt").mkdir()  # a folder squatting on the cache file's name
    assert data_root.cached("values.pt", lambda: torch.ones(1)).tolist() == [1.0]
    assert "cannot be written" in capsys.readouterr().err
