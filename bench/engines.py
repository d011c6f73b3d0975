"""The two engines that compute a meta-batch's meta-gradients, the two samplers that draw it, and which
of each runs where by default."""
from __future__ import annotations

from typing import Any

ENGINES = ("per-task", "batched")
# host: ImageClassTasks with a torch.Generator (the reference stream); device: bench/device_tasks.py
SAMPLERS = ("host", "device")


def default_engine(device: str, algorithm: Any = None) -> str:
    """The engine measured faster on the device for the algorithm (a registered algorithm's config; None: the
    device's general choice). On CUDA the batched engine. On the CPU the per-task one, except where the batched
    engine measured faster there (``batched_faster_on_cpu``)."""
    if str(device).startswith("cuda"):
        return "batched"
    return "batched" if algorithm is not None and batched_faster_on_cpu(algorithm) else "per-task"


def batched_faster_on_cpu(algorithm: Any) -> bool:
    """Reptile, both forms, and iMAML with gradient descent inside: every step, or every inner step, first-order,
    so on the stacked network. On this project's 2-core CPU (``metagrad throughput``, Omniglot 5-way 1-shot
    presets) the eager batched engine ran them 1.05 to 1.37 times as fast as the per-task one in two runs
    (reports/throughput-cpu/, reports/throughput-cpu-10-iterations/), and MAML, first-order MAML and iMAML-HF
    0.59 to 0.82 times as fast (compiled, it overtook for MAML too, after minutes of compiling: README)."""
    return algorithm.name == "reptile" or (algorithm.name == "imaml" and algorithm.inner_solver == "gd")


def default_sampler(device: str) -> str:
    """The device sampler on CUDA, where the host's draw of a meta-batch (5.0 ms for 32 Omniglot 5-way 1-shot
    tasks on this project's 2-core CPU: 156 us a task in tests/benchmarks/test_task_sampler.py) would be as
    long as the GPU's whole iteration; the host sampler on the CPU, where the device sampler is no faster
    (5.6 ms for the same 32 tasks, 1.4 to 4 times the host's time for larger tasks) and the host stream is
    the one every earlier run used."""
    return "device" if str(device).startswith("cuda") else "host"
