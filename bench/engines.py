"""The two engines that compute a meta-batch's meta-gradients, and which one runs where by default."""
from __future__ import annotations

ENGINES = ("per-task", "batched")


def default_engine(device: str) -> str:
    """The engine measured faster on the device: batched on CUDA; per task on the CPU, where ``vmap``'s
    grouped convolutions made MAML and first-order MAML about 3 times slower on Omniglot 5-way 1-shot
    (``metagrad throughput``, reports/throughput-cpu/)."""
    return "batched" if str(device).startswith("cuda") else "per-task"
