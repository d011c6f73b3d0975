"""Omniglot (Lake et al.) read from the standard ``omniglot-py`` layout, decoded once into a cache
(keyed by every image's path, size and modification time).

Protocol (Santoro et al.; Finn et al.): images resized to 28x28, strokes 1 and background 0;
the 1623 characters shuffled with a seed, the first 1200 for meta-training (the last
``validation_characters`` of them held out for validation) and the remaining 423 for testing; each
character's 90, 180 and 270-degree rotations are classes of their own. The split is recorded by a
hash of its class lists, so two runs can prove they used the same classes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metagrad.bench.atomic import atomic_path
from metagrad.bench.data.root import cached
from metagrad.errors import ConfigError

IMAGE_SIZE = 28
BACKGROUND, EVALUATION = "images_background", "images_evaluation"
TRAIN_CHARACTERS = 1200
SPLITS = ("train", "val", "test")


def character_folders(root: Path) -> list[Path]:
    """All character folders, background alphabets then evaluation alphabets, in sorted order."""
    base = root / "omniglot-py"
    folders: list[Path] = []
    for part in (BACKGROUND, EVALUATION):
        if not (base / part).is_dir():
            raise ConfigError(f"Omniglot folder missing: {base / part}")
        folders += sorted(p for alphabet in sorted((base / part).iterdir()) if alphabet.is_dir()
                          for p in alphabet.iterdir() if p.is_dir())
    if not folders:
        raise ConfigError(f"no Omniglot characters under {base}")
    return folders


def decode_image(source, size: int = IMAGE_SIZE) -> np.ndarray:
    """One Omniglot bitmap (a path or a file object) as uint8 [size, size]: strokes 255, background 0."""
    from PIL import Image

    with Image.open(source) as im:
        gray = im.convert("L").resize((size, size), Image.LANCZOS)
    return 255 - np.asarray(gray, dtype=np.uint8)


def _decode(folders: list[Path], size: int) -> tuple[Tensor, list[str]]:
    from PIL import UnidentifiedImageError
    from tqdm import tqdm

    characters, names = [], []
    # disable=None: shown on a terminal only, so a log of a run in the background holds no bar (the first
    # run after a fresh install decodes the images once, whatever --no-progress says)
    for folder in tqdm(folders, desc="decoding Omniglot", unit="character", leave=False, disable=None):
        files = sorted(folder.glob("*.png"))
        if not files:
            raise ConfigError(f"empty Omniglot class: {folder}")
        images = []
        for f in files:
            try:
                images.append(decode_image(f, size))
            except (OSError, UnidentifiedImageError) as error:
                raise ConfigError(f"unreadable image {f}: {error}") from None
        if len(images) != 20:
            raise ConfigError(f"Omniglot class {folder} has {len(images)} images, expected 20")
        characters.append(np.stack(images))
        names.append(f"{folder.parent.parent.name}/{folder.parent.name}/{folder.name}")
    return torch.from_numpy(np.stack(characters)), names


def files_digest(root: Path, folders: list[Path]) -> str:
    """A key for the decoded cache: every image's path, size and modification time, so that an image
    changed after its class was decoded is decoded again (one ``stat`` per file; a content hash would read
    all of them)."""
    digest = hashlib.sha256()
    for folder in folders:
        for f in sorted(folder.glob("*.png")):
            stat = f.stat()
            digest.update(f"{f.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def packed_name(size: int = IMAGE_SIZE) -> str:
    return f"omniglot-{size}x{size}.pt"


def load_omniglot(root: Path, size: int = IMAGE_SIZE) -> tuple[Tensor, list[str]]:
    """uint8 images [characters, 20, size, size] and the characters' names, from the cache when it is current.

    A data root without the image folders may hold a packed copy of the decoded images instead
    (``omniglot-28x28.pt``, written by ``pack_omniglot``): for machines the images cannot travel to.
    """
    packed = root / packed_name(size)
    if not (root / "omniglot-py").is_dir() and packed.is_file():
        saved = torch.load(packed)
        return saved["images"], saved["names"]
    folders = character_folders(root)
    saved = cached(f"omniglot-{size}-{files_digest(root, folders)}.pt",
                   lambda: dict(zip(("images", "names"), _decode(folders, size))))
    return saved["images"], saved["names"]


def pack_omniglot(root: Path, destination: Path, size: int = IMAGE_SIZE) -> Path:
    """Write the decoded images to ``destination/omniglot-{size}x{size}.pt``, a data root of its own."""
    images, names = load_omniglot(root, size)
    path = destination / packed_name(size)
    with atomic_path(path) as tmp:
        torch.save({"images": images, "names": names}, tmp)
    return path


@dataclass(frozen=True)
class ClassSplit:
    """The classes of one split: (character index, rotation in quarter turns) pairs."""

    name: str
    classes: tuple[tuple[int, int], ...]
    characters: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.characters)).encode()).hexdigest()[:16]


SPLIT_PROTOCOLS = ("random", "lake")


def omniglot_splits(names: list[str], seed: int = 1, validation_characters: int = 100,
                    rotations: bool = True, protocol: str = "random") -> dict[str, ClassSplit]:
    """The train / val / test classes.

    ``random`` (the paper's protocol, Santoro et al.): the 1623 characters shuffled with ``seed``, 1200
    for meta-training (the last ``validation_characters`` of them for validation), 423 for testing.
    ``lake`` (Lake et al. 2015): meta-training on the 964 characters of the 30 background alphabets
    (``validation_characters`` of them, drawn with ``seed``, for validation), testing on the 659 of the
    20 evaluation alphabets, from which Lake's 20 one-shot runs are drawn.
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ConfigError(f"Omniglot split must be one of {', '.join(SPLIT_PROTOCOLS)}, got {protocol!r}")
    turns = range(4) if rotations else range(1)
    if protocol == "lake":
        background = [i for i, name in enumerate(names) if name.startswith(BACKGROUND + "/")]
        evaluation = [i for i, name in enumerate(names) if name.startswith(EVALUATION + "/")]
        if not 0 <= validation_characters < len(background):
            raise ConfigError(f"validation characters must be in [0, {len(background)}), got {validation_characters}")
        order = [background[i] for i in torch.randperm(len(background), generator=torch.Generator().manual_seed(seed))]
        parts = {"train": order[:len(order) - validation_characters], "val": order[len(order) - validation_characters:],
                 "test": evaluation}
    else:
        if len(names) <= TRAIN_CHARACTERS:
            raise ConfigError(f"Omniglot has {len(names)} characters, need more than {TRAIN_CHARACTERS}")
        if not 0 <= validation_characters < TRAIN_CHARACTERS:
            raise ConfigError(f"validation characters must be in [0, {TRAIN_CHARACTERS}), got {validation_characters}")
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
        parts = {
            "train": order[:TRAIN_CHARACTERS - validation_characters],
            "val": order[TRAIN_CHARACTERS - validation_characters:TRAIN_CHARACTERS],
            "test": order[TRAIN_CHARACTERS:],
        }
    return {
        split: ClassSplit(split, tuple((c, r) for c in chars for r in turns), tuple(names[c] for c in chars))
        for split, chars in parts.items()
    }
