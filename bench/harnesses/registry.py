"""The one list of harnesses: the measurements metagrad runs, the files they write and how the report shows them.

A harness is a ``Harness``: its name (the ``metagrad NAME`` subcommand), its help, how it runs (a config dataclass
whose fields are its options and a function that writes its results, or a command module of its own), the result
files that mark a folder as one of its results, and the function that renders those results as tables and figures.
Every part is named as ``"module:attribute"`` and imported only when used, so that ``metagrad --help`` and this module
import no torch. The command line's subcommands, ``metagrad report``'s discovery and rendering, and the re-run list
are read from here.

A package installed beside metagrad adds harnesses through the entry-point group ``metagrad.harnesses``: each entry
names a ``Harness`` (``variance = "metagrad_variance:HARNESS"``). A plug-in that fails to load is one line on stderr
naming it, and left out. ``METAGRAD_DISABLE_PLUGIN_AUTOLOAD=1`` loads none.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import replace
from typing import Any

from metagrad.bench.harnesses.harness import Figure, Harness, Rendering, Result, Table
from metagrad.errors import require
from metagrad.plugins import load_entry_points

HARNESS_GROUP = "metagrad.harnesses"
__all__ = ["Figure", "Harness", "Rendering", "Result", "Table", "harness", "harness_names", "harnesses",
           "register_harness"]


HARNESSES: dict[str, Harness] = {}
_plugins_loaded = False


def register_harness(harness: Harness) -> Harness:
    """Add ``harness`` to the registry (its name must be new) and return it."""
    require(isinstance(harness, Harness), f"register_harness takes a metagrad.Harness, got {type(harness).__name__}")
    known = HARNESSES.get(harness.name)
    require(known is None or known == harness, f"the harness name {harness.name!r} is taken by {known and known.origin}")
    HARNESSES[harness.name] = harness
    return harness


def load_plugins() -> None:
    """Register every harness of the entry-point group ``metagrad.harnesses``, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    _register_builtins()

    def accept(entry: importlib.metadata.EntryPoint, harness: Any) -> None:
        require(isinstance(harness, Harness), f"it names a {type(harness).__name__}, not a metagrad.Harness")
        register_harness(replace(harness, origin=f"{entry.dist.name if entry.dist else 'a plug-in'} ({entry.value})"))

    load_entry_points(HARNESS_GROUP, "harness", accept)


def harnesses() -> dict[str, Harness]:
    """Every registered harness, metagrad's and the plug-ins', in their order."""
    load_plugins()
    return dict(sorted(HARNESSES.items(), key=lambda item: (item[1].order, item[0])))


def harness_names() -> tuple[str, ...]:
    return tuple(harnesses())


def harness(name: str) -> Harness:
    found = harnesses()
    require(name in found, f"unknown harness {name!r}; choose from {', '.join(found)}")
    return found[name]


def _register_builtins() -> None:
    from metagrad.bench.harnesses.builtin import BUILTIN_HARNESSES

    for builtin in BUILTIN_HARNESSES:
        register_harness(builtin)
