"""Lake's split and his 20 one-shot runs: class lists, parsing, scoring with known answers, the command."""
from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import pytest
import torch

from metagrad.bench.cli import main
from metagrad.bench.data.omniglot import BACKGROUND, EVALUATION, decode_image, load_omniglot, omniglot_splits
from metagrad.bench.harnesses.lake_runs import RUNS_ZIP, load_lake_runs, score_runs
from metagrad.bench.training.trainer import train

from .data_paths import require_data
from .test_training import float64_config


def test_lake_split_trains_on_background_alphabets_and_tests_on_evaluation_ones(small_data_root):
    _, names = load_omniglot(small_data_root)
    splits = omniglot_splits(names, protocol="lake")
    counts = {split: len(s.characters) for split, s in splits.items()}
    background = sum(name.startswith(BACKGROUND + "/") for name in names)
    assert counts["train"] + counts["val"] == background and counts["val"] == 100
    assert counts["test"] == len(names) - background
    for split in ("train", "val"):
        assert all(name.startswith(BACKGROUND + "/") for name in splits[split].characters)
    assert all(name.startswith(EVALUATION + "/") for name in splits["test"].characters)
    assert not set(splits["train"].characters) & set(splits["val"].characters)
    assert len(splits["train"].classes) == 4 * counts["train"]  # rotations as classes, as the paper's protocol


@pytest.mark.real_data
def test_lakes_own_split_and_runs_are_964_and_659_characters_and_his_answer_key():
    root = require_data("omniglot-py")
    _, names = load_omniglot(root)
    counts = {split: len(s.characters) for split, s in omniglot_splits(names, protocol="lake").items()}
    assert (counts["train"] + counts["val"], counts["test"]) == (964, 659)
    assert load_lake_runs(root)[0].answers[0].item() == 7  # run01's key: item01 is class08 (class_labels.txt)


@pytest.fixture(scope="module")
def runs(small_data_root):
    return load_lake_runs(small_data_root)


def test_lake_runs_parse_into_twenty_runs_of_twenty_classes(runs, small_data_root):
    assert [run.name for run in runs] == [f"run{k:02d}" for k in range(1, 21)]
    for run in runs:
        assert run.training.shape == run.test.shape == (20, 28, 28) and run.training.dtype == torch.uint8
        assert sorted(run.answers.tolist()) == list(range(20))  # each class has one test image
    # each answer is the key's (class_labels.txt: "runNN/test/itemKK.png runNN/training/classCC.png"), counted from 0
    with zipfile.ZipFile(small_data_root / RUNS_ZIP) as archive:
        for run in (runs[0], runs[-1]):
            key = dict(line.split() for line in archive.read(f"{run.name}/class_labels.txt").decode().splitlines())
            assert run.answers.tolist() == [int(key[f"{run.name}/test/item{k:02d}.png"][-6:-4]) - 1 for k in range(1, 21)]
    assert runs[0].training.float().mean() < 128  # strokes bright on a dark background, as in training


def test_scoring_counts_exactly_the_wrong_answers(runs):
    def oracle(support_x, support_y, query_x):
        run = next(r for r in runs if torch.equal((r.test.float() / 255).unsqueeze(1), query_x))
        return run.answers

    assert score_runs(runs, oracle)["errors"].sum() == 0
    always_first = score_runs(runs, lambda sx, sy, qx: torch.zeros(len(qx), dtype=torch.long))
    assert (always_first["error_rate"] == 19 / 20).all()  # one test image per class: class 0 is right once
    nearest = score_runs(runs, lambda sx, sy, qx: torch.cdist(qx.flatten(1), sx.flatten(1)).argmin(1))
    assert 0.3 < nearest["error_rate"].mean() < 0.95  # pixel nearest neighbour: far from chance, far from perfect


@pytest.mark.slow
def test_lake_runs_command_scores_a_lake_run_and_refuses_others(tmp_path, capsys, small_data_root):
    root = small_data_root
    config = replace(float64_config(root, iterations=1, validate_every=1, validation_tasks=2), ways=20,
                     omniglot_split="lake", dtype="float32")
    train(config, tmp_path / "lake", progress=False)
    assert main(["lake-runs", str(tmp_path / "lake")]) == 0
    result = json.loads((tmp_path / "lake" / "lake_runs.json").read_text())
    assert len(result["runs"]) == 20 and 0 <= result["error_rate"] <= 1
    assert result["published_error_rate"] == {"people": 0.045, "Bayesian Program Learning": 0.033}
    assert "published: people 4.5%" in capsys.readouterr().out
    train(replace(config, omniglot_split="random"), tmp_path / "random", progress=False)
    assert main(["lake-runs", str(tmp_path / "random")]) == 2
    assert "--omniglot-split lake" in capsys.readouterr().err
    assert not (tmp_path / "random" / "lake_runs.json").exists()


def test_decode_image_is_the_loaders_processing(small_data_root):
    root = small_data_root
    images, _ = load_omniglot(root)
    alphabet = sorted(p for p in (root / "omniglot-py" / BACKGROUND).iterdir() if p.is_dir())[0]
    first = sorted(p for p in alphabet.iterdir() if p.is_dir())[0]  # the loader's first character
    assert torch.equal(torch.from_numpy(decode_image(sorted(first.glob("*.png"))[0])), images[0, 0])


def run_characters(root, runs) -> tuple[set[int], list[str]]:
    """The characters the runs' images are drawings of: each run image is one of the data set's images, matched
    exactly after decoding, and once only."""
    images, names = load_omniglot(root)
    index: dict[bytes, list[int]] = {}
    for position, image in enumerate(images.reshape(len(images) * 20, -1).numpy()):
        index.setdefault(image.tobytes(), []).append(position)
    characters = set()
    for run in runs:
        for image in torch.cat([run.training, run.test]):
            match = index.get(image.reshape(-1).numpy().tobytes(), [])
            assert len(match) == 1
            characters.add(match[0] // 20)
    return characters, names


def test_lakes_runs_use_only_characters_of_the_lake_test_split(runs, small_data_root):
    """The runs' 200 characters are all in the lake split's test set, while the paper's split meta-trains on some."""
    characters, names = run_characters(small_data_root, runs)
    assert len(characters) == 200
    assert characters <= {c for c, _ in omniglot_splits(names, protocol="lake")["test"].classes}
    assert characters & {c for c, _ in omniglot_splits(names)["train"].classes}


@pytest.mark.real_data
def test_the_paper_split_meta_trains_on_127_of_lakes_200_run_characters():
    root = require_data("omniglot-py")
    characters, names = run_characters(root, load_lake_runs(root))
    assert len(characters) == 200
    assert characters <= {c for c, _ in omniglot_splits(names, protocol="lake")["test"].classes}
    assert len(characters & {c for c, _ in omniglot_splits(names)["train"].classes}) == 127
