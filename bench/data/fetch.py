"""Fetching the data sets metagrad reads into the data root, in the layouts it reads.

Omniglot: the two official archives (``images_background.zip``, ``images_evaluation.zip`` from Lake's repository,
the files torchvision's ``Omniglot`` downloads, with its MD5 checksums), extracted into ``omniglot-py/``. Lake's
one-shot runs: ``all_runs.zip`` from the same repository, kept whole as ``omniglot-py/extras/
one-shot-classification-all_runs.zip`` (its MD5 is that of the file in the repository).

Every step leaves nothing half-done: a download grows in ``.downloads/NAME.part`` and resumes from there (an HTTP
range request) when run again; it is checked against its MD5 before it is used, and removed when it does not match;
an archive is extracted into a temporary folder beside its destination and moved into place at once, its members
checked first (no absolute paths, no ``..``, only the folder it should hold). Mini-ImageNet has no official archive
to fetch: ``metagrad data import`` converts the copies people have (``imports.py``).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metagrad.errors import MetagradError

LAKE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
DOWNLOADS = ".downloads"
CHUNK = 1 << 16
TIMEOUT_S = 60


class FetchError(MetagradError):
    """A data set could not be fetched (no network, a checksum that does not match, a full disk); nothing
    half-written is left in the data root. Exit code 5."""

    exit_code = 5


@dataclass(frozen=True)
class Download:
    """One file: its path under the base URL, its MD5, where it goes under the data root and whether it is a zip
    archive to extract there (holding the one top-level folder ``holds``) or a file to keep as it is."""

    path: str
    md5: str
    target: str
    holds: str = ""  # an archive's one top-level folder; empty: keep the file whole at ``target``

    @property
    def done(self) -> str:
        """What exists under the data root once this download is in place."""
        return f"{self.target}/{self.holds}" if self.holds else self.target


DATASETS: dict[str, tuple[str, tuple[Download, ...]]] = {  # name -> (base URL, its files)
    "omniglot": (LAKE_URL, (
        Download("images_background.zip", "68d2efa1b9178cc56df9314c21c6e718", "omniglot-py", "images_background"),
        Download("images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811", "omniglot-py", "images_evaluation"),
    )),
    "one-shot-runs": (LAKE_URL, (
        Download("one-shot-classification/all_runs.zip", "e8996daecdf12afeeb4a53a179f06b19",
                 "omniglot-py/extras/one-shot-classification-all_runs.zip"),
    )),
}


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _why(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def download(url: str, part: Path, report: Callable[[int, int | None], None] | None = None) -> None:
    """``url`` into ``part``, continuing a partial file with a range request (a server that ignores the range
    sends the whole file, which replaces the part)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            resumed = have and response.status == 206
            length = response.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length is not None else None
            with open(part, "ab" if resumed else "wb") as file:
                done = have if resumed else 0
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    file.write(chunk)
                    done += len(chunk)
                    if report:
                        report(done, total)
            if total is not None and done < total:
                raise FetchError(f"{url}: the download ended at {done:,} of {total:,} bytes; run again to resume")
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the range starts at the end: the part is whole already
            return
        raise FetchError(f"cannot download {url}: {_why(error)}") from None
    except (http.client.HTTPException, ConnectionResetError) as error:  # the connection ended early
        kept = part.stat().st_size if part.exists() else 0
        raise FetchError(f"{url}: the download broke off ({type(error).__name__}) with {kept:,} bytes kept; run "
                         "again to resume") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        raise FetchError(f"cannot download {url}: {_why(error)} (no network? give --mirror URL for a copy "
                         f"elsewhere; what was downloaded so far is kept and resumed)") from None


def _members_inside(archive: zipfile.ZipFile, holds: str) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    for member in members:
        name = member.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or not name.startswith(f"{holds}/"):
            raise FetchError(f"{archive.filename}: member {name!r} is not inside {holds}/; refused")
    return members


def extract(archive_path: Path, destination: Path, holds: str) -> None:
    """The zip's one top-level folder ``holds`` into ``destination/holds``, at once: extracted into a temporary
    folder beside it, then moved into place; on any failure the temporary folder goes and nothing is left."""
    destination.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{holds}.partial-", dir=destination))
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _members_inside(archive, holds)
            for member in members:
                archive.extract(member, scratch)
        os.replace(scratch / holds, destination / holds)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{archive_path}: not a readable zip archive ({error})") from None
    except OSError as error:
        space = " (the disk is full)" if getattr(error, "errno", None) == 28 else ""
        raise FetchError(f"cannot extract {archive_path.name} into {destination}{space}: "
                         f"{error.strerror or error}; nothing was left half-extracted") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stale_partials(root: Path) -> list[Path]:
    """Temporary folders a killed extraction left (none is ever used again)."""
    return sorted(root.glob("**/.*.partial-*"))


def fetch(name: str, root: Path, mirror: str | None = None, say: Callable[[str], None] = print,
          report: Callable[[int, int | None], None] | None = None) -> list[Path]:
    """Fetch data set ``name`` into ``root``; returns what it put there (nothing for what was there already)."""
    base, downloads = DATASETS[name]
    base = (mirror or base).rstrip("/")
    root.mkdir(parents=True, exist_ok=True)
    for leftover in stale_partials(root):
        shutil.rmtree(leftover, ignore_errors=True)
    placed = []
    for item in downloads:
        if (root / item.done).exists():
            say(f"{name}: {root / item.done} is there already")
            continue
        folder = root / DOWNLOADS
        folder.mkdir(exist_ok=True)
        part = folder / (Path(item.path).name + ".part")
        url = f"{base}/{item.path}"
        say(f"{name}: downloading {url}")
        download(url, part, report)
        found = md5_of(part)
        if found != item.md5:
            part.unlink()
            raise FetchError(f"{url}: MD5 {found}, expected {item.md5}; the download was removed (run again, or "
                             "check --mirror)")
        if item.holds:
            extract(part, root / item.target, item.holds)
            part.unlink()
        else:
            (root / item.target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, root / item.target)
        placed.append(root / item.done)
        say(f"{name}: {root / item.done}")
    return placed
