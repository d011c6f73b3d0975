"""Where the data sets and the decoded-image cache live."""
from __future__ import annotations

import os
from pathlib import Path

from metagrad.errors import ConfigError

DATA_ROOT_HELP = "the data folder (Omniglot, Mini-ImageNet in their standard layouts)"
DATA_ROOT_DEFAULT = "$METAGRAD_DATA, else the user's data folder: $XDG_DATA_HOME/metagrad or ~/.local/share/metagrad"


def user_data_folder() -> Path:
    """The per-user data folder (the XDG base directory rule): ``$XDG_DATA_HOME/metagrad``, else
    ``~/.local/share/metagrad``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "metagrad"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``--data-root``, else ``$METAGRAD_DATA``, else the user's data folder."""
    if data_root is None:
        data_root = os.environ.get("METAGRAD_DATA") or user_data_folder()
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a folder (give --data-root or set METAGRAD_DATA)")
    return root


def cache_dir() -> Path:
    """``$METAGRAD_CACHE``, else ``~/.cache/metagrad``: the data folder may be read-only."""
    path = Path(os.environ.get("METAGRAD_CACHE") or Path.home() / ".cache" / "metagrad")
    path.mkdir(parents=True, exist_ok=True)
    return path
