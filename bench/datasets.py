"""Task samplers for each data set and split, and the network that goes with the data set."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from algorithms.protocol import ConfigError

from .data_root import resolve_data_root
from .models import mini_imagenet_convnet, omniglot_convnet
from .omniglot import ClassSplit
from .tasks import EpisodeSpec, ImageClassTasks

DATASETS = ("omniglot", "mini-imagenet")
DEFAULT_FILTERS = {"omniglot": 64, "mini-imagenet": 32}


@dataclass(frozen=True)
class TaskSource:
    tasks: ImageClassTasks
    split: ClassSplit


def task_source(dataset: str, split: str, spec: EpisodeSpec, data_root: str | None = None,
                split_seed: int = 1, omniglot_split: str = "random") -> TaskSource:
    """``split``: train, val or test; ``omniglot_split``: which classes those are (``omniglot_splits``)."""
    root = resolve_data_root(data_root)
    if dataset == "omniglot":
        from .omniglot import load_omniglot, omniglot_splits

        images, names = load_omniglot(root)
        classes = omniglot_splits(names, seed=split_seed, protocol=omniglot_split)[split]
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    if omniglot_split != "random":
        raise ConfigError(f"the {omniglot_split!r} split is Omniglot's; {dataset} has its own fixed split")
    if dataset == "mini-imagenet":
        from .mini_imagenet import load_mini_imagenet

        images, classes = load_mini_imagenet(root, split)
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def network(dataset: str, ways: int, filters: int | None = None, channels_last: bool = False) -> nn.Module:
    """The dataset's ConvNet; ``channels_last``: its stacked pass (the batched engine's) in channels-last memory."""
    filters = filters or DEFAULT_FILTERS[dataset]
    build = omniglot_convnet if dataset == "omniglot" else mini_imagenet_convnet
    return build(ways, filters, channels_last)
