"""Task samplers for each data set and split, and the list of data sets: the built-in ones and those a package adds.

A package adds a data set through the entry-point group ``metagrad.datasets`` (``mine = "my_package:MyImages"``):
the entry names an object (or class) with ``channels`` and ``image_size`` (its images' shape, for the network) and
``load(root: Path) -> (images, class_names)``, images uint8 [classes, images per class, channels, size, size] read
from ``--data-root``; the suite splits its classes with the split seed as it does a folder's (``bench.data.folder``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metagrad.bench.data.omniglot import ClassSplit
from metagrad.bench.data.root import resolve_data_root
from metagrad.bench.data.tasks import EpisodeSpec, ImageClassTasks
from metagrad.errors import ConfigError
from metagrad.plugins import load_entry_points

BUILT_IN = ("omniglot", "mini-imagenet", "folder")
PLUGIN_GROUP = "metagrad.datasets"
_plugins: dict[str, Any] | None = None


def plugin_datasets() -> dict[str, Any]:
    """The data sets of the entry-point group ``metagrad.datasets``, loaded once; a broken one is one line on stderr."""
    global _plugins
    if _plugins is None:
        _plugins = {}

        def accept(entry, dataset: Any) -> None:
            if entry.name in BUILT_IN:
                raise ConfigError(f"the data set name {entry.name!r} is metagrad's")
            lacking = [part for part in ("channels", "image_size", "load") if not hasattr(dataset, part)]
            if lacking or not callable(dataset.load):
                raise ConfigError(f"it names {type(dataset).__name__} {dataset!r:.40}, which lacks "
                                  f"{', '.join(lacking) or 'a callable load'}: a data set has channels, image_size "
                                  "and load(root)")
            _plugins[entry.name] = dataset

        load_entry_points(PLUGIN_GROUP, "data set", accept)
    return _plugins


def dataset_names() -> tuple[str, ...]:
    return (*BUILT_IN, *plugin_datasets())


@dataclass(frozen=True)
class ImageShape:
    channels: int
    size: int


def image_shape(dataset: str, image_size: int | None = None, channels: int | None = None) -> ImageShape:
    """The shape of the data set's images as the network takes them (``image_size`` and ``channels``: a folder's)."""
    from metagrad.bench.data.folder import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE

    if dataset == "omniglot":
        return ImageShape(1, 28)
    if dataset == "mini-imagenet":
        return ImageShape(3, 84)
    if dataset == "folder":
        return ImageShape(channels or DEFAULT_CHANNELS, image_size or DEFAULT_IMAGE_SIZE)
    if dataset in plugin_datasets():
        plugin = plugin_datasets()[dataset]
        return ImageShape(plugin.channels, plugin.image_size)
    raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(dataset_names())}")


@dataclass(frozen=True)
class TaskSource:
    tasks: ImageClassTasks
    split: ClassSplit


def task_source(dataset: str, split: str, spec: EpisodeSpec, data_root: str | None = None,
                split_seed: int = 1, omniglot_split: str = "random", image_size: int | None = None,
                channels: int | None = None, class_split: tuple[float, float] | None = None) -> TaskSource:
    """``split``: train, val or test; ``omniglot_split``: which classes those are (``omniglot_splits``);
    ``image_size`` and ``channels``: a folder's images as the network takes them; ``class_split``: the fractions of a
    folder's (or a plug-in data set's) classes for meta-training and validation (None: 64 and 16 %)."""
    if dataset == "folder" and data_root is None:
        raise ConfigError("--dataset folder reads --data-root DIR, a folder of class folders (DIR/<class>/<image>)")
    root = resolve_data_root(data_root)
    if dataset == "omniglot":
        from metagrad.bench.data.omniglot import load_omniglot, omniglot_splits

        images, names = load_omniglot(root)
        classes = omniglot_splits(names, seed=split_seed, protocol=omniglot_split)[split]
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    if omniglot_split != "random":
        raise ConfigError(f"the {omniglot_split!r} split is Omniglot's; {dataset} has its own fixed split")
    if dataset == "mini-imagenet":
        from metagrad.bench.data.mini_imagenet import load_mini_imagenet

        images, classes = load_mini_imagenet(root, split)
        return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)
    if dataset == "folder":
        from metagrad.bench.data.folder import load_folder

        shape = image_shape(dataset, image_size, channels)
        images, names = load_folder(root, shape.size, shape.channels)
    elif dataset in plugin_datasets():
        images, names = plugin_datasets()[dataset].load(root)
    else:
        raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(dataset_names())}")
    return seeded_split_source(images, tuple(names), split, spec, split_seed, class_split)


def seeded_split_source(images, names: tuple[str, ...], split: str, spec: EpisodeSpec, split_seed: int,
                        class_split: tuple[float, float] | None = None) -> TaskSource:
    """The tasks of one split of a data set whose classes are split with the seed (``bench.data.folder``)."""
    from metagrad.bench.data.folder import CLASS_SPLIT, folder_splits, split_words

    fractions = class_split or CLASS_SPLIT
    chosen = folder_splits(names, split_seed, fractions)[split]
    classes = ClassSplit(split, tuple((i, 0) for i in chosen), tuple(names[i] for i in chosen))
    if spec.ways > len(chosen):
        raise ConfigError(f"{spec.ways}-way tasks need at least {spec.ways} classes; the {split} split has "
                          f"{len(chosen)} of the {len(names)} classes (cut {split_words(fractions)}): give --ways "
                          f"{len(chosen)} or fewer, or more classes to the {split} split with --class-split TRAIN,VAL")
    if spec.shots + spec.queries > images.shape[1]:
        raise ConfigError(f"{spec.shots} shots + {spec.queries} queries need {spec.shots + spec.queries} images per "
                          f"class; the data set has {images.shape[1]} (its smallest class's count)")
    return TaskSource(ImageClassTasks(images, classes.classes, spec), classes)


def read_line(dataset: str, data_root: str | None, sources: dict[str, TaskSource]) -> str:
    """What a run read, in one line: the data set and where from, each split's classes, the images per class kept,
    and whether the decoded images came from the cache."""
    from metagrad.bench.data.root import cache_outcome, resolve_data_root

    try:
        where = data_root if data_root is not None else resolve_data_root(None)
    except ConfigError:
        where = "its own source"  # a plug-in data set that reads no data root
    splits = ", ".join(f"{name} {len(source.tasks.classes):,} classes" for name, source in sources.items())
    per_class = next(iter(sources.values())).tasks.images.shape[1]
    return f"data: {dataset} from {where}: {splits}, {per_class} images per class kept; {cache_outcome()}"
