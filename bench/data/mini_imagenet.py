"""Mini-ImageNet (Vinyals et al.) with the 64/16/20 class split of Ravi & Larochelle.

Reads ``mini-imagenet/split/{train,val,test}.csv`` (filename,label) and the images at
``mini-imagenet/{split}/{label}/{filename}``, 84x84 RGB. Every class listed in a CSV must have a
folder; the images present are used in CSV order (a subset of the 600 per class works: classes are
cut to the smallest count so that all hold the same number). Decoded once into a cache.
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metagrad.bench.data.omniglot import ClassSplit
from metagrad.bench.data.root import cached
from metagrad.errors import ConfigError

IMAGE_SIZE = 84
SPLITS = ("train", "val", "test")


def split_listing(root: Path, split: str) -> OrderedDict[str, list[Path]]:
    """Class -> existing image paths, in CSV order."""
    base = root / "mini-imagenet"
    table = base / "split" / f"{split}.csv"
    if not table.is_file():
        raise ConfigError(f"Mini-ImageNet split file missing: {table}")
    classes: OrderedDict[str, list[str]] = OrderedDict()
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            classes.setdefault(row["label"], []).append(row["filename"])
    if not classes:
        raise ConfigError(f"no classes in {table}")
    listing: OrderedDict[str, list[Path]] = OrderedDict()
    for label, files in classes.items():
        folder = base / split / label
        if not folder.is_dir():
            raise ConfigError(f"Mini-ImageNet class folder missing: {folder}")
        present = [folder / name for name in files if (folder / name).is_file()]
        if not present:
            raise ConfigError(f"empty Mini-ImageNet class: {folder}")
        listing[label] = present
    return listing


def load_mini_imagenet(root: Path, split: str) -> tuple[Tensor, ClassSplit]:
    """uint8 images [classes, per_class, 3, 84, 84] of one split, and its classes."""
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    listing = split_listing(root, split)
    per_class = min(len(files) for files in listing.values())
    key = hashlib.sha256(json.dumps({k: [p.name for p in v[:per_class]] for k, v in listing.items()}).encode())
    def decode():
        arrays = []
        # disable=None: on a terminal only, as the Omniglot decoder's bar
        for _label, files in tqdm(listing.items(), desc=f"decoding Mini-ImageNet {split}", unit="class", leave=False,
                                  disable=None):
            per = []
            for path in files[:per_class]:
                try:
                    with Image.open(path) as im:
                        rgb = im.convert("RGB")
                        if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
                            rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
                        per.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
                except (OSError, UnidentifiedImageError) as error:
                    raise ConfigError(f"unreadable image {path}: {error}") from None
            arrays.append(np.stack(per))
        return torch.from_numpy(np.stack(arrays))

    images = cached(f"mini-imagenet-{split}-{key.hexdigest()[:16]}.pt", decode)
    labels = tuple(listing)
    return images, ClassSplit(split, tuple((i, 0) for i in range(len(labels))), labels)
