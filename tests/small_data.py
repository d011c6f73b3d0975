"""Small data in the real layouts, written by the tests themselves, so that every test of data handling and of the
machinery around it (splits, caches, samplers, Lake's runs, training, resume, torchrun) runs on a machine without the
real data sets.

- ``omniglot-py/images_{background,evaluation}/<Alphabet>/<characterNN>/<id>_<drawer>.png``: 1,220 characters (more
  than the 1,200 the paper's split trains on) of 20 drawings each, 105x105 1-bit PNGs as Lake's; every drawing its own
  strokes, so that no two decoded images are equal.
- ``omniglot-py/extras/one-shot-classification-all_runs.zip``: 20 runs of 20-way one-shot classification in Lake's
  archive format (``runNN/training/classNN.png``, ``runNN/test/itemNN.png``, ``runNN/class_labels.txt``), their images
  copied from 200 evaluation characters, as his are.
- ``mini-imagenet/split/{train,val,test}.csv`` and ``mini-imagenet/<split>/<wnid>/<file>.jpg``: Ravi & Larochelle's
  64 / 16 / 20 classes, 20 84x84 JPEGs each, named as the CSVs name them.

The files are the same bytes with the same modification time on every run, so the decoded-image cache (keyed by path,
size and modification time) is decoded once per machine and read after that.
"""
from __future__ import annotations

import csv
import fcntl
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from metagrad.bench.data.ravi_larochelle import CLASSES

BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS = (12, 60), (10, 50)  # (alphabets, characters each): 720 + 500
DRAWERS = 20
RUNS, WAYS = 20, 20
MINI_IMAGES_PER_CLASS = 20
VERSION = 2  # written last, as the sign that the folder is whole; raise it when the data change
# one modification time for every file (2020-01-01 and VERSION seconds): the decode cache's key is then the same on
# every run, and another when the data change
MTIME_NS = (1_577_836_800 + VERSION) * 10**9


def _drawing(rng: np.random.Generator, strokes: np.ndarray, size: int = 105) -> bytes:
    """One drawer's version of a character: its strokes, each point moved and the whole shifted, as a 1-bit PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("1", (size, size), 1)  # Lake's bitmaps: background 1, strokes 0
    draw = ImageDraw.Draw(image)
    shift = rng.integers(-8, 9, size=2)
    for stroke in strokes:
        moved = stroke + shift + rng.integers(-7, 8, size=stroke.shape)
        draw.line([tuple(int(v) for v in point) for point in moved], fill=0, width=int(rng.integers(2, 5)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


def write_omniglot(root: Path) -> list[Path]:
    """The Omniglot folders below ``root/omniglot-py``; returns the evaluation characters' folders in the loader's
    order."""
    rng = np.random.default_rng(0)
    evaluation: list[Path] = []
    number = 0
    for part, (alphabets, characters) in (("images_background", BACKGROUND_ALPHABETS),
                                          ("images_evaluation", EVALUATION_ALPHABETS)):
        for a in range(alphabets):
            for c in range(1, characters + 1):
                number += 1
                folder = root / "omniglot-py" / part / f"Alphabet_{part[7]}{a:02d}" / f"character{c:02d}"
                strokes = rng.integers(15, 90, size=(int(rng.integers(2, 4)), int(rng.integers(2, 5)), 2))
                for drawer in range(1, DRAWERS + 1):
                    _write(folder / f"{number:04d}_{drawer:02d}.png", _drawing(rng, strokes))
                if part == "images_evaluation":
                    evaluation.append(folder)
    return evaluation


def write_lake_runs(root: Path, evaluation: list[Path]) -> None:
    """Lake's archive of 20 runs: run k's classes are 20 of the first 200 evaluation characters, each with one training
    drawing and one test drawing by another drawer; the test items in a shuffled order, the key in class_labels.txt."""
    rng = np.random.default_rng(1)
    path = root / "omniglot-py" / "extras" / "one-shot-classification-all_runs.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for run in range(1, RUNS + 1):
            name = f"run{run:02d}"
            characters = [evaluation[(10 * (run - 1) + j) % 200] for j in range(WAYS)]
            order = rng.permutation(WAYS)
            key = []
            for k, character in enumerate(characters, start=1):
                drawers = rng.choice(DRAWERS, size=2, replace=False) + 1
                files = sorted(character.glob("*.png"))
                archive.writestr(f"{name}/training/class{k:02d}.png", files[drawers[0] - 1].read_bytes())
            for item, k in enumerate(order, start=1):
                drawers = rng.choice(DRAWERS, size=1) + 1
                files = sorted(characters[k].glob("*.png"))
                archive.writestr(f"{name}/test/item{item:02d}.png", files[drawers[0] - 1].read_bytes())
                key.append(f"{name}/test/item{item:02d}.png {name}/training/class{k + 1:02d}.png")
            archive.writestr(f"{name}/class_labels.txt", "\n".join(key) + "\n")
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


def write_mini_imagenet(root: Path) -> None:
    """Ravi & Larochelle's classes, each a few colour images whose mean colour is the class's own."""
    from PIL import Image

    rng = np.random.default_rng(2)
    base = root / "mini-imagenet"
    for split, classes in CLASSES.items():
        rows = []
        for wnid in classes:
            colour = rng.integers(0, 256, size=3)
            for n in range(1, MINI_IMAGES_PER_CLASS + 1):
                name = f"{wnid}{n:08d}.jpg"
                pixels = np.clip(colour + rng.normal(0, 40, size=(84, 84, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
                _write(base / split / wnid / name, buffer.getvalue())
                rows.append((name, wnid))
        (base / "split").mkdir(parents=True, exist_ok=True)
        with open(base / "split" / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            writer.writerows(rows)
        os.utime(base / "split" / f"{split}.csv", ns=(MTIME_NS, MTIME_NS))


def small_data(folder: Path) -> Path:
    """The small data root in ``folder`` (written there by the first process to ask; the others wait for it, so that
    the test workers share one copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder / "data"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "VERSION"
        if not (done.is_file() and done.read_text() == str(VERSION)):
            evaluation = write_omniglot(root)
            write_lake_runs(root, evaluation)
            write_mini_imagenet(root)
            done.write_text(str(VERSION))
            # decoded once here, under the lock: the other workers then read the cache
            from metagrad.bench.data.omniglot import load_omniglot

            load_omniglot(root)
    return root
