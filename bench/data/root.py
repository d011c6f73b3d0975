"""Where the data sets and the decoded-image cache live."""
from __future__ import annotations

import os
from pathlib import Path

from metagrad.errors import ConfigError

DATA_ROOT_HELP = "the data folder (Omniglot, Mini-ImageNet in their standard layouts)"
DATA_ROOT_DEFAULT = "$METAGRAD_DATA, else ../shared/data beside the checkout"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``--data-root``, else ``$METAGRAD_DATA``, else ``../shared/data`` beside the checkout."""
    if data_root is None:
        data_root = os.environ.get("METAGRAD_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a folder (give --data-root or set METAGRAD_DATA)")
    return root


def cache_dir() -> Path:
    """``$METAGRAD_CACHE``, else ``~/.cache/metagrad``: the data folder may be read-only."""
    path = Path(os.environ.get("METAGRAD_CACHE") or Path.home() / ".cache" / "metagrad")
    path.mkdir(parents=True, exist_ok=True)
    return path
