"""The device-side sampler: exact 32-bit hashing, valid and uniform tasks, a stream fixed by (seed, iteration)."""
from __future__ import annotations

import random

import torch

from metagrad.bench.data.device_tasks import DeviceTasks, class_images, mix32, multiply32
from metagrad.bench.data.tasks import EpisodeSpec, ImageClassTasks

MASK = 0xFFFFFFFF


def reference_mix32(x: int) -> int:
    """MurmurHash3's fmix32 with Python's unbounded integers."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & MASK
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & MASK
    return x ^ (x >> 16)


def test_hash_is_exact_32_bit_arithmetic():
    rng = random.Random(0)
    values = [0, 1, MASK, MASK - 1, 1 << 31, (1 << 31) - 1] + [rng.randrange(1 << 32) for _ in range(2000)]
    x = torch.tensor(values, dtype=torch.long)
    for constant in (0x85EBCA6B, 0xC2B2AE35, 0x9E3779B9, 3):
        assert multiply32(x, constant).tolist() == [(v * constant) & MASK for v in values]
    assert mix32(x).tolist() == [reference_mix32(v) for v in values]
    assert reference_mix32(0) == 0 and reference_mix32(1) != 1  # the reference is not the identity


SPEC = EpisodeSpec(4, 2, 3)


def coded_tasks(characters: int = 7, per_class: int = 6, rotations: bool = True, spec: EpisodeSpec = SPEC):
    """Tasks whose every image is a distinct random 5x5 pattern (rotations included), so that a drawn image
    names its class and instance."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (characters, per_class, 5, 5), dtype=torch.uint8, generator=generator)
    classes = tuple((c, t) for c in range(characters) for t in (range(4) if rotations else range(1)))
    return ImageClassTasks(images, classes, spec)


def test_classes_are_the_host_samplers_images():
    tasks = coded_tasks()
    table = class_images(tasks)
    assert table.shape == (len(tasks.classes), 6, 1, 5, 5)
    for index, (source, turns) in enumerate(tasks.classes):
        assert torch.equal(table[index, :, 0], torch.rot90(tasks.images[source], turns, dims=(-2, -1)))
    plain = coded_tasks(rotations=False)
    assert class_images(plain).data_ptr() == plain.images.data_ptr()  # nothing to rotate: no copy


def identify(table: torch.Tensor, images: torch.Tensor) -> list[tuple[int, int]]:
    """(class, instance) of each image, by exact match against the class table."""
    flat = (table.flatten(2) * 255).round().long() if table.is_floating_point() else table.flatten(2).long()
    found = []
    for image in (images * 255).round().long().flatten(1):
        matches = (flat == image).all(dim=-1).nonzero().tolist()
        assert len(matches) == 1, "every image is exactly one image of the split"
        found.append(tuple(matches[0]))
    return found


def test_draws_are_valid_tasks():
    tasks = coded_tasks()
    spec = tasks.spec
    sampler = DeviceTasks(tasks, "cpu", torch.float64, seed=3, count=5)
    for _ in range(20):
        batch = sampler.next()
        assert batch.support.x.shape == (5, spec.ways * spec.shots, 1, 5, 5)
        assert batch.query.x.shape == (5, spec.ways * spec.queries, 1, 5, 5)
        for task in batch.tasks():
            assert task.support.y.tolist() == [c for c in range(spec.ways) for _ in range(spec.shots)]
            assert task.query.y.tolist() == [c for c in range(spec.ways) for _ in range(spec.queries)]
            support, query = identify(sampler.images, task.support.x), identify(sampler.images, task.query.x)
            classes = [support[label * spec.shots][0] for label in range(spec.ways)]
            assert len(set(classes)) == spec.ways
            for label, cls in enumerate(classes):
                shown = ([i for c, i in support[label * spec.shots:(label + 1) * spec.shots] if c == cls]
                         + [i for c, i in query[label * spec.queries:(label + 1) * spec.queries] if c == cls])
                assert len(shown) == len(set(shown)) == spec.shots + spec.queries  # the label's class, distinct images


def test_draws_are_uniform():
    """Class frequencies, which class gets label 0, and image frequencies, over 12,000 tasks, each within
    5 standard deviations of uniform (the draws are deterministic: this cannot flake)."""
    characters, per_class, spec = 28, 6, EpisodeSpec(4, 2, 3)
    images = torch.zeros(characters, per_class, 2, 2, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(characters).view(-1, 1)
    images[:, :, 0, 1] = torch.arange(per_class).view(1, -1)
    tasks = ImageClassTasks(images, tuple((c, 0) for c in range(characters)), spec)
    sampler = DeviceTasks(tasks, "cpu", torch.float32, seed=0, count=4)
    draws = torch.stack([sampler.next().support.x for _ in range(3000)]).flatten(0, 1)  # [tasks, ways*shots, 1, 2, 2]
    coded = (draws[:, :, 0] * 255).round().long()
    classes, shown = coded[:, :, 0, 0], coded[:, :, 0, 1]
    tasks_drawn = classes.shape[0]

    def within(counts: torch.Tensor, probability: float) -> None:
        expected = tasks_drawn * probability
        sd = (expected * (1 - probability)) ** 0.5
        assert (counts.double() - expected).abs().max() < 5 * sd, (counts, expected, sd)

    per_task_classes = classes[:, ::spec.shots]  # [tasks, ways], in label order
    within(torch.bincount(per_task_classes.flatten(), minlength=characters), spec.ways / characters)
    within(torch.bincount(per_task_classes[:, 0], minlength=characters), 1 / characters)
    within(torch.bincount(shown[:, 0], minlength=per_class), 1 / per_class)
    assert (classes[0::4] != classes[1::4]).any(dim=1).float().mean() > 0.99  # the tasks of one batch differ


def test_the_stream_is_a_function_of_seed_and_iteration():
    tasks = coded_tasks()
    first = DeviceTasks(tasks, "cpu", torch.float32, seed=5, count=3)
    draws = [first.next() for _ in range(6)]
    assert first.iteration.item() == 6
    again = DeviceTasks(tasks, "cpu", torch.float32, seed=5, count=3)
    again.seek(4)
    assert torch.equal(again.next().support.x, draws[4].support.x)
    assert torch.equal(again.draw(torch.tensor(1)).query.x, draws[1].query.x)
    assert not torch.equal(draws[0].support.x, draws[1].support.x)
    other = DeviceTasks(tasks, "cpu", torch.float32, seed=6, count=3)
    assert not torch.equal(other.next().support.x, draws[0].support.x)
    far = torch.tensor(1 << 33)  # iterations beyond 32 bits still get their own keys
    assert not torch.equal(first.draw(far).support.x, first.draw(torch.tensor(0)).support.x)


def test_a_share_is_its_part_of_the_whole_batch():
    tasks = coded_tasks()
    whole = DeviceTasks(tasks, "cpu", torch.float32, seed=0, count=5).next()
    part = DeviceTasks(tasks, "cpu", torch.float32, seed=0, count=5, share=range(2, 4)).next()
    assert torch.equal(part.support.x, whole.support.x[2:4]) and torch.equal(part.query.y, whole.query.y[2:4])
