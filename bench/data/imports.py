"""Converting the Mini-ImageNet copies people have into the layout metagrad reads (``mini_imagenet.py``):
``mini-imagenet/split/{train,val,test}.csv`` (filename,label) and ``mini-imagenet/{split}/{wnid}/{filename}``.

Three sources, told apart by what they hold:

- ``pickles``: a folder of the pickled caches learn2learn and others distribute
  (``mini-imagenet-cache-{train,validation,test}.pkl``: ``image_data``, uint8 [N, 84, 84, 3], and ``class_dict``,
  wnid -> indices); each image is written as PNG, so nothing is lost.
- ``folders``: class folders, either per split (``SOURCE/{train,val,test}/<wnid>/<image>``) or all together
  (``SOURCE/<wnid>/<image>``, split by Ravi & Larochelle's lists); images kept as they are (resized to 84x84 where
  they are not).
- ``imagenet``: an ImageNet training folder (``SOURCE/<wnid>/<wnid>_<n>.JPEG``) with Ravi & Larochelle's CSVs
  (``--split-csv DIR``): the n-th image a CSV names is the class's n-th file by number, resized to 84x84 (Lanczos).

Every split is checked against Ravi & Larochelle's class lists (``ravi_larochelle.py``); a difference is refused
unless ``--any-classes``. The result is written beside its destination and moved into place at once, with
``IMPORTED.json`` (the source, and per split its classes, images and digest: the digest a training run records).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from metagrad.bench.data.ravi_larochelle import CLASSES, csv_index, split_check
from metagrad.errors import ConfigError

SPLITS = ("train", "val", "test")
SIZE = 84
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PICKLE_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
FORMS = ("auto", "pickles", "folders", "imagenet")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def detect_form(source: Path, split_csv: Path | None) -> str:
    if not source.is_dir():
        raise ConfigError(f"{source}: not a folder")
    if split_csv is not None:
        return "imagenet"
    if any(source.glob("*.pkl")) or any(source.glob("*.pickle")):
        return "pickles"
    if any((source / split).is_dir() for split in SPLITS) or any(p.is_dir() for p in source.iterdir()):
        return "folders"
    raise ConfigError(f"{source}: neither pickled caches (*.pkl), class folders nor (with --split-csv) ImageNet")


def _write_image(array_or_path, path: Path) -> None:
    from PIL import Image

    if isinstance(array_or_path, Path):
        with Image.open(array_or_path) as image:
            if image.size == (SIZE, SIZE) and image.mode == "RGB" and array_or_path.suffix == path.suffix:
                shutil.copyfile(array_or_path, path)  # already what the reader takes: the bytes as they are
                return
            rgb = image.convert("RGB")
            if rgb.size != (SIZE, SIZE):
                rgb = rgb.resize((SIZE, SIZE), Image.LANCZOS)
            rgb.save(path)
    else:
        Image.fromarray(array_or_path).save(path)


def _from_pickles(source: Path) -> dict[str, dict[str, list]]:
    splits: dict[str, dict[str, list]] = {}
    for path in sorted([*source.glob("*.pkl"), *source.glob("*.pickle")]):
        split = next((PICKLE_SPLITS[word] for word in PICKLE_SPLITS if word in path.stem.lower().split("-")
                      or path.stem.lower().endswith(word)), None)
        if split is None:
            continue
        try:
            with open(path, "rb") as file:
                data = pickle.load(file)  # noqa: S301 (the user's own file, named on the command line)
            images, classes = data["image_data"], data["class_dict"]
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: not a Mini-ImageNet cache (image_data, class_dict): "
                              f"{type(error).__name__}: {error}") from None
        splits[split] = {wnid: [(f"{wnid}{k:08d}.png", images[i]) for k, i in enumerate(indices, start=1)]
                         for wnid, indices in classes.items()}
    return splits


def _named(folder: Path) -> list[tuple[str, Path]]:
    return [(path.name, path) for path in _images_in(folder)]


def _from_folders(source: Path) -> dict[str, dict[str, list]]:
    if any((source / split).is_dir() for split in SPLITS):
        return {split: {folder.name: _named(folder) for folder in sorted((source / split).iterdir())
                        if folder.is_dir()} for split in SPLITS if (source / split).is_dir()}
    folders = {folder.name: folder for folder in source.iterdir() if folder.is_dir()}
    return {split: {wnid: _named(folders[wnid]) for wnid in CLASSES[split] if wnid in folders} for split in SPLITS}


def _from_imagenet(source: Path, split_csv: Path) -> dict[str, dict[str, list]]:
    splits: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        table = split_csv / f"{split}.csv"
        if not table.is_file():
            raise ConfigError(f"--split-csv {split_csv}: no {split}.csv")
        wanted: dict[str, list[str]] = {}
        with open(table, newline="") as file:
            for row in csv.DictReader(file):
                wanted.setdefault(row["label"], []).append(row["filename"])
        classes = {}
        for wnid, names in wanted.items():
            folder = source / wnid
            if not folder.is_dir():
                raise ConfigError(f"{source}: no ImageNet class folder {wnid}")
            files = sorted(folder.glob(f"{wnid}_*.*"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
            picked = []
            for name in names:
                index = csv_index(name)
                if not 1 <= index <= len(files):
                    raise ConfigError(f"{table}: {name} is image {index} of {wnid}, which has {len(files)}")
                picked.append((name, files[index - 1]))
            classes[wnid] = picked
        splits[split] = classes
    return splits


def digest(classes: list[str]) -> str:
    """A split's digest as a training run records it (its sorted class names)."""
    return hashlib.sha256(json.dumps(sorted(classes)).encode()).hexdigest()[:16]


def import_mini_imagenet(source: Path, root: Path, form: str = "auto", split_csv: Path | None = None,
                         any_classes: bool = False, say: Callable[[str], None] = print) -> dict:
    """Write Mini-ImageNet from ``source`` into ``root/mini-imagenet``; returns what ``IMPORTED.json`` records."""
    destination = root / "mini-imagenet"
    if destination.exists():
        raise ConfigError(f"{destination} exists; move it away first (nothing is overwritten)")
    if form not in FORMS:
        raise ConfigError(f"--form must be one of {', '.join(FORMS)}, got {form!r}")
    form = detect_form(source, split_csv) if form == "auto" else form
    if form == "imagenet" and split_csv is None:
        raise ConfigError("an ImageNet training folder needs Ravi & Larochelle's CSVs: --split-csv DIR")
    say(f"mini-imagenet: reading {source} as {form}")
    splits = {"pickles": lambda: _from_pickles(source), "folders": lambda: _from_folders(source),
              "imagenet": lambda: _from_imagenet(source, split_csv)}[form]()
    for split in SPLITS:
        if not splits.get(split):
            raise ConfigError(f"{source}: no {split} classes found (read as {form})")
        differs = split_check(split, list(splits[split]))
        if differs and not any_classes:
            raise ConfigError(f"{split}: {differs}; not Ravi & Larochelle's split (--any-classes imports it anyway)")
        empty = [wnid for wnid, images in splits[split].items() if not images]
        if empty:
            raise ConfigError(f"{split}: no images for {', '.join(empty[:3])}")
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".mini-imagenet.partial-", dir=root))
    record = {"source": str(source.resolve()), "form": form, "splits": {}}
    try:
        (scratch / "split").mkdir()
        for split in SPLITS:
            rows = []
            for wnid, images in splits[split].items():
                (scratch / split / wnid).mkdir(parents=True)
                for name, image in images:
                    _write_image(image, scratch / split / wnid / name)
                    rows.append((name, wnid))
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(("filename", "label"))
            writer.writerows(rows)
            (scratch / "split" / f"{split}.csv").write_text(buffer.getvalue())
            record["splits"][split] = {"classes": len(splits[split]), "images": len(rows),
                                       "digest": digest(list(splits[split])),
                                       "ravi_larochelle": split_check(split, list(splits[split])) or "the same"}
            say(f"mini-imagenet {split}: {len(splits[split])} classes, {len(rows)} images")
        (scratch / "IMPORTED.json").write_text(json.dumps(record, indent=1) + "\n")
        os.replace(scratch, destination)
    except OSError as error:
        raise ConfigError(f"cannot write {destination}: {error.strerror or error}; nothing was left") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return record
