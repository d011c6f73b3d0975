"""What a data root holds: per data set and split, counts and digests, and which presets it serves.

Reads file listings only (no image is decoded), so it is quick on the full data sets. A split's digest is the one a
training run records in its ``config.json`` (``ClassSplit.digest``: its sorted class names), so a run and a data
root can be matched by eye.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metagrad.errors import ConfigError


@dataclass(frozen=True)
class Holding:
    """One line of the inventory: a data set (and split), whether it is usable, and what was counted."""

    dataset: str
    split: str
    present: bool
    counts: str
    digest: str = ""
    note: str = ""


def _omniglot(root: Path) -> list[Holding]:
    from metagrad.bench.data.omniglot import BACKGROUND, EVALUATION, character_folders, omniglot_splits

    base = root / "omniglot-py"
    try:
        folders = character_folders(root)
    except ConfigError as error:
        return [Holding("omniglot", "-", False, "", note=str(error))]
    lines = []
    for part in (BACKGROUND, EVALUATION):
        mine = [folder for folder in folders if folder.parent.parent.name == part]
        images = sum(1 for folder in mine for _ in folder.glob("*.png"))
        alphabets = len({folder.parent.name for folder in mine})
        lines.append(Holding("omniglot", part, True, f"{alphabets} alphabets, {len(mine)} characters, {images} images",
                             note="" if images == 20 * len(mine) else "expected 20 images per character"))
    names = [f"{folder.parent.parent.name}/{folder.parent.name}/{folder.name}" for folder in folders]
    for protocol in ("random", "lake"):
        try:
            splits = omniglot_splits(names, protocol=protocol)
        except ConfigError as error:
            lines.append(Holding("omniglot", f"{protocol} split", False, "", note=str(error)))
            continue
        for name, split in splits.items():
            lines.append(Holding("omniglot", f"{protocol} {name}", True,
                                 f"{len(split.characters)} characters, {len(split.classes)} classes", split.digest))
    runs = base / "extras" / "one-shot-classification-all_runs.zip"
    if runs.is_file():
        from metagrad.bench.data.fetch import md5_of

        lines.append(Holding("one-shot-runs", "-", True, f"{runs.stat().st_size:,} bytes", f"md5 {md5_of(runs)}"))
    else:
        lines.append(Holding("one-shot-runs", "-", False, "", note=f"missing: {runs}"))
    return lines


def _mini_imagenet(root: Path) -> list[Holding]:
    from metagrad.bench.data.mini_imagenet import SPLITS, split_listing
    from metagrad.bench.data.ravi_larochelle import split_check

    lines = []
    for split in SPLITS:
        try:
            listing = split_listing(root, split)
        except ConfigError as error:
            lines.append(Holding("mini-imagenet", split, False, "", note=str(error)))
            continue
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps(sorted(listing)).encode()).hexdigest()[:16]
        images = sum(len(files) for files in listing.values())
        per_class = min(len(files) for files in listing.values())
        lines.append(Holding("mini-imagenet", split, True, f"{len(listing)} classes, {images} images, "
                             f"{per_class} per class used", digest, split_check(split, list(listing))))
    return lines


def inventory(root: Path) -> list[Holding]:
    return _omniglot(root) + _mini_imagenet(root)
