"""Ctrl-C and SIGTERM in one process: held while an update is half done, and turned into KeyboardInterrupt so that
the run writes its checkpoint before it ends. (Several processes agree on stopping instead:
``bench.training.distributed.StopRequests``.)"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from metagrad.bench.training.distributed import StopRequests

STOP_SIGNALS = StopRequests.SIGNALS  # Ctrl-C and SIGTERM, in one process or several


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then raise KeyboardInterrupt: no checkpoint sees half
    an update."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda n, frame: received.append(n)) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or torchrun's stop) raises KeyboardInterrupt, as Ctrl-C does, so that the run
    writes its checkpoint before it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
