"""What a training run and an evaluation are: their frozen configurations, each field a command-line option of
``metagrad train`` / ``metagrad eval`` (``bench.options.option``), and how ``metagrad train`` builds one from a preset."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from metagrad.algorithms import algorithm_names, has_batched_form, make_algorithm
from metagrad.bench.data.omniglot import SPLIT_PROTOCOLS
from metagrad.bench.data.root import DATA_ROOT_DEFAULT, DATA_ROOT_HELP
from metagrad.bench.data.sources import ImageShape, TaskSource, dataset_names, image_shape, task_source
from metagrad.bench.data.tasks import EpisodeSpec
from metagrad.bench.options import MOST_FILTERS, MOST_IMAGE_SIDE, MOST_IMAGES, MOST_ITERATIONS, MOST_MINUTES, MOST_TASKS, option
from metagrad.bench.training.engines import (
    CHANNELS_LAST_HELP,
    COMPILE_HELP,
    CUDA_GRAPH_HELP,
    ENGINE_AUTO,
    ENGINE_AUTO_TRAINING,
    ENGINE_HELP,
    ENGINES,
    SAMPLER_AUTO,
    SAMPLER_HELP,
    SAMPLERS,
    default_engine,
    default_sampler,
)
from metagrad.errors import require

DTYPES = ("float32", "float64")
OUTER_OPTIMIZERS = ("adam", "sgd")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = option("omniglot", "the data set: omniglot, mini-imagenet (from --data-root), folder (--data-root "
                          "DIR: one sub-folder of images per class) or a plug-in's", choices=dataset_names,
                          shown="none: give it, or --preset")
    ways: int = option(5, "classes per task", at_most=MOST_IMAGES)
    shots: int = option(1, "support images per class", at_most=MOST_IMAGES)
    queries: int = option(15, "query images per class", at_most=MOST_IMAGES)
    algorithm: str = option("imaml", "a registered algorithm", choices=algorithm_names,
                            shown="none: give it, or --preset")
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # the command line's --set KEY=VALUE
    filters: int | None = option(None, "ConvNet filters", shown="64 on Omniglot, 32 elsewhere", at_most=MOST_FILTERS)
    image_size: int | None = option(None, "--dataset folder: images resized to this side", shown="84", at_most=MOST_IMAGE_SIDE)
    channels: int | None = option(None, "--dataset folder: 1 (grey) or 3 (RGB)", shown="3", at_most=3)
    class_split: tuple[float, ...] | None = option(None, "--dataset folder or a plug-in's: the fractions of the "
                                                   "classes for meta-training and validation (the rest are test "
                                                   "classes)", shown="0.64,0.16", metavar="TRAIN,VAL")
    meta_batch: int = option(32, "tasks per outer step", at_most=MOST_IMAGES)
    meta_lr: float = option(1e-3, "outer step size")
    outer_optimizer: str = option("adam", "adam (the shared outer loop) or sgd (theta <- theta - meta_lr x mean "
                                  "meta-gradient; Nichol et al.'s Reptile)", choices=OUTER_OPTIMIZERS)
    meta_lr_final: float | None = option(None, "anneal the outer step size linearly to this at --iterations "
                                         "(Nichol et al.)", shown="constant")
    train_shots: int | None = option(None, "support images per class of the meta-training tasks (Nichol et al.'s "
                                     "Reptile: 10)", shown="--shots", at_most=MOST_IMAGES)
    train_queries: int | None = option(None, "query images per class of the meta-training tasks", shown="--queries", at_most=MOST_IMAGES)
    iterations: int = option(1000, "outer steps", at_most=MOST_ITERATIONS)
    validate_every: int = option(100, "iterations between validations", at_most=MOST_ITERATIONS)
    validation_tasks: int = option(100, "validation pool size", at_most=MOST_TASKS)
    checkpoint_every: int = option(100, "iterations between checkpoints", at_most=MOST_ITERATIONS)
    max_minutes: float | None = option(None, "stop after this much training time (checkpointed)", shown="no limit",
                                      at_most=MOST_MINUTES)
    seed: int = option(0, "random seed")
    split_seed: int = 1
    omniglot_split: str = option("random", "Omniglot's classes: random (the paper's: 1200 of the 1623 characters for "
                                 "meta-training, 423 for testing) or lake (Lake et al.: the 30 background alphabets "
                                 "for meta-training, the 20 evaluation alphabets for testing; see metagrad lake-runs)",
                                 choices=SPLIT_PROTOCOLS)
    validation_seed: int = 1234
    device: str = option("cpu", "torch device: cpu or cuda[:N]")
    data_root: str | None = option(None, DATA_ROOT_HELP, shown=DATA_ROOT_DEFAULT)
    preset: str | None = None  # the command line's --preset
    engine: str = option("per-task", ENGINE_HELP, choices=ENGINES, auto=ENGINE_AUTO_TRAINING)
    cuda_graph: bool = option(False, CUDA_GRAPH_HELP)
    compile: bool = option(False, COMPILE_HELP + " (metagrad throughput --compile measures both)")
    channels_last: bool = option(False, CHANNELS_LAST_HELP)
    sampler: str = option("host", SAMPLER_HELP, choices=SAMPLERS, auto=SAMPLER_AUTO)
    dtype: str = option("float32", "parameters and images (float64 for the tests that compare engines and runs "
                        "exactly)", choices=DTYPES)

    def __post_init__(self) -> None:
        require(self.omniglot_split in SPLIT_PROTOCOLS,
                f"omniglot split must be one of {', '.join(SPLIT_PROTOCOLS)}, got {self.omniglot_split!r}")
        require(self.omniglot_split == "random" or self.dataset == "omniglot",
                f"the {self.omniglot_split!r} split is Omniglot's; {self.dataset} has its own fixed split")
        require(self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        require(not self.compile or (self.engine == "batched" and not self.cuda_graph),
                "--compile needs the batched engine, and is instead of --cuda-graph, not beside it")
        require(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        require(not self.channels_last or self.engine == "batched",
                "--channels-last lays out the batched engine's stacked network; the per-task engine has none")
        require(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        require(not self.cuda_graph or (self.engine == "batched" and self.device.startswith("cuda")),
                "CUDA graphs need the batched engine on a CUDA device")
        require(self.filters is None or self.filters >= 1, f"filters must be >= 1, got {self.filters}")
        require(self.dataset in dataset_names(),
                f"unknown dataset {self.dataset!r}; choose from {', '.join(dataset_names())}")
        require(self.dataset == "folder" or (self.image_size is None and self.channels is None),
                "--image-size and --channels are a folder data set's (--dataset folder)")
        require(self.channels in (None, 1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.class_split is not None:
            object.__setattr__(self, "class_split", tuple(self.class_split))  # read back from JSON as a list
            require(self.dataset not in ("omniglot", "mini-imagenet"),
                    f"--class-split is a folder's or a plug-in data set's; {self.dataset} has its own split")
            require(len(self.class_split) == 2 and all(0 < f < 1 for f in self.class_split)
                    and sum(self.class_split) < 1, "--class-split takes two fractions TRAIN,VAL above 0 whose sum is "
                    f"below 1 (the rest are test classes), got {','.join(map(str, self.class_split))}")
        require(self.image_size is None or self.image_size >= 16,
                f"image size must be >= 16 (the ConvNet halves it four times), got {self.image_size}")
        EpisodeSpec(self.ways, self.shots, self.queries)
        require(self.meta_batch >= 1, f"meta batch must be >= 1, got {self.meta_batch}")
        require(self.meta_lr > 0, f"meta lr must be > 0, got {self.meta_lr}")
        require(self.outer_optimizer in OUTER_OPTIMIZERS,
                f"outer optimizer must be one of {', '.join(OUTER_OPTIMIZERS)}, got {self.outer_optimizer!r}")
        require(self.meta_lr_final is None or self.meta_lr_final >= 0,
                f"meta lr final must be >= 0, got {self.meta_lr_final}")
        require(not self.cuda_graph or (self.outer_optimizer == "adam" and self.meta_lr_final is None),
                "CUDA graphs need the Adam outer step with a constant meta lr")
        for name in ("train_shots", "train_queries"):  # 0 would silently mean "as --shots/--queries"
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name.replace('_', ' ')} must be >= 1 (leave it out for the same "
                    f"as {name.split('_')[1]}), got {value}")
        EpisodeSpec(self.ways, self.train_shots or self.shots, self.train_queries or self.queries)
        require(self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}")
        require(self.validate_every >= 1, f"validate every must be >= 1, got {self.validate_every}")
        require(self.validation_tasks >= 1, f"validation tasks must be >= 1, got {self.validation_tasks}")
        require(self.checkpoint_every >= 1, f"checkpoint every must be >= 1, got {self.checkpoint_every}")
        require(self.max_minutes is None or self.max_minutes > 0, f"max minutes must be > 0, got {self.max_minutes}")
        make_algorithm(self.algorithm, **self.hyperparameters)  # validates the hyperparameters
        require(not (self.cuda_graph or self.compile) or has_batched_form(self.algorithm),
                f"{self.algorithm} has no batched engine of its own (the batched engine runs it task by task, reading "
                "values back between tasks), which --cuda-graph and --compile cannot capture")

    @property
    def spec(self) -> EpisodeSpec:
        """The episodes of validation and evaluation."""
        return EpisodeSpec(self.ways, self.shots, self.queries)

    @property
    def train_spec(self) -> EpisodeSpec:
        """The episodes of meta-training."""
        return EpisodeSpec(self.ways, self.train_shots or self.shots, self.train_queries or self.queries)

    @property
    def image_shape(self) -> ImageShape:
        return image_shape(self.dataset, self.image_size, self.channels)

    def task_source(self, split: str, spec: EpisodeSpec | None = None) -> TaskSource:
        """The run's tasks of ``split`` (``spec``: the validation and evaluation episodes unless given)."""
        return task_source(self.dataset, split, spec or self.spec, self.data_root, self.split_seed, self.omniglot_split,
                           self.image_size, self.channels, self.class_split)

    def meta_lr_at(self, iteration: int) -> float:
        """The meta step size of iteration ``iteration`` (0-based): constant, or annealed linearly from
        ``meta_lr`` at 0 to ``meta_lr_final`` at ``iterations`` (Nichol et al.'s schedule)."""
        if self.meta_lr_final is None:
            return self.meta_lr
        done = iteration / self.iterations
        return done * self.meta_lr_final + (1 - done) * self.meta_lr


# What a resumed run may change: how long it trains and how its iterations are computed, never what it computes.
RESUMABLE = ("iterations", "max_minutes", "engine", "cuda_graph", "compile", "channels_last")


def train_config(preset_name: str | None = None, hyperparameters: dict[str, Any] | None = None,
                 **fields: Any) -> TrainConfig:
    """What ``metagrad train`` runs: a preset (or none) with the given fields (None: keep the preset's)
    and algorithm hyperparameters laid over it; the engine and the sampler, unless given, the ones faster on
    the device."""
    from metagrad.bench.training.presets import preset

    base = preset(preset_name) if preset_name else {}
    merged = {**base, **{name: value for name, value in fields.items() if value is not None}}
    merged["hyperparameters"] = {**base.get("hyperparameters", {}), **(hyperparameters or {})}
    merged.setdefault("sampler", default_sampler(merged.get("device", "cpu")))
    if "engine" in merged:
        return TrainConfig(**merged)
    # the default engine depends on the training tasks' size, which the config settles (its defaults included);
    # an option only the batched engine has asks for it
    config = TrainConfig(**merged, engine="batched")
    if config.cuda_graph or config.compile or config.channels_last:
        return config
    algorithm = make_algorithm(config.algorithm, **config.hyperparameters)
    return replace(config, engine=default_engine(config.device, algorithm, config.train_spec))


def resumed_config(saved: TrainConfig, iterations: int | None = None, max_minutes: float | None = None,
                   engine: str | None = None, cuda_graph: bool = False, compile: bool = False,
                   channels_last: bool = False) -> TrainConfig:
    """What ``metagrad train --resume`` runs: the saved run's config with only how long it trains (``iterations``,
    ``max_minutes``: None keeps the run's) and how its iterations are computed (the engine, None keeping the
    run's; graph capture or compilation, the memory layout) changed (``RESUMABLE``)."""
    limits = {name: value for name, value in (("iterations", iterations), ("max_minutes", max_minutes))
              if value is not None}
    return replace(saved, **limits, engine=engine or saved.engine, cuda_graph=cuda_graph, compile=compile,
                   channels_last=channels_last)


@dataclass(frozen=True)
class EvalConfig:
    """What ``metagrad eval`` scores: ``tasks`` tasks of ``split`` drawn from a pool seeded by ``seed``."""

    split: str = option("test", "the split the tasks come from", choices=SPLITS)
    tasks: int = option(600, "number of tasks", at_most=MOST_TASKS)
    seed: int = option(0, "seed of the task pool")
    device: str | None = option(None, "torch device: cpu or cuda[:N]", shown="the run's")
    engine: str | None = option(None, ENGINE_HELP + " (batched adapts chunks of the run's meta-batch); both score "
                                "the same tasks", choices=ENGINES, auto=ENGINE_AUTO)
    data_root: str | None = option(None, "where the run's data set is now, if it has moved since the run trained "
                                   "(checked against the class split the run recorded)", shown="the run's")

    def __post_init__(self) -> None:
        require(self.tasks >= 1, f"tasks must be >= 1, got {self.tasks}")
        require(self.data_root is None or bool(self.data_root.strip()),
                "--data-root is empty; give the folder that holds the data")
        require(self.split in SPLITS, f"split must be train, val or test, got {self.split!r}")
        require(self.engine is None or self.engine in ENGINES,
                f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
