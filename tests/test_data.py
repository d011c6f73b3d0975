"""Loaders and task samplers on data in the real layouts (the tests' own small copy, and the real data where it is),
and their errors on broken data."""
from __future__ import annotations

import shutil

import pytest
import torch

from metagrad.bench.data.mini_imagenet import load_mini_imagenet
from metagrad.bench.data.omniglot import load_omniglot, omniglot_splits, pack_omniglot
from metagrad.bench.data.root import resolve_data_root
from metagrad.bench.data.tasks import EpisodeSpec, ImageClassTasks
from metagrad.errors import ConfigError

from .data_paths import require_data


@pytest.fixture(scope="module")
def omniglot(small_data_root):
    return load_omniglot(small_data_root)


def test_omniglot_protocol(omniglot):
    images, names = omniglot
    assert images.shape == (len(names), 20, 28, 28) and images.dtype == torch.uint8
    splits = omniglot_splits(names)
    characters = {k: set(v.characters) for k, v in splits.items()}
    assert [len(characters[k]) for k in ("train", "val", "test")] == [1100, 100, len(names) - 1200]
    assert not (characters["train"] & characters["test"]) and not (characters["val"] & characters["test"])
    assert len(splits["train"].classes) == 4 * 1100  # each rotation a class
    # strokes are bright on a dark background after resizing
    assert images.float().mean() < 0.3 * 255
    # the split is seeded and recorded
    assert omniglot_splits(names)["test"].digest == splits["test"].digest
    assert omniglot_splits(names, seed=2)["test"].digest != splits["test"].digest


@pytest.mark.real_data
def test_the_real_omniglot_is_lakes_1623_characters_split_as_the_committed_runs_record():
    images, names = load_omniglot(require_data("omniglot-py"))
    assert images.shape == (1623, 20, 28, 28)
    splits = omniglot_splits(names)
    assert [len(splits[k].characters) for k in ("train", "val", "test")] == [1100, 100, 423]
    assert splits["test"].digest == "1850c89679f8795d"  # the hash every committed eval.json records


def test_packed_omniglot_is_the_same_data(omniglot, small_data_root, tmp_path):
    pack_omniglot(small_data_root, tmp_path)
    images, names = load_omniglot(tmp_path)
    assert torch.equal(images, omniglot[0]) and names == omniglot[1]


@pytest.mark.parametrize("data", ["small", pytest.param("real", marks=pytest.mark.real_data)])
def test_mini_imagenet_split(data, small_data_root):
    root = small_data_root if data == "small" else require_data("mini-imagenet")
    counts = {}
    for split in ("train", "val", "test"):
        images, classes = load_mini_imagenet(root, split)
        assert images.shape[2:] == (3, 84, 84) and images.dtype == torch.uint8
        counts[split] = images.shape[0]
        assert images.shape[1] >= 20
    assert counts == {"train": 64, "val": 16, "test": 20}


def test_episodes_are_seeded_and_well_formed(omniglot):
    images, names = omniglot
    tasks = ImageClassTasks(images, omniglot_splits(names)["train"].classes, EpisodeSpec(5, 1, 15))
    a = tasks.sample(torch.Generator().manual_seed(3))
    b = tasks.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a.support.x, b.support.x) and torch.equal(a.query.y, b.query.y)
    assert a.support.x.shape == (5, 1, 28, 28) and a.query.x.shape == (75, 1, 28, 28)
    assert a.support.y.tolist() == [0, 1, 2, 3, 4] and 0.0 <= a.support.x.min() and a.support.x.max() <= 1.0
    pool = list(tasks.fixed_pool(3, seed=7))
    assert torch.equal(pool[2].query.x, list(tasks.fixed_pool(3, seed=7))[2].query.x)


def test_rotated_classes_are_rotated_images(omniglot):
    images, _ = omniglot
    tasks = ImageClassTasks(images, ((0, 1), (0, 0)), EpisodeSpec(2, 1, 3))  # one character, two classes
    task = tasks.sample(torch.Generator().manual_seed(0))
    originals = images[0].float() / 255.0
    quarter = torch.rot90(originals, 1, dims=(-2, -1))
    for x, _y in zip(task.query.x[:, 0], task.query.y):
        upright = any(torch.equal(x, o) for o in originals)
        turned = any(torch.equal(x, o) for o in quarter)
        assert upright != turned  # each image is one or the other
        # the label decides which: all images of a label share the orientation
    labels_upright = {int(y): any(torch.equal(x, o) for o in originals) for x, y in zip(task.query.x[:, 0], task.query.y)}
    assert sorted(labels_upright.values()) == [False, True]


@pytest.mark.parametrize("spec,fragment", [(EpisodeSpec(30, 1, 1), "30-way"), (EpisodeSpec(5, 10, 15), "exceed")])
def test_impossible_episodes_are_refused(omniglot, spec, fragment):
    images, _ = omniglot
    with pytest.raises(ConfigError, match=fragment):
        ImageClassTasks(images, tuple((i, 0) for i in range(20)), spec)


def test_missing_and_broken_data_name_the_path(tmp_path, small_data_root):
    with pytest.raises(ConfigError, match=str(tmp_path / "nowhere")):
        resolve_data_root(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="images_background"):
        load_omniglot(tmp_path)
    with pytest.raises(ConfigError, match="train.csv"):
        load_mini_imagenet(tmp_path, "train")
    # an empty class, then an unreadable image
    root = small_data_root
    fake = tmp_path / "omni"
    for part in ("images_background", "images_evaluation"):
        (fake / "omniglot-py" / part / "Alpha" / "character01").mkdir(parents=True)
    with pytest.raises(ConfigError, match="empty Omniglot class: .*character01"):
        load_omniglot(fake)
    source = next((root / "omniglot-py" / "images_background").glob("*/character01"))
    for part in ("images_background", "images_evaluation"):
        target = fake / "omniglot-py" / part / "Alpha" / "character01"
        for f in sorted(source.glob("*.png")):
            shutil.copy(f, target / f.name)
    broken = fake / "omniglot-py" / "images_evaluation" / "Alpha" / "character01" / sorted(source.glob("*.png"))[0].name
    broken.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="unreadable image .*character01"):
        load_omniglot(fake)


def test_an_image_changed_after_decoding_is_noticed(tmp_path, monkeypatch, small_data_root):
    """The decode cache is keyed by every image's size and modification time, not the folder listing."""
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    root = small_data_root
    fake = tmp_path / "omni"
    source = next((root / "omniglot-py" / "images_background").glob("*/character01"))
    for part in ("images_background", "images_evaluation"):
        target = fake / "omniglot-py" / part / "Alpha" / "character01"
        target.mkdir(parents=True)
        for f in sorted(source.glob("*.png")):
            shutil.copy(f, target / f.name)
    images, _ = load_omniglot(fake)  # decoded and cached
    assert len(list((tmp_path / "cache").glob("omniglot-*.pt"))) == 1
    assert torch.equal(load_omniglot(fake)[0], images)  # unchanged files: the cache answers
    changed = fake / "omniglot-py" / "images_evaluation" / "Alpha" / "character01" / sorted(source.glob("*.png"))[0].name
    changed.write_bytes(b"corrupted after decoding")
    with pytest.raises(ConfigError, match="unreadable image .*character01"):
        load_omniglot(fake)
