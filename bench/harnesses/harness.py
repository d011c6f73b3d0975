"""What a harness is: its parts, named as "module:attribute" and imported when used, and what its renderer
returns (tables and figures). The registry of harnesses is ``registry.py``; metagrad's own are in ``builtin.py``."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metagrad.errors import require

OUTPUTS = ("folder", "file", "none")


@dataclass(frozen=True)
class Result:
    """One result a harness wrote: its folder and the name the report gives it (the folder, relative to its
    results root)."""

    name: str
    folder: Path


@dataclass(frozen=True)
class Table:
    filename: str  # under the report's tables/
    title: str  # the index's line for it
    text: str  # markdown


@dataclass(frozen=True)
class Figure:
    filename: str  # under the report's figures/
    title: str
    draw: Callable[[], Any]  # makes the matplotlib Figure; the report draws, saves and closes one at a time


@dataclass(frozen=True)
class Rendering:
    """What a harness's ``render`` returns: its tables and figures; the index's lines for the results it read (None:
    one line per result, ``- LABEL: `NAME```; empty where another harness lists the same folders); and what the index
    should say is missing (one line each, e.g. "Figure 2a (no exact_solve.csv)")."""

    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    index: tuple[str, ...] | None = None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Harness:
    """A registered measurement. ``config``/``write``/``command``/``render`` are ``"module:attribute"`` names.

    - ``config`` and ``write``: the config dataclass (its fields, built with ``metagrad.bench.options.option``, are the
      command's options) and ``write(config, out, progress) -> Any``, which writes the results under ``out``. The
      command line is then built for it: ``--out``, the config's options, ``--no-progress``.
    - ``command``: instead, a module with ``add_arguments(parser)`` and ``run(args)``, for a command the config alone
      does not describe (``train``'s presets and resume, ``eval``'s run folder).
    - ``results``: file names (``fnmatch`` patterns) that, all present in one folder, make it one of its results.
    - ``render``: ``render(results: list[Result]) -> Rendering``, tables and figures from result files alone (pure
      pandas and matplotlib: it reads, it does not compute).
    - ``rerun`` and ``quick``: the options of its entry in ``metagrad report --rerun`` and ``--quick``, which run
      ``metagrad NAME --out OUT/NAME`` with them (metagrad's own harnesses are in the re-run's list of experiments).
    """

    name: str
    summary: str = ""  # one line, for metagrad --help (a command module's docstring gives its own)
    description: str = ""  # the command's --help
    config: str | None = None
    write: str | None = None
    command: str | None = None
    out: str = "folder"  # what --out names: a folder, a file, or nothing (the command writes into a run folder)
    results: tuple[str, ...] = ()
    render: str | None = None
    result_label: str = ""  # how the report's index names one of its results (default: the harness's name)
    # its own entry in `metagrad report --rerun` (and --quick): the words after `metagrad NAME --out DIR` (None: none)
    rerun: tuple[str, ...] | None = None
    quick: tuple[str, ...] | None = None
    order: int = 100  # its place in metagrad --help and the report
    origin: str = "metagrad"

    def __post_init__(self) -> None:
        require(bool(self.name) and self.name == self.name.strip() and " " not in self.name,
                f"a harness's name is one word, got {self.name!r}")
        require(bool(self.summary) or self.command is not None or not (self.write or self.render),
                f"harness {self.name}: give a one-line summary")
        require(self.out in OUTPUTS, f"harness {self.name}: out must be one of {', '.join(OUTPUTS)}, got {self.out!r}")
        require(self.command is None or (self.config is None and self.write is None),
                f"harness {self.name}: give either a command module or a config and a write function, not both")
        require((self.config is None) == (self.write is None),
                f"harness {self.name}: a config needs a write function and a write function a config")
        for part in ("config", "write", "render"):
            value = getattr(self, part)
            require(value is None or value.count(":") == 1, f"harness {self.name}: {part} must be 'module:attribute', "
                    f"got {value!r}")
        require(self.render is None or bool(self.results), f"harness {self.name}: a render function needs the "
                "result files it renders (results)")

    def help(self) -> tuple[str, str]:
        """Its summary and description: its own, or its command module's docstring (a summary line, a blank line, the
        description)."""
        if self.command is not None and not self.summary:
            summary, _, description = (self.load("command").__doc__ or self.name).partition("\n\n")
            return summary.strip().rstrip("."), " ".join(description.split())
        return self.summary.rstrip("."), " ".join(self.description.split())

    @property
    def runs(self) -> bool:
        """Whether it is a command (some harnesses only render results another tool writes)."""
        return self.command is not None or self.write is not None

    def load(self, part: str) -> Any:
        """The object ``part`` ("config", "write", "command" or "render") names, imported now."""
        value = getattr(self, part)
        require(value is not None, f"harness {self.name} has no {part}")
        if part == "command":
            return importlib.import_module(value)
        module, attribute = value.split(":")
        return getattr(importlib.import_module(module), attribute)
