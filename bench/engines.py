"""The two engines that compute a meta-batch's meta-gradients, and which one runs where by default."""
from __future__ import annotations

ENGINES = ("per-task", "batched")


def default_engine(device: str) -> str:
    """The engine measured faster on the device: batched on CUDA; per task on the CPU, where the batched
    engine was 1.1 to 2.3 times slower for MAML, first-order MAML, Reptile and iMAML-HF on Omniglot 5-way 1-shot and
    only 1.16 times faster for iMAML-GD (``metagrad throughput``, reports/throughput-cpu/)."""
    return "batched" if str(device).startswith("cuda") else "per-task"
