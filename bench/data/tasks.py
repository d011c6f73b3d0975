"""N-way, K-shot, Q-query episodes from a pool of image classes, seeded and reproducible."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from metagrad.algorithms import Batch, Task, TaskBatch
from metagrad.errors import require


@dataclass(frozen=True)
class EpisodeSpec:
    ways: int
    shots: int
    queries: int

    def __post_init__(self) -> None:
        require(self.ways >= 2, f"ways must be >= 2, got {self.ways}")
        require(self.shots >= 1, f"shots must be >= 1, got {self.shots}")
        require(self.queries >= 1, f"queries must be >= 1, got {self.queries}")


class ImageClassTasks:
    """Samples episodes from ``images`` [characters, per_class, H, W] (uint8) or [classes, per_class, C, H, W].

    ``classes`` lists (index, quarter turns) pairs: a rotated character is a class of its own.
    Labels 0..N-1 are assigned in the random order the classes were drawn.
    """

    def __init__(self, images: Tensor, classes: tuple[tuple[int, int], ...], spec: EpisodeSpec):
        per_class = images.shape[1]
        require(spec.ways <= len(classes),
                f"{spec.ways}-way tasks need at least {spec.ways} classes; this split has {len(classes)}")
        require(spec.shots + spec.queries <= per_class,
                f"{spec.shots} shots + {spec.queries} queries exceed the {per_class} images per class")
        self.images = images
        self.classes = classes
        self.spec = spec

    def sample(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Task:
        spec = self.spec
        picks = torch.randperm(len(self.classes), generator=generator)[:spec.ways].tolist()
        support, query = [], []
        for index in picks:
            source, turns = self.classes[index]
            order = torch.randperm(self.images.shape[1], generator=generator)[:spec.shots + spec.queries]
            x = self.images[source, order]
            if x.dim() == 3:  # grey images: add the channel axis
                x = x.unsqueeze(1)
            if turns:
                x = torch.rot90(x, turns, dims=(-2, -1))
            support.append(x[:spec.shots])
            query.append(x[spec.shots:])
        labels = torch.arange(spec.ways)
        return Task(
            Batch(to_float(torch.cat(support), dtype), labels.repeat_interleave(spec.shots)),
            Batch(to_float(torch.cat(query), dtype), labels.repeat_interleave(spec.queries)),
        )

    def sample_batch(self, generator: torch.Generator, count: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """``count`` tasks stacked for the batched engine: the very tasks ``count`` calls of ``sample`` draw,
        so the per-task and batched engines see one task stream."""
        return TaskBatch.stack([self.sample(generator, dtype) for _ in range(count)])

    def fixed_pool(self, count: int, seed: int, dtype: torch.dtype = torch.float32) -> Iterator[Task]:
        """The same ``count`` tasks, in order, for every caller with the same seed (evaluation pools).
        Generated one at a time: 600 Mini-ImageNet tasks would not fit in memory at once."""
        generator = torch.Generator().manual_seed(seed)
        for _ in range(count):
            yield self.sample(generator, dtype)

    def fixed_pool_batches(self, count: int, seed: int, size: int, dtype: torch.dtype = torch.float32) -> Iterator[TaskBatch]:
        """``fixed_pool``'s tasks, in order, stacked ``size`` at a time (the last batch may be smaller)."""
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, count, size):
            yield self.sample_batch(generator, min(size, count - start), dtype)


def to_float(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
