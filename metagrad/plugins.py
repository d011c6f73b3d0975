"""How outside packages join: entry points, loaded once per group, each failure one line on stderr.

Three groups: ``metagrad.algorithms`` (an algorithm class), ``metagrad.datasets`` (a data set) and
``metagrad.harnesses`` (a ``metagrad.Harness``). ``METAGRAD_DISABLE_PLUGIN_AUTOLOAD=1`` loads none of them (as
pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``): what metagrad is without the packages installed beside it. This module
imports nothing heavy.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable
from typing import Any

DISABLE_PLUGINS = "METAGRAD_DISABLE_PLUGIN_AUTOLOAD"


def load_entry_points(group: str, kind: str, accept: Callable[[importlib.metadata.EntryPoint, Any], None]) -> None:
    """``accept(entry, loaded)`` for each entry of the entry-point ``group`` (none under ``DISABLE_PLUGINS``); an
    entry that fails to load or to be accepted is one line on stderr naming it, and left out: a broken plug-in must
    not stop every command."""
    if os.environ.get(DISABLE_PLUGINS):
        return
    for entry in importlib.metadata.entry_points(group=group):
        try:
            accept(entry, entry.load())
        except Exception as error:
            print(f"metagrad: warning: the plug-in {kind} {entry.name} = {entry.value} was not loaded "
                  f"({type(error).__name__}: {error})", file=sys.stderr)
