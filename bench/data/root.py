"""Where the data sets and the decoded-image cache live."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from metagrad.bench.atomic import atomic_path
from metagrad.errors import ConfigError

T = TypeVar("T")

DATA_ROOT_HELP = "the data folder (Omniglot, Mini-ImageNet in their standard layouts)"
DATA_ROOT_DEFAULT = "$METAGRAD_DATA, else the user's data folder: $XDG_DATA_HOME/metagrad or ~/.local/share/metagrad"


def user_data_folder() -> Path:
    """The per-user data folder (the XDG base directory rule): ``$XDG_DATA_HOME/metagrad``, else
    ``~/.local/share/metagrad``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "metagrad"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``--data-root``, else ``$METAGRAD_DATA``, else the user's data folder."""
    if data_root is not None and not str(data_root).strip():
        raise ConfigError("--data-root is empty; give the folder that holds the data")
    if data_root is None:
        data_root = os.environ.get("METAGRAD_DATA") or user_data_folder()
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a folder (give --data-root or set METAGRAD_DATA)")
    return root


def cache_dir() -> Path | None:
    """``$METAGRAD_CACHE``, else ``~/.cache/metagrad``, created where missing; None (said once on stderr) where it
    cannot be: a cache is a convenience, and the run goes on without it."""
    path = Path(os.environ.get("METAGRAD_CACHE") or Path.home() / ".cache" / "metagrad")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _warn_once(f"the cache folder {path} cannot be made ({error.strerror or error}); decoding without a cache")
        return None
    return path


# cache file -> what its first use in this process did: "read" (a hit), "written" (decoded, then kept) or "off" (decoded,
# no cache to keep it in); the start of a training run says which
cache_events: dict[str, str] = {}


def cache_outcome() -> str:
    """The first cache use of this process in words, for the line a training run starts with."""
    if not cache_events:
        return "no decoded-image cache used"
    first = next(iter(cache_events.values()))
    where = cache_dir()
    return {"read": f"decoded images read from the cache ({where})",
            "written": f"images decoded now and cached in {where}",
            "off": "images decoded, no cache"}[first]


def cached(name: str, make: Callable[[], T]) -> T:
    """What ``make`` returns (decoded images), kept as ``name`` in the cache folder: read back while it is there and
    whole; a damaged file is decoded again and rewritten (a cache is disposable); a cache that cannot be written is a
    warning, once, and the value is returned all the same."""
    import torch

    folder = cache_dir()
    path = None if folder is None else folder / name
    if path is not None and path.is_file():
        try:
            value = torch.load(path)
            cache_events.setdefault(name, "read")
            return value
        except Exception as error:  # torch.load raises many kinds on a truncated or foreign file
            _warn_once(f"the cached {path} is damaged ({type(error).__name__}); decoding again")
    value = make()
    cache_events.setdefault(name, "off" if path is None else "written")
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                torch.save(value, tmp)
        except OSError as error:
            _warn_once(f"the cache {path} cannot be written ({error.strerror or error}); going on without it")
    return value


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"metagrad: warning: {message}", file=sys.stderr)
