"""Your own images as a data set: ``--dataset folder --data-root DIR`` on a folder of class folders the test writes,
its bad inputs one-line errors, its decode cache, and a data set a package adds by entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metagrad.bench.cli import main
from metagrad.bench.data.folder import class_listing, load_folder
from metagrad.bench.data.sources import task_source
from metagrad.bench.data.tasks import EpisodeSpec
from tests.installed_package import install_package
from tests.limits import HANG_S

CLASSES, PER_CLASS = 12, 6


def write_images(root: Path, classes: int = CLASSES, per_class: int = PER_CLASS, size: int = 20) -> Path:
    """Class c's images are noise around a colour of its own, so that a few iterations learn something."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        colour = generator.integers(0, 255, 3)
        for i in range(per_class):
            pixels = np.clip(generator.normal(colour, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "class00" / "notes.txt").write_text("not an image: left out")
    return root


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    return write_images(tmp_path / "images")


SMALL = ["--image-size", "16", "--ways", "2", "--shots", "1", "--queries", "2", "--filters", "4", "--meta-batch", "2",
         "--iterations", "4", "--validate-every", "2", "--validation-tasks", "4", "--no-progress", "--threads", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["per-task", "batched"])
def test_a_folder_of_class_images_trains_and_evaluates(images, tmp_path, engine):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-root", str(images), "--algorithm", "maml", "--out", str(out),
                 "--engine", engine, *SMALL]) == 0
    assert main(["eval", str(out), "--tasks", "6", "--no-progress"]) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["dataset"] == "folder" and record["config"]["image_size"] == 16
    splits = {split: task_source("folder", split, EpisodeSpec(2, 1, 2), str(images), image_size=16).split
              for split in ("train", "val", "test")}
    # the split recorded by the hash of its class names; 64/16/20% of 12 classes, disjoint, all of them
    assert record["splits"] == {"train": splits["train"].digest, "val": splits["val"].digest}
    names = [set(split.characters) for split in splits.values()]
    assert [len(n) for n in names] == [8, 2, 2] and set.union(*names) == set(class_listing(images))
    assert json.loads((out / "eval.json").read_text())["tasks"] == 6


def test_the_split_follows_the_split_seed_and_the_images_their_shape(images):
    spec = EpisodeSpec(2, 1, 2)
    first = task_source("folder", "train", spec, str(images), split_seed=1, image_size=16, channels=1)
    again = task_source("folder", "train", spec, str(images), split_seed=1, image_size=16, channels=1)
    other = task_source("folder", "train", spec, str(images), split_seed=2, image_size=16, channels=1)
    assert first.split.digest == again.split.digest != other.split.digest
    task = first.tasks.sample(torch.Generator().manual_seed(0))
    assert task.support.x.shape == (2, 1, 16, 16) and first.tasks.images.shape == (CLASSES, PER_CLASS, 1, 16, 16)


def test_the_decode_cache_is_keyed_by_the_files_and_the_shape(images, tmp_path):
    cache = tmp_path / "cache"
    load_folder(images, 16, 3)
    load_folder(images, 16, 3)
    assert len(list(cache.glob("folder-*.pt"))) == 1  # read back, not decoded again
    load_folder(images, 24, 3)
    assert len(list(cache.glob("folder-*.pt"))) == 2  # another size is another cache
    before, _ = load_folder(images, 16, 3)
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(images / "class03" / "2.png")  # an image changed
    after, _ = load_folder(images, 16, 3)
    assert len(list(cache.glob("folder-*.pt"))) == 3 and after[3, 2].sum() == 0 and before[3, 2].sum() > 0


def break_folder(images: Path, how: str) -> None:
    """The folder made bad one way."""
    if how == "empty class":
        (images / "class99").mkdir()
    elif how == "unreadable image":
        (images / "class04" / "0a.png").write_text("not a png")
    elif how == "no classes":
        for folder in images.iterdir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()


@pytest.mark.parametrize("how,options,fragment", [
    ("empty class", [], "empty class"),
    ("unreadable image", [], "unreadable image"),
    ("no classes", [], "no class folders"),
    ("", ["--ways", "3"], "3-way tasks need at least 3 classes; the val split has 2 of the 12"),
    ("", ["--shots", "5", "--queries", "2"], "need 7 images per class; the data set has 6"),
    ("", ["--channels", "2"], "channels must be 1 (grey) or 3 (RGB)"),
    ("", ["--data-root", "NONE"], "--dataset folder reads --data-root DIR"),
])
def test_bad_folders_and_options_are_one_line_errors_and_write_nothing(images, tmp_path, capsys, how, options,
                                                                       fragment):
    break_folder(images, how)
    out = tmp_path / "bad"
    argv = ["train", "--dataset", "folder", "--data-root", str(images), "--algorithm", "maml", "--out", str(out),
            *SMALL, *options]
    if "NONE" in options:
        argv = [a for a in argv if a not in ("--data-root", str(images), "NONE")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()


def test_image_options_belong_to_a_folder(capsys, tmp_path):
    assert main(["train", "--dataset", "omniglot", "--algorithm", "maml", "--image-size", "32", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--dataset folder" in capsys.readouterr().err


PLUGIN = '''
import torch


class Stripes:
    """16 classes of 5 grey 16x16 images: class c is a stripe at row c."""

    channels, image_size = 1, 16

    @staticmethod
    def load(root):
        images = torch.zeros(16, 5, 1, 16, 16, dtype=torch.uint8)
        for c in range(16):
            images[c, :, 0, c] = 255
        return images, tuple(f"stripe-{c}" for c in range(16))
'''


@pytest.mark.slow
def test_a_package_adds_a_data_set_by_entry_point(tmp_path):
    """``metagrad.datasets``: the entry's object loads the images; the suite splits, samples, trains; a broken one is a
    one-line warning."""
    environment = install_package(tmp_path, "stripes-package", "stripes_module", PLUGIN, "metagrad.datasets",
                                  {"stripes": "stripes_module:Stripes", "broken": "no_such_module:Nothing"})
    environment["METAGRAD_CACHE"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-m", "metagrad", "train", "--dataset", "stripes", "--data-root", str(tmp_path),
         "--algorithm", "fomaml", "--out", str(tmp_path / "run"), "--ways", "2", "--shots", "1", "--queries", "2",
         "--filters", "4", "--meta-batch", "2", "--iterations", "2", "--validate-every", "2", "--validation-tasks", "2",
         "--no-progress", "--threads", "1"], capture_output=True, text=True, timeout=HANG_S, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().startswith("metagrad: warning: the plug-in data set broken = no_such_module:Nothing")
    assert done.stderr.count("\n") == 1
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["dataset"] == "stripes" and set(record["splits"]) == {"train", "val"}


@pytest.mark.slow
def test_a_run_finds_its_data_from_any_folder_and_after_a_move_with_eval_data_root(images, tmp_path, monkeypatch,
                                                                                  capsys):
    """The data root is stored absolute (typed relative, eval from another folder still finds it); a moved data set
    is given to eval by --data-root, checked against the class split the run recorded."""
    monkeypatch.chdir(images.parent)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-root", images.name, "--algorithm", "fomaml", "--out",
                 str(out), "--class-split", "0.5,0.25", *SMALL]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["data_root"] == str(images.resolve()) and saved["class_split"] == [0.5, 0.25]
    monkeypatch.chdir(tmp_path / "cache")
    assert main(["eval", str(out), "--tasks", "4", "--no-progress"]) == 0

    moved = images.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["eval", str(out), "--tasks", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a folder: give --data-root where its data set is now" in err, err
    assert main(["eval", str(out), "--tasks", "4", "--no-progress", "--data-root", str(moved)]) == 0
    assert json.loads((out / "eval.json").read_text())["tasks"] == 4

    other = write_images(tmp_path / "other", classes=CLASSES + 1)
    capsys.readouterr()
    assert main(["eval", str(out), "--tasks", "4", "--no-progress", "--data-root", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "split holds other classes than the run trained with" in err, err


@pytest.mark.parametrize("options, fragment", [
    (["--class-split", "0.9,0.2"], "--class-split takes two fractions TRAIN,VAL above 0 whose sum is below 1"),
    (["--class-split", "0.5"], "--class-split takes two fractions"),
    (["--ways", "5"], "give --ways 2 or fewer, or more classes to the val split with --class-split TRAIN,VAL"),
])
def test_a_class_split_that_cannot_be_is_one_line_saying_the_ways_out(images, tmp_path, capsys, options, fragment):
    out = tmp_path / "bad"
    assert main(["train", "--dataset", "folder", "--data-root", str(images), "--algorithm", "maml", "--out", str(out),
                 *SMALL, *options]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.count("\n") == 0, err
    assert not out.exists()
