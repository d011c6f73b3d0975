"""The two engines that compute a meta-batch's meta-gradients, the two samplers that draw it, and which
of each runs where by default."""
from __future__ import annotations

from typing import Any

from metagrad.algorithms.registry import has_batched_form
from metagrad.bench.data.tasks import EpisodeSpec

ENGINES = ("per-task", "batched")
# host: ImageClassTasks with a torch.Generator (the reference stream); device: bench/data/device_tasks.py
SAMPLERS = ("host", "device")

# What the command line says of each, once for every command that takes them.
ENGINE_HELP = ("per-task (the reference: one task after another) or batched (the meta-batch at once: on the ConvNet's "
               "stacked network, Nesterov's steps under vmap)")
ENGINE_AUTO = ("the one measured faster on the device, algorithm and task size: batched on CUDA; on the CPU batched "
               "for MAML, Reptile, iMAML with GD or Newton-CG and iMAML with a learned lambda where an inner step "
               "takes few images (at most 5 for MAML, Newton-CG and the learned lambda, 20 for Reptile, 25 for GD: "
               "bench/training/engines.py), per-task otherwise")
# training only: an option of the batched engine alone asks for it
ENGINE_AUTO_TRAINING = ENGINE_AUTO + "; batched where --channels-last, --cuda-graph or --compile asks for it"
SAMPLER_HELP = ("who draws the meta-training tasks: host (a torch.Generator, task by task) or device (the split's "
                "images held on the device, each meta-batch a function of the seed and the iteration: no host work, "
                "drawn inside a CUDA graph); the two give different task streams")
SAMPLER_AUTO = "device on CUDA, host on the CPU"
CUDA_GRAPH_HELP = "batched engine on CUDA: capture the whole iteration as a CUDA graph once, then replay it"
COMPILE_HELP = ("batched engine: the whole iteration through torch.compile (mode reduce-overhead, fullgraph) instead "
                "of --cuda-graph; compiling takes seconds to minutes")
CHANNELS_LAST_HELP = ("batched engine: the stacked network's activations in channels-last memory (NHWC), the layout of "
                      "cuDNN's tensor-core convolutions, which otherwise transpose to it and back around every "
                      "convolution; the same function")


def default_engine(device: str, algorithm: Any = None, spec: EpisodeSpec | None = None,
                   evaluation: bool = False) -> str:
    """The engine measured faster on the device for the algorithm (a registered algorithm's config; None: the
    device's general choice) on tasks of ``spec`` (None: any size; ``evaluation``: its adaptation at
    evaluation). The per-task engine for an algorithm with no batched engine of its own. On CUDA the batched
    engine. On the CPU the per-task one, except where the batched engine measured faster there: for the algorithms
    with a ``cpu_batched_max_step_images`` (below), on tasks whose inner steps take at most that many support images."""
    if algorithm is not None and not has_batched_form(algorithm.name):  # its batched engine runs it task by task
        return "per-task"
    if str(device).startswith("cuda"):
        return "batched"
    limit = 0 if algorithm is None else getattr(algorithm, "cpu_batched_max_step_images", 0)
    if limit == 0 or (spec is not None and images_per_inner_step(algorithm, spec, evaluation) > limit):
        return "per-task"
    return "batched"


# An algorithm's ``cpu_batched_max_step_images`` (its attribute; 0 where it has none) is the most support images one
# task's inner step may take for the batched engine to be the CPU's default: the largest size at which it measured
# faster than the per-task engine; an algorithm without one (first-order MAML, iMAML with Nesterov's method, whose
# steps run under ``vmap``, Meta-SGD and MAML++'s LSLR, whose per-task engines measured faster at every size, any
# plug-in that has not measured its own) is per task at every size. MAML's is 5, Reptile's 20, iMAML's 25 with
# gradient descent and 5 with Newton-CG, the learned lambda's 5 (1.8 to 2.1 times per task at 5 images, 0.96 to 1.27
# at 20: reports/throughput-cpu-amd-epyc/learned-*). Why there: on small tasks the per-task
# engine's convolutions are too small to keep two cores busy; on larger ones they are not, and the stacked network's
# grouped convolutions cost more than they save. The ratios by task size, on two kinds of 2-core CPU:
# reports/throughput-cpu-task-sizes/, reports/throughput-cpu/ and reports/throughput-cpu-amd-epyc/ (commands.sh).
# How the batched engine came to these ratios, each step measured: reports/notes/engines.md.


def images_per_inner_step(algorithm: Any, spec: EpisodeSpec, evaluation: bool = False) -> int:
    """The support images one inner step of a task of ``spec`` takes: the whole support set, or Reptile's
    minibatch (``Reptile.steps_and_batch``) where it is smaller."""
    support = spec.ways * spec.shots
    batch = algorithm.steps_and_batch(evaluation)[1] if hasattr(algorithm, "steps_and_batch") else 0
    return min(batch, support) if batch else support


def default_sampler(device: str) -> str:
    """The device sampler on CUDA, where the host's draw of a meta-batch (5.0 ms for 32 Omniglot 5-way 1-shot
    tasks on this project's 2-core CPU: 156 us a task in tests/benchmarks/test_task_sampler.py) would be as
    long as the GPU's whole iteration; the host sampler on the CPU, where the device sampler is no faster
    (5.6 ms for the same 32 tasks, 1.4 to 4 times the host's time for larger tasks) and the host stream is
    the one every earlier run used."""
    return "device" if str(device).startswith("cuda") else "host"
