"""Data parallelism over the meta-batch with ``torch.distributed``, as ``torchrun`` launches it.

One global task stream: every process draws the whole meta-batch from the same seeded sampler and
computes the meta-gradients of its own contiguous share of it (``ProcessGroup.share``). Each process
sums its share's meta-gradients; one ``all_reduce`` adds the sums; dividing by the global meta-batch
size gives the meta-batch's mean exactly, whether or not the size divides by the number of
processes; every process then takes the same Adam step. So a run's result does not depend on how
many processes ran it, up to the order of floating-point additions, and its checkpoint (written by
rank 0: the global sampler's state, theta, Adam's) resumes with any number of them.

Backends: gloo on the CPU; NCCL on CUDA, one GPU per local rank, with a gloo group beside it for the
host-side agreement (stop flags, gathered evaluation scores) so that agreeing never synchronizes a GPU.
Signals: under several processes SIGINT and SIGTERM (which torchrun forwards to its workers) only set
a flag; after every iteration the processes agree on the flags and on the time limit, so all stop
after the same iteration and the checkpoint is written once.
"""
from __future__ import annotations

import gc
import importlib
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# How long a collective waits for a process that does not arrive: a crashed peer is usually noticed at
# once (its connections close), a hung one only after this. Validation and checkpoints run between
# collectives, so it must exceed the longest of them.
TIMEOUT_ENV = "METAGRAD_DISTRIBUTED_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(RuntimeError):
    """A collective failed: another process of the run stopped or cannot be reached."""


@dataclass
class ProcessGroup:
    """This process's place in the run: rank, world size, backend; one process when not under torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    control: Any = None  # the gloo group for host-side agreement

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> torch.device:
        """The run's device for this process: CUDA's GPU ``local_rank`` under several processes."""
        if self.active and device.startswith("cuda"):
            return torch.device("cuda", self.local_rank)
        return torch.device(device)

    def share(self, count: int) -> range:
        """This process's contiguous share of ``count`` items (the shares differ by at most one)."""
        return range(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)

    def sum_(self, tensor: torch.Tensor) -> None:
        """In place: the tensor summed over the processes (the data backend)."""
        if self.active:
            _collective(dist.all_reduce, tensor, op=dist.ReduceOp.SUM)

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true if it is true in any process (host side)."""
        if not self.active:
            return flags
        values = torch.tensor([float(f) for f in flags])
        _collective(dist.all_reduce, values, op=dist.ReduceOp.MAX, group=self.control)
        return tuple(bool(v) for v in values.tolist())

    def gather(self, items: list) -> list:
        """Every process's ``items``, concatenated in rank order (host side)."""
        if not self.active:
            return list(items)
        gathered: list = [None] * self.world_size
        _collective(dist.all_gather_object, gathered, items, group=self.control)
        return [item for part in gathered for item in part]

    def barrier(self) -> None:
        if self.active:
            _collective(dist.barrier, group=self.control)

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend or "none"}


def _collective(function, *args, **kwargs) -> None:
    try:
        function(*args, **kwargs)
    except (RuntimeError, dist.DistError) as error:
        text = str(error).strip()
        # the first line, without gloo's "[source/file.cc:123]" prefix
        first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]) if text else type(error).__name__
        raise DistributedError(f"a collective failed, so another process of this run has stopped or hangs "
                               f"({first[:200]})") from None


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def environment_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun): who speaks for the run."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


@contextmanager
def process_group(device: str) -> Iterator[ProcessGroup]:
    """The process group of a torchrun launch (initialized here, destroyed on leaving), or one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    if world_size <= 1:
        yield ProcessGroup()
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    created = not dist.is_initialized()
    if created:
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        # Imported after the group exists, torch._dynamo (which the first optimizer imports) keeps ten
        # references to it that nothing releases, so destroy_process_group() cannot stop its threads
        # (below); imported first, it keeps none. Measured with torch 2.14.1.
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    control = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
    group = ProcessGroup(rank, world_size, local_rank, backend, control)
    del control
    try:
        yield group
    finally:
        # destroy_process_group() only forgets the groups: gloo's worker and transport threads stop when
        # the last reference to a group goes. Left running into interpreter shutdown, they can abort the
        # process after its files are written ("terminate called without an active exception", exit -6;
        # seen once in CI). So drop ours and collect the cycles that may hold one, while the interpreter
        # is whole; tests/test_distributed.py checks that no gloo thread outlives the run.
        group.control = None
        if created:
            dist.destroy_process_group()
        gc.collect()


class StopRequests:
    """While active, SIGINT and SIGTERM set ``requested`` instead of stopping the process, so that the
    processes can agree to stop after the same iteration. A no-op off the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
