"""The two engines that compute a meta-batch's meta-gradients, the two samplers that draw it, and which
of each runs where by default."""
from __future__ import annotations

from typing import Any

from algorithms.imaml import STACKED_INNER_SOLVERS

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
    """Reptile, both forms, MAML, and iMAML with gradient descent or Newton-CG inside: the algorithms whose whole
    meta-gradient runs on the stacked network. On this project's 2-core CPUs (``metagrad throughput``, Omniglot
    5-way 1-shot presets) the eager batched engine ran Reptile and iMAML-GD 1.05 to 2.15 times as fast as the
    per-task one (reports/throughput-cpu*/), first-order MAML 0.59 to 0.84 times (a tie in alternating runs
    since). MAML ran 0.66 to 0.82 times as fast while its steps were under ``vmap``; on the stacked network (its
    Hessian-vector products forward over reverse) 1.07, 1.26 and 1.14 times in three alternating runs on the
    Intel Xeon. iMAML-HF ran 0.41 to 0.60 times as fast while its Newton iterations were under ``vmap``; on the
    stacked network, its line search ending once every task had its step, 1.24, 0.98, 1.12, 1.44 and 1.58 times
    in five alternating runs on the Intel Xeon, 2 threads (reports/notes/engines.md); with one thread each, two
    30-minute training runs at once tied (0.95: 189 iterations against 199). Its line search now evaluates each
    candidate for the tasks still searching only: 1.07, 1.14 and 0.83 times in three alternating runs with one
    thread, 0.85 in a traced run (reports/throughput-cpu-intel-xeon-hf-trace/)."""
    return (algorithm.name in ("reptile", "maml")
            or (algorithm.name == "imaml" and algorithm.inner_solver in STACKED_INNER_SOLVERS))


def default_sampler(device: str) -> str:
    """The device sampler on CUDA, where the host's draw of a meta-batch (5.0 ms for 32 Omniglot 5-way 1-shot
    tasks on this project's 2-core CPU: 156 us a task in tests/benchmarks/test_task_sampler.py) would be as
    long as the GPU's whole iteration; the host sampler on the CPU, where the device sampler is no faster
    (5.6 ms for the same 32 tasks, 1.4 to 4 times the host's time for larger tasks) and the host stream is
    the one every earlier run used."""
    return "device" if str(device).startswith("cuda") else "host"
