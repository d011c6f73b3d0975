"""The benchmark cases, defined once: what ``tests/benchmarks`` times, what the work gate counts (``gate.py``) and
what ``metagrad counters`` counts for a plug-in author's own algorithm.

A case is named as pytest names its benchmark (``test_meta_gradient[synthetic-maml-4]``), so a saved timed run, the
committed counter file and the history all speak of the same thing. ``prepare`` builds its work: ``run`` (timed),
``count`` (the deterministic counters), ``reference`` (one gradient of the same network on the same batch: the unit the
time ratio is measured in) and ``info`` (what the case is, for the saved run's ``extra_info``).

- ``test_meta_gradient[PROBLEM-ALGORITHM-STEPS]``: one task's meta-gradient of every registered algorithm at 1, 4 and
  16 inner steps (5 CG steps where the algorithm solves a system), on ``synthetic`` (random 28x28 pixels, 5-way 5-shot,
  16 filters, no data needed) and ``omniglot`` (5-way 1-shot, 32 filters); the profiler's problem and runner
  (``bench/harnesses/profile.py``), so a benchmark and a profile row measure the same work.
- ``test_hessian_vector_product_against_gradient[PROBLEM-OP]``: a gradient, and a Hessian-vector product through it.
- ``test_tasks_per_second[VARIANT]``: one task of an Omniglot 5-way 1-shot preset (``omniglot-5w1s-VARIANT``).
- ``test_meta_batch_tasks_per_second[VARIANT-ENGINE]``: one training iteration of 8 such tasks per engine, with its
  device operations (``bench/measure/operations.py``).
- ``test_task_sampler[SETTING]`` and ``test_device_sampler[SETTING]``: one episode from the host sampler, a meta-batch
  of 32 from the device sampler.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

INNER_STEPS = (1, 4, 16)
PROBLEMS = ("synthetic", "omniglot")
REFERENCE_OPERATIONS = ("gradient", "hvp")
META_BATCH = 8
DEVICE_SAMPLER_TASKS = 32
CG_STEPS = 5
SAMPLER_SETTINGS = {  # setting -> (dataset, its folder under the data root, ways, shots, queries)
    "omniglot-5w1s": ("omniglot", "omniglot-py", 5, 1, 15),
    "omniglot-20w5s": ("omniglot", "omniglot-py", 20, 5, 15),
    "mini-imagenet-5w1s": ("mini-imagenet", "mini-imagenet", 5, 1, 15),
}


@dataclass(frozen=True)
class Case:
    """One benchmark: its test function, its parameters (pytest's id, joined by ``-``), the data folder it needs
    under the data root (None: none) and the registered algorithm it measures (None: none in particular)."""

    test: str
    params: tuple[str | int, ...]
    data: str | None = None
    algorithm: str | None = None
    not_gated: str = ""  # why its counters stay out of the work gate, where they depend on one CPU's rounding

    @property
    def id(self) -> str:
        return "-".join(str(part) for part in self.params)

    @property
    def name(self) -> str:
        return f"{self.test}[{self.id}]"


@dataclass
class Prepared:
    run: Callable[[], Any]
    count: Callable[[], dict[str, Any]]
    reference: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)
    rounds: int = 10


def meta_gradient_cases(algorithms: tuple[str, ...] | None = None,
                        problems: tuple[str, ...] = PROBLEMS) -> list[Case]:
    """Every registered algorithm's (or those named) meta-gradient cases."""
    from metagrad.algorithms.registry import algorithm_names

    names = algorithm_names() if algorithms is None else algorithms
    return [Case("test_meta_gradient", (problem, name, steps), _data_of(problem), name)
            for problem in problems for name in names for steps in INNER_STEPS]


def reference_cases() -> list[Case]:
    return [Case("test_hessian_vector_product_against_gradient", (problem, operation), _data_of(problem))
            for problem in PROBLEMS for operation in REFERENCE_OPERATIONS]


# iMAML-HF's Newton-CG takes the first step of its Armijo line search that the numbers accept: where a candidate is
# near the line, two CPUs accept different ones, and its gradients, products, FLOPs and operations follow.
LINE_SEARCH = "Newton-CG's line search stops where one CPU's rounding says (its counts differed between two CPUs)"


def _variants() -> tuple[str, ...]:
    """The Omniglot 5-way 1-shot presets benchmarked: the paper's rows (Tables 2 and 3)."""
    from metagrad.bench.training.presets import ALGORITHM_LABELS

    return tuple(ALGORITHM_LABELS)


def _preset_case(test: str, variant: str, *params: str) -> Case:
    from metagrad.bench.training.presets import preset, variant_algorithm

    newton = preset(f"omniglot-5w1s-{variant}")["hyperparameters"].get("inner_solver") == "newton-cg"
    return Case(test, (variant, *params), "omniglot-py", variant_algorithm(variant), LINE_SEARCH if newton else "")


def tasks_per_second_cases() -> list[Case]:
    return [_preset_case("test_tasks_per_second", variant) for variant in _variants()]


def meta_batch_cases() -> list[Case]:
    from metagrad.bench.training.engines import ENGINES

    return [_preset_case("test_meta_batch_tasks_per_second", variant, engine) for variant in _variants()
            for engine in ENGINES]


def sampler_cases() -> list[Case]:
    return [Case(test, (setting,), SAMPLER_SETTINGS[setting][1]) for test in ("test_task_sampler", "test_device_sampler")
            for setting in SAMPLER_SETTINGS]


def all_cases(algorithms: tuple[str, ...] | None = None) -> list[Case]:
    """metagrad's own cases (its own algorithms'); with ``algorithms``, those algorithms' meta-gradient cases alone
    (a plug-in author's: the counters their own file gates)."""
    if algorithms is not None:
        return meta_gradient_cases(algorithms)
    from metagrad.algorithms.registry import ENTRIES, algorithm_names

    own = tuple(name for name in algorithm_names() if ENTRIES[name].origin == "metagrad")
    return (meta_gradient_cases(own) + reference_cases() + tasks_per_second_cases() + meta_batch_cases()
            + sampler_cases())


def _data_of(problem: str) -> str | None:
    return "omniglot-py" if problem == "omniglot" else None


def prepare(case: Case, device: torch.device, data_root: str | None = None) -> Prepared:
    """The case's work on ``device``, its data read from ``data_root``."""
    builders = {"test_meta_gradient": _meta_gradient, "test_hessian_vector_product_against_gradient": _meta_gradient,
                "test_tasks_per_second": _tasks_per_second, "test_meta_batch_tasks_per_second": _meta_batch,
                "test_task_sampler": _task_sampler, "test_device_sampler": _device_sampler}
    return builders[case.test](case, torch.device(device), data_root)


@lru_cache(maxsize=4)
def _problem(problem: str, device: str, data_root: str | None):
    from metagrad.bench.harnesses.profile import ProfileConfig, build_problem

    if problem == "synthetic":
        config = ProfileConfig(dataset="random-images", ways=5, shots=5, queries=5, filters=16, device=device)
    else:
        config = ProfileConfig(dataset="omniglot", ways=5, shots=1, queries=15, filters=32, data_root=data_root,
                               device=device)
    return config, build_problem(config)


def _meta_gradient(case: Case, device: torch.device, data_root: str | None) -> Prepared:
    from metagrad.bench.harnesses.profile import Measure, runner, solves_a_system
    from metagrad.bench.measure.memory import count_work

    problem = case.params[0]
    config, built = _problem(problem, str(device), data_root)
    if case.test == "test_meta_gradient":
        name, steps = case.params[1], int(case.params[2])
        measure = Measure(name, steps, CG_STEPS if solves_a_system(name) else 0)
    else:
        measure = Measure(case.params[1])
    run = runner(config, built, measure)
    info = {"problem": problem, "algorithm": measure.algorithm, "inner_steps": measure.inner_steps,
            "cg_steps": measure.cg_steps}
    return Prepared(run, lambda: count_work(run), runner(config, built, Measure("gradient")), info)


def _support_gradient(model, theta: torch.Tensor, batch) -> Callable[[], Any]:
    """One gradient of the network's loss on ``batch``: the reference operation of the time ratio."""
    def gradient():
        phi = theta.detach().requires_grad_(True)
        return torch.autograd.grad(model.loss(phi, batch), phi)

    return gradient


@lru_cache(maxsize=2)
def _omniglot_tasks(data_root: str | None) -> tuple:
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.data.tasks import EpisodeSpec

    tasks = task_source("omniglot", "train", EpisodeSpec(5, 1, 15), data_root).tasks
    return tuple(tasks.fixed_pool(META_BATCH, seed=0)), tasks.sample_batch(torch.Generator().manual_seed(0), META_BATCH)


def _preset_model(variant: str, device: torch.device):
    from metagrad.algorithms import FunctionalModel, cross_entropy_loss, make_algorithm
    from metagrad.bench.nets.convnet import network
    from metagrad.bench.training.presets import preset

    settings = preset(f"omniglot-5w1s-{variant}")
    algorithm = make_algorithm(settings["algorithm"], **settings["hyperparameters"])
    torch.manual_seed(0)
    model = FunctionalModel(network("omniglot", 5).to(device), cross_entropy_loss)
    return algorithm, model


def _tasks_per_second(case: Case, device: torch.device, data_root: str | None) -> Prepared:
    from metagrad.bench.measure.memory import count_work

    variant = case.params[0]
    algorithm, model = _preset_model(variant, device)
    theta = model.flat_parameters()
    pool = [task.to(device) for task in _omniglot_tasks(data_root)[0]]
    position = iter(range(10**9))

    def one_task():
        return algorithm.meta_gradient(model, theta, pool[next(position) % len(pool)])

    def counted():
        record = algorithm.meta_gradient(model, theta, pool[0]).record
        return {"grad_evals": record.grad_evals, "hvp_evals": record.hvp_evals}

    return Prepared(one_task, lambda: count_work(counted), _support_gradient(model, theta, pool[0].support),
                    {"variant": variant}, rounds=8)


def _meta_batch(case: Case, device: torch.device, data_root: str | None) -> Prepared:
    from torch.utils.flop_counter import FlopCounterMode

    from metagrad.bench.measure.operations import count_operations
    from metagrad.bench.training.steps import Window, training_step

    variant, engine = case.params
    algorithm, model = _preset_model(variant, device)
    theta = model.flat_parameters().clone()
    reference = _support_gradient(model, theta, _omniglot_tasks(data_root)[0][0].to(device).support)
    window = Window(theta.device)
    step = training_step(engine, algorithm, model, theta, torch.optim.Adam([theta], lr=1e-3), window)
    batch = _omniglot_tasks(data_root)[1].to(device)

    def one_iteration():
        step(batch)

    def count() -> dict[str, Any]:
        work_before = window.work.clone()
        with FlopCounterMode(display=False) as flops:
            one_iteration()
        grad_evals, hvp_evals = (window.work - work_before).tolist()
        operations = count_operations(one_iteration).total  # a second iteration: Adam's state exists from the first
        return {"grad_evals": grad_evals, "hvp_evals": hvp_evals, "flops": flops.get_total_flops(),
                "operations": operations}

    return Prepared(one_iteration, count, reference, {"tasks": META_BATCH, "variant": variant, "engine": engine},
                    rounds=3)


def _sampler_setting(setting: str, data_root: str | None):
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.data.tasks import EpisodeSpec

    dataset, _, ways, shots, queries = SAMPLER_SETTINGS[setting]
    return dataset, EpisodeSpec(ways, shots, queries), task_source(dataset, "train", EpisodeSpec(ways, shots, queries),
                                                                    data_root).tasks


def _sampler_reference(dataset: str, ways: int, task, device: torch.device) -> Callable[[], Any]:
    from metagrad.algorithms import FunctionalModel, cross_entropy_loss
    from metagrad.bench.nets.convnet import network

    torch.manual_seed(0)
    model = FunctionalModel(network(dataset, ways).to(device), cross_entropy_loss)
    return _support_gradient(model, model.flat_parameters(), task.to(device).support)


def _task_sampler(case: Case, device: torch.device, data_root: str | None) -> Prepared:
    setting = case.params[0]
    dataset, spec, tasks = _sampler_setting(setting, data_root)
    generator = torch.Generator().manual_seed(0)

    def sample():
        return tasks.sample(generator)

    def count() -> dict[str, Any]:
        task = tasks.sample(torch.Generator().manual_seed(0))
        return {"images": len(task.support.y) + len(task.query.y)}

    reference = _sampler_reference(dataset, spec.ways, tasks.sample(torch.Generator().manual_seed(0)), device)
    return Prepared(sample, count, reference, {"setting": setting}, rounds=50)


def _device_sampler(case: Case, device: torch.device, data_root: str | None) -> Prepared:
    from metagrad.bench.data.device_tasks import DeviceTasks

    setting = case.params[0]
    dataset, spec, tasks = _sampler_setting(setting, data_root)
    sampler = DeviceTasks(tasks, device, torch.float32, seed=0, count=DEVICE_SAMPLER_TASKS)

    def count() -> dict[str, Any]:
        batch = DeviceTasks(tasks, device, torch.float32, seed=0, count=DEVICE_SAMPLER_TASKS).next()
        return {"images": batch.support.y.shape[1] + batch.query.y.shape[1]}

    reference = _sampler_reference(dataset, spec.ways, tasks.sample(torch.Generator().manual_seed(0)), device)
    return Prepared(sampler.next, count, reference, {"tasks": DEVICE_SAMPLER_TASKS, "setting": setting}, rounds=20)
