"""Task samplers for each data set and split."""
from __future__ import annotations

from dataclasses import dataclass

from algorithms.registry import ConfigError
from bench.data.omniglot import ClassSplit
from bench.data.root import resolve_data_root
from bench.data.tasks import EpisodeSpec, ImageClassTasks

DATASETS = ("omniglot", "mini-imagenet")


@dataclass(frozen=True)
class TaskSource:
    tasks: ImageClassTasks
    split: ClassSplit


def task_source(dataset: str, split: str, spec: EpisodeSpec, data_root: str | None = None,
                split_seed: int = 1, omniglot_split: str = "random") -> TaskSource:
    """``split``: train, val or test; ``omniglot_split``: which classes those are (``omniglot_splits``)."""
    root = resolve_data_root(data_root)
    if dataset == "omniglot":
        from bench.data.omniglot import load_omniglot, omniglot_splits

        images, names = load_omniglot(root)
        classes = omniglot_splits(names, seed=split_seed, protocol=omniglot_split)[split]
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    if omniglot_split != "random":
        raise ConfigError(f"the {omniglot_split!r} split is Omniglot's; {dataset} has its own fixed split")
    if dataset == "mini-imagenet":
        from bench.data.mini_imagenet import load_mini_imagenet

        images, classes = load_mini_imagenet(root, split)
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
