"""The two engines that compute a meta-batch's meta-gradients, the two samplers that draw it, and which
of each runs where by default."""
from __future__ import annotations

ENGINES = ("per-task", "batched")
# host: ImageClassTasks with a torch.Generator (the reference stream); device: bench/device_tasks.py
SAMPLERS = ("host", "device")


def default_engine(device: str) -> str:
    """The engine measured faster on the device: batched on CUDA; per task on the CPU, where the eager batched
    engine was 1.1 to 2.6 times slower for MAML, first-order MAML, iMAML-GD and iMAML-HF on Omniglot 5-way
    1-shot and 1.3 times faster only for Reptile (``metagrad throughput``, reports/throughput-cpu/; compiled,
    it overtakes for MAML and iMAML-GD after minutes of compiling: README)."""
    return "batched" if str(device).startswith("cuda") else "per-task"


def default_sampler(device: str) -> str:
    """The device sampler on CUDA, where the host's draw of a meta-batch (5.0 ms for 32 Omniglot 5-way 1-shot
    tasks on this project's 2-core CPU: 156 us a task in tests/benchmarks/test_task_sampler.py) would be as
    long as the GPU's whole iteration; the host sampler on the CPU, where the device sampler is no faster
    (5.6 ms for the same 32 tasks, 1.4 to 4 times the host's time for larger tasks) and the host stream is
    the one every earlier run used."""
    return "device" if str(device).startswith("cuda") else "host"
