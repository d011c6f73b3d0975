"""The two engines that compute a meta-batch's meta-gradients, the two samplers that draw it, and which
of each runs where by default."""
from __future__ import annotations

ENGINES = ("per-task", "batched")
# host: ImageClassTasks with a torch.Generator (the reference stream); device: bench/device_tasks.py
SAMPLERS = ("host", "device")


def default_engine(device: str) -> str:
    """The engine measured faster on the device: batched on CUDA; per task on the CPU, where the batched
    engine was 1.1 to 2.3 times slower for MAML, first-order MAML, Reptile and iMAML-HF on Omniglot 5-way 1-shot and
    only 1.16 times faster for iMAML-GD (``metagrad throughput``, reports/throughput-cpu/)."""
    return "batched" if str(device).startswith("cuda") else "per-task"


def default_sampler(device: str) -> str:
    """The device sampler on CUDA, where the host's draw of a meta-batch (5.1 ms for 32 Omniglot 5-way 1-shot
    tasks on this project's 2-core CPU) would be as long as the GPU's whole iteration; the host sampler on
    the CPU, where the device sampler costs about as much (6.1 ms) and the host stream is the one every
    earlier run used."""
    return "device" if str(device).startswith("cuda") else "host"
