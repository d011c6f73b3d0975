"""Any folder of class images as a data set: ``DIR/<class>/<image>``, torchvision's ``ImageFolder`` layout.

Classes are the sub-folders, sorted by name, and a class's images its files with an image extension, sorted (as
torchvision's ``find_classes`` and ``make_dataset`` list them: the same few lines, here without importing
torchvision, which nothing else needs). Images are read with PIL, converted to grey (1 channel) or RGB (3), resized to
``image_size`` square, and decoded once into a cache keyed by every file's path, size and modification time and the
size and channels asked for. Every class keeps as many images as the smallest has, in file order, so that all hold
the same number. The classes are shuffled with the split seed and cut 64 / 16 / 20 % (``--class-split``) into meta-training,
validation and test (Mini-ImageNet's proportions); each split is recorded by the hash of its class names.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metagrad.bench.data.root import cached
from metagrad.errors import ConfigError

# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CLASS_SPLIT = (0.64, 0.16)  # the fractions of the classes for meta-training and validation; test: the rest
DEFAULT_IMAGE_SIZE, DEFAULT_CHANNELS = 84, 3


def class_listing(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, both sorted; a one-line error for a folder without classes or a class
    without images."""
    if not root.is_dir():
        raise ConfigError(f"image folder {root} is not a folder")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise ConfigError(f"no class folders in {root} (expected {root}/<class>/<image>, one folder per class)")
    listing = {}
    for name in classes:
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ConfigError(f"empty class: {root / name} has no image ({', '.join(IMAGE_EXTENSIONS)})")
        listing[name] = files
    return listing


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # an image past Pillow's pixel limit (its header may claim any size) is refused, not decoded into memory
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                converted = image.convert("L" if channels == 1 else "RGB")
                if converted.size != (size, size):
                    converted = converted.resize((size, size), Image.LANCZOS)
                array = np.asarray(converted, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = str(error).split(", could be")[0]
        raise ConfigError(f"image {path} is too large to decode ({pixels}); shrink it or move it out of the data "
                          "set") from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConfigError(f"unreadable image {path}: {error}") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_folder(root: Path, size: int = DEFAULT_IMAGE_SIZE, channels: int = DEFAULT_CHANNELS) -> tuple[Tensor, tuple[str, ...]]:
    """uint8 images [classes, per_class, channels, size, size] and the class names, from the cache when current."""
    from tqdm import tqdm

    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if size < 1:
        raise ConfigError(f"image size must be >= 1, got {size}")
    listing = class_listing(root)
    per_class = min(len(files) for files in listing.values())
    digest = hashlib.sha256(f"{size}\t{channels}\n".encode())
    for name, files in listing.items():
        for path in files[:per_class]:
            stat = path.stat()
            digest.update(f"{name}/{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())

    def decode():
        arrays = [np.stack([_decode(path, size, channels) for path in files[:per_class]])
                  for files in tqdm(listing.values(), desc=f"decoding {root.name}", unit="class", leave=False,
                                    disable=None)]
        return torch.from_numpy(np.stack(arrays))

    return cached(f"folder-{size}x{size}x{channels}-{digest.hexdigest()[:16]}.pt", decode), tuple(listing)


def folder_splits(names: tuple[str, ...], seed: int,
                  fractions: tuple[float, float] = CLASS_SPLIT) -> dict[str, tuple[int, ...]]:
    """The classes shuffled with ``seed``, the first ``fractions[0]`` (64 %) for meta-training, the next
    ``fractions[1]`` (16 %) for validation, the rest for testing; a one-line error where a split would be empty."""
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    train = round(fractions[0] * len(names))
    val = round(fractions[1] * len(names))
    parts = {"train": order[:train], "val": order[train:train + val], "test": order[train + val:]}
    empty = [split for split, classes in parts.items() if not classes]
    if empty:
        raise ConfigError(f"{len(names)} classes are too few to split {split_words(fractions)} into meta-training, "
                          f"validation and test classes ({', '.join(empty)} would have none); give more classes, or "
                          "other fractions with --class-split TRAIN,VAL")
    return {split: tuple(classes) for split, classes in parts.items()}


def split_words(fractions: tuple[float, float]) -> str:
    """"64/16/20%" for (0.64, 0.16)."""
    train, val = (round(100 * fraction, 1) for fraction in fractions)
    return f"{train:g}/{val:g}/{round(100 - train - val, 1):g}%"
