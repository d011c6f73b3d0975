"""Meta-batches drawn where the model runs: no host work per iteration, capturable in a CUDA graph.

``ImageClassTasks`` draws each task on the host with a ``torch.Generator`` (the reference sampler, and
the one evaluation pools use). At thousands of tasks per second that host loop, and the copy of its
batch to the GPU, is as long as the GPU's whole iteration. ``DeviceTasks`` holds the split's classes as
one uint8 tensor on the device ([classes, per class, C, H, W], every rotation already applied) and
draws the meta-batch of iteration ``i`` with device operations only: the classes of each task and the
images of each class are the first ones of a sort by random keys, and the keys are a counter-based hash
of (seed, i, position). So:

- the batch of an iteration depends on nothing but the seed and the iteration number: resuming is
  seeking, and the checkpoint needs no sampler state;
- the keys are integer arithmetic (32-bit values held in int64, every product exact), so the CPU and
  the GPU draw the same tasks, which is what lets the CPU tests stand for the GPU;
- the iteration counter is a device tensor advanced by the draw itself, so a captured CUDA graph
  replays the draw of the next iteration each time.

The tasks have ``ImageClassTasks``' form (N classes, K + Q distinct images each, labels 0..N-1 in the
order the classes were drawn, support and query class-major), but not its draws: a run names its
sampler (``TrainConfig.sampler``), and both engines see one task stream with either.
"""
from __future__ import annotations

import torch
from torch import Tensor

from metagrad.algorithms import Batch, TaskBatch
from metagrad.bench.data.tasks import ImageClassTasks, to_float

MASK32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B9  # Weyl increment between consecutive positions (2^32 / golden ratio)
# Streams of keys that must be independent: which classes, which images.
CLASS_STREAM, IMAGE_STREAM = 0x243F6A88, 0x85A308D3


def multiply32(x: Tensor, constant: int) -> Tensor:
    """(x * constant) mod 2^32 for int64 x in [0, 2^32): the product split in 16-bit halves, so that no
    intermediate leaves int64's range (signed overflow is not defined behaviour to rely on)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def mix32(x: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finalizer: a bijection of [0, 2^32) whose output bits each depend on all input bits."""
    x = x ^ (x >> 16)
    x = multiply32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = multiply32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def iteration_key(seed: int, iteration: Tensor) -> Tensor:
    """One 32-bit key per (seed, iteration), from a 0-dim int64 ``iteration`` on any device."""
    key = mix32(torch.full_like(iteration, (seed * GOLDEN32 + 1) & MASK32))
    key = mix32(key ^ (iteration & MASK32))
    return mix32(key ^ ((iteration >> 32) & MASK32))


def random_keys(key: Tensor, stream: int, shape: tuple[int, ...]) -> Tensor:
    """Independent 32-bit keys, one per position of ``shape``, from ``key`` and a stream constant (splitmix:
    a Weyl sequence through ``mix32``)."""
    positions = torch.arange(int(torch.Size(shape).numel()), dtype=torch.long, device=key.device).view(shape)
    start = mix32(key ^ stream)
    return mix32((start + positions * GOLDEN32) & MASK32)


def first_by_key(keys: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` smallest keys along the last axis: a uniformly random ``count``-subset, in
    random order. Ties (rare with 32-bit keys) are broken by position before sorting (key * n + position,
    all distinct), so the result is one and the same on every device, whatever its sort does with ties."""
    size = keys.shape[-1]
    distinct = keys * size + torch.arange(size, dtype=keys.dtype, device=keys.device)
    return torch.argsort(distinct, dim=-1)[..., :count]


class DeviceTasks:
    """``tasks``' classes held on ``device``; ``next()`` draws the meta-batch of the current iteration and
    advances it (device operations only); ``seek(i)`` makes iteration ``i`` the next one.

    ``share`` (a range of task positions) keeps one process's part of each meta-batch: every process draws
    the same batch and computes its share, as with the host sampler.
    """

    def __init__(self, tasks: ImageClassTasks, device: torch.device | str, dtype: torch.dtype, seed: int,
                 count: int, share: range | None = None):
        self.spec, self.dtype, self.seed, self.count = tasks.spec, dtype, seed, count
        self.share = share
        self.images = class_images(tasks).to(device)
        self.iteration = torch.zeros((), dtype=torch.long, device=self.images.device)
        ways, shots, queries = self.spec.ways, self.spec.shots, self.spec.queries
        labels = torch.arange(ways, device=self.images.device)
        self.support_y = labels.repeat_interleave(shots).expand(count, -1)
        self.query_y = labels.repeat_interleave(queries).expand(count, -1)

    def seek(self, iteration: int) -> None:
        self.iteration.fill_(iteration)

    def draw(self, iteration: Tensor) -> TaskBatch:
        """The meta-batch of ``iteration`` (a 0-dim int64 tensor on the device)."""
        spec, count = self.spec, self.count
        classes, per_class = self.images.shape[:2]
        key = iteration_key(self.seed, iteration)
        picked = first_by_key(random_keys(key, CLASS_STREAM, (count, classes)), spec.ways)  # [tasks, ways]
        shown = first_by_key(random_keys(key, IMAGE_STREAM, (count, spec.ways, per_class)),
                             spec.shots + spec.queries)  # [tasks, ways, shots + queries]
        x = to_float(self.images[picked.unsqueeze(-1), shown], self.dtype)  # [tasks, ways, K + Q, C, H, W]
        support = x[:, :, :spec.shots].flatten(1, 2)
        query = x[:, :, spec.shots:].flatten(1, 2)
        batch = TaskBatch(Batch(support, self.support_y), Batch(query, self.query_y))
        return batch.select(self.share) if self.share is not None else batch

    def next(self) -> TaskBatch:
        batch = self.draw(self.iteration)
        self.iteration += 1
        return batch


def class_images(tasks: ImageClassTasks) -> Tensor:
    """Every class of ``tasks`` as its own images, [classes, per class, C, H, W], rotations applied."""
    images = tasks.images if tasks.images.dim() == 5 else tasks.images.unsqueeze(2)
    sources = [source for source, _ in tasks.classes]
    turns = torch.tensor([turn for _, turn in tasks.classes])
    if sources == list(range(images.shape[0])) and not bool(turns.any()):
        return images  # the classes are the stored images as they are: no copy
    stacked = images[torch.tensor(sources)]
    for turn in (1, 2, 3):
        rotated = turns == turn
        if bool(rotated.any()):
            stacked[rotated] = torch.rot90(stacked[rotated], turn, dims=(-2, -1))
    return stacked
