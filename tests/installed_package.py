"""A package "installed" for one test: its module and a dist-info with entry points, as pip writes them, in a folder
a subprocess then finds on its PYTHONPATH."""
from __future__ import annotations

import os
from pathlib import Path


def install_package(folder: Path, name: str, module: str, source: str, group: str, entries: dict[str, str]) -> dict:
    """``module``.py holding ``source``, the distribution ``name`` with ``entries`` in the entry-point ``group``; the
    environment of a process that sees it."""
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return {**os.environ, "PYTHONPATH": str(folder)}
