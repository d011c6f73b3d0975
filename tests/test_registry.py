"""The registry is how outside code joins: every registered algorithm, plug-ins included, passes the suite's own
checks of its engines (``python -m pytest tests/test_registry.py`` is the one command a plug-in author runs); an
algorithm with the per-task protocol alone gets a batched engine that runs it over the tasks; a package adds one by
entry point, and a broken one is a one-line warning, not a crash."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import metagrad.algorithms.registry as registry
from metagrad.algorithms import TaskBatch, algorithm_names, make_algorithm
from metagrad.algorithms.meta_parameters import initial_meta_parameters
from metagrad.algorithms.protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, query_loss_and_gradient
from metagrad.bench.checks.contract import difference_directions, tiny_problem
from metagrad.errors import ConfigError
from metagrad.plugins import DISABLE_PLUGINS
from tests.installed_package import install_package
from tests.limits import HANG_S

from .finite_differences import directional_derivatives, relative_error

TASKS = 6
EXACT = ("grad_evals", "hvp_evals", "loss_evals", "cg_iterations", "negative_curvature", "inner_negative_curvature")


def problem():
    """The plug-in check's tiny problem (float64, a ConvNet with BatchNorm), with more tasks."""
    return tiny_problem(TASKS)


def assert_batched_is_per_task(algorithm, model, theta, tasks) -> None:
    result = registry.batched_meta_gradient(algorithm, model, theta, TaskBatch.stack(tasks))
    phi = registry.batched_adapt(algorithm, model, theta, TaskBatch.stack(tasks))
    for i, task in enumerate(tasks):
        reference = algorithm.meta_gradient(model, theta, task)
        assert relative_error(result.gradients[i], reference.gradient) < 1e-10, i
        assert relative_error(phi[i], algorithm.adapt(model, theta, task.support)) < 1e-10, i
        for name in EXACT:
            if name in result.diagnostics:
                assert result.diagnostics[name][i].item() == getattr(reference.record, name), (i, name)
        assert result.diagnostics["query_loss"][i].item() == pytest.approx(reference.record.query_loss, rel=1e-10)


@pytest.mark.parametrize("name", algorithm_names())
def test_every_registered_algorithm_has_a_batched_engine_equal_to_its_per_task_one(name):
    """float64, the tiny ConvNet with BatchNorm in training mode, 6 tasks, the algorithm at its defaults: each
    task's meta-gradient, adapted parameters and work counts, batched against per task (tests/test_batched_engine.py
    adds each built-in algorithm's own configurations, on batches where CG meets negative curvature for some tasks)."""
    model, _, tasks = problem()
    algorithm = make_algorithm(name)
    assert_batched_is_per_task(algorithm, model, initial_meta_parameters(algorithm, model), tasks)


# The tiny problem's inner loop, for the algorithms that take these: a step below 2 / the largest curvature
TINY_INNER_LOOP = {"inner_lr": 0.02, "inner_steps": 3}


@pytest.mark.slow
@pytest.mark.parametrize("name", algorithm_names())
def test_every_registered_algorithm_is_the_gradient_of_what_it_says_it_differentiates(name):
    """float64, the tiny ConvNet with BatchNorm in training mode: the meta-gradient against central differences of
    the algorithm's ``meta_objective`` along 8 random directions, and 4 within each meta-parameter group where the
    algorithm learns its own beside the network's (step sizes, lambda), under its ``exact_when`` hyperparameters."""
    cls = registry.ALGORITHMS[name]
    assert hasattr(cls, "meta_objective") and hasattr(cls, "exact_when"), (
        f"{name} declares no meta_objective and exact_when (algorithms.protocol.MetaGradientAlgorithm): "
        "what its meta-gradient differentiates, which the suite checks by finite differences")
    known = registry.hyperparameter_defaults(name)
    algorithm = make_algorithm(name, **{**{k: v for k, v in TINY_INNER_LOOP.items() if k in known}, **cls.exact_when})
    model, _, tasks = problem()
    theta = initial_meta_parameters(algorithm, model)
    result = algorithm.meta_gradient(model, theta, tasks[0])
    objective = algorithm.meta_objective(model, theta, tasks[0])
    for group, directions in difference_directions(model, algorithm, theta).items():
        fd = directional_derivatives(objective.function, objective.point, directions, step=1e-5)
        assert relative_error(directions @ result.gradient, fd) < 1e-6, group


@dataclass(frozen=True)
class StepFromAdaptation(InnerGradientDescentConfig):
    """The per-task protocol alone, as a plug-in would write it: grad L_test at the adapted parameters."""

    name: ClassVar[str] = "test-per-task-only"
    label: ClassVar[str] = "per-task only (a test's)"

    def meta_gradient(self, model, theta, task) -> MetaGradient:
        phi = self.adapt(model, theta, task.support)
        loss, gradient, accuracy = query_loss_and_gradient(model, phi, task.query)
        record = MetaGradientRecord(inner_loss=model.loss(phi, task.support).item(), query_loss=loss,
                                    query_accuracy=accuracy, grad_evals=self.inner_steps + 1)
        return MetaGradient(gradient, record, phi)


@pytest.fixture
def per_task_only(monkeypatch):
    """The class registered for the test alone (the registry as it was afterwards)."""
    monkeypatch.setattr(registry, "ALGORITHMS", dict(registry.ALGORITHMS))
    monkeypatch.setattr(registry, "ENTRIES", dict(registry.ENTRIES))
    cls = dataclass(frozen=True)(type("PerTaskOnly", (StepFromAdaptation,), {}))  # no batched_meta_gradient
    registry.register(cls, origin="a test")
    return cls


def test_an_algorithm_with_the_per_task_protocol_alone_gets_a_batched_engine_and_runs_per_task(per_task_only):
    from metagrad.bench.data.tasks import EpisodeSpec
    from metagrad.bench.training.config import TrainConfig
    from metagrad.bench.training.engines import default_engine

    name = per_task_only.name
    assert name in algorithm_names() and not registry.has_batched_form(name)
    assert registry.entries()[name].origin == "a test"
    algorithm = make_algorithm(name, inner_steps=2, inner_lr=0.1)
    model, theta, tasks = problem()
    assert_batched_is_per_task(algorithm, model, theta, tasks)
    for device in ("cpu", "cuda"):  # its batched engine is a loop: the reference engine is no slower
        assert default_engine(device, algorithm, EpisodeSpec(5, 1, 15)) == "per-task"
    with pytest.raises(ConfigError, match="no batched engine of its own"):
        TrainConfig(algorithm=name, engine="batched", compile=True)


def test_registering_changes_no_class_and_an_inherited_engine_that_misses_an_override_is_not_the_subclasses():
    """A subclass of first-order MAML with its own inner loop inherits a batched engine that would run first-order
    MAML's: it gets the task-by-task engine, and says why; a subclass that overrides nothing keeps the engine."""
    from metagrad.algorithms import FirstOrderMAML
    from metagrad.algorithms.inner_solvers import gradient_descent
    from metagrad.algorithms.learned_step_sizes import MetaSGD
    from metagrad.algorithms.protocol import proximal_objective

    @dataclass(frozen=True)
    class HalfStepFOMAML(FirstOrderMAML):
        name: ClassVar[str] = "half-step-fomaml"
        label: ClassVar[str] = "first-order MAML, half steps"

        def inner_solution(self, model, theta, support):
            return gradient_descent(proximal_objective(model, support, theta, self.lam), theta, self.inner_steps,
                                    self.inner_lr / 2)

    @dataclass(frozen=True)
    class Renamed(FirstOrderMAML):
        name: ClassVar[str] = "renamed-fomaml"
        label: ClassVar[str] = "first-order MAML, renamed"

    @dataclass(frozen=True)
    class ClippedMetaSGD(MetaSGD):  # Meta-SGD's unrolled steps changed, which its batched engine writes again
        name: ClassVar[str] = "clipped-meta-sgd"
        label: ClassVar[str] = "Meta-SGD, clipped steps"

        def _inner_loop(self, model, theta, support, create_graph):
            return super()._inner_loop(model, theta, support, create_graph).clamp(-1, 1)

    @dataclass(frozen=True)
    class HalvedStepSizes(MetaSGD):  # the step sizes, which both engines read through step_sizes
        name: ClassVar[str] = "halved-meta-sgd"
        label: ClassVar[str] = "Meta-SGD, halved step sizes"

        def step_sizes(self, model, values):
            return [alpha / 2 for alpha in super().step_sizes(model, values)]

    assert not registry.batched_engine_of(ClippedMetaSGD)[0]
    assert registry.batched_engine_of(HalvedStepSizes) == (True, "")
    halved = HalvedStepSizes(inner_steps=2, inner_lr=0.1)
    model, theta, tasks = problem()
    assert_batched_is_per_task(halved, model, initial_meta_parameters(halved, model), tasks)
    before = dict(vars(HalfStepFOMAML))
    batched, note = registry.batched_engine_of(HalfStepFOMAML)
    assert not batched and "HalfStepFOMAML.inner_solution overrides" in note and "FirstOrderMAML" in note
    assert registry.batched_engine_of(Renamed) == (True, "")
    assert dict(vars(HalfStepFOMAML)) == before
    algorithm = HalfStepFOMAML(inner_steps=2, inner_lr=0.1)
    model, theta, tasks = problem()
    assert_batched_is_per_task(algorithm, model, theta, tasks)
    # the inherited engine would have computed first-order MAML's, which differs
    inherited = algorithm.batched_meta_gradient(model, theta, TaskBatch.stack(tasks)).gradients[0]
    assert relative_error(inherited, algorithm.meta_gradient(model, theta, tasks[0]).gradient) > 1e-3


@pytest.mark.parametrize("attributes, message", [
    ({"momentum": 0.5, "__annotations__": {"momentum": "float"}}, "momentum is not a hyperparameter: decorate"),
    ({"name": "two words"}, "must be one word"),
    ({"label": ""}, "label must be a non-empty string"),
    ({"order": "first"}, "order must be an int"),
    ({"color": 3}, "color must be a matplotlib colour string"),
    ({"exact_when": ["lam"]}, "exact_when must be a dict"),
    ({"meta_objective": 3}, "meta_objective must be a method"),
])
def test_a_class_that_declares_a_part_wrongly_is_refused_with_what_to_write(attributes, message):
    """As a plug-in author errs: a subclass without its own @dataclass (its hyperparameter a class constant), parts of
    the wrong kind; each one message naming the part."""
    cls = type("Wrong", (StepFromAdaptation,), {"name": "wrong", **attributes})
    with pytest.raises(ConfigError, match=message):
        registry.register(cls)
    assert "wrong" not in registry.ALGORITHMS and "two words" not in registry.ALGORITHMS


def test_a_class_without_the_protocol_or_with_a_taken_name_is_refused():
    with pytest.raises(ConfigError, match="lacks label, meta_gradient, adapt"):
        registry.register(type("Nameless", (), {"name": "x"}))
    taken = type("Impostor", (StepFromAdaptation,), {"name": "maml"})
    with pytest.raises(ConfigError, match="'maml' is taken by metagrad"):
        registry.register(taken)


PLUGIN = '''
from dataclasses import dataclass, fields
from typing import ClassVar

from metagrad.algorithms.protocol import InnerGradientDescentConfig, MetaGradient, MetaGradientRecord, query_loss_and_gradient


@dataclass(frozen=True)
class Plugged(InnerGradientDescentConfig):
    name: ClassVar[str] = "plugged"
    label: ClassVar[str] = "a plugged-in algorithm"

    def meta_gradient(self, model, theta, task):
        phi = self.adapt(model, theta, task.support)
        loss, gradient, accuracy = query_loss_and_gradient(model, phi, task.query)
        return MetaGradient(gradient, MetaGradientRecord(query_loss=loss, query_accuracy=accuracy), phi)
'''


@pytest.mark.slow
def test_an_installed_package_adds_an_algorithm_by_entry_point_and_a_broken_one_is_one_line(tmp_path, small_data_root):
    """A package on the path with a ``metagrad.algorithms`` entry point (here a dist-info written by hand, as pip
    writes one) shows in ``metagrad algorithms`` with its origin and engines; an entry whose module is missing is
    one line on stderr naming it, and every command still runs."""
    environment = install_package(tmp_path, "plugged-package", "plugged_module", PLUGIN, "metagrad.algorithms",
                                  {"plugged": "plugged_module:Plugged", "broken": "no_such_module:Broken"})
    done = subprocess.run([sys.executable, "-m", "metagrad", "algorithms"], capture_output=True, text=True,
                          timeout=HANG_S, env=environment)
    assert done.returncode == 0, done.stderr
    plugged = next(line for line in done.stdout.splitlines() if line.startswith("plugged "))
    assert "a plugged-in algorithm" in plugged and "plugged-package (plugged_module:Plugged)" in plugged
    assert plugged.endswith("per-task, batched (task by task)")
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "metagrad: warning: the plug-in algorithm broken = no_such_module:Broken was not loaded (ModuleNotFoundError")
    shown = subprocess.run([sys.executable, "-m", "metagrad", "train", "--help"], capture_output=True, text=True,
                           timeout=HANG_S, env=environment)
    assert shown.returncode == 0 and "plugged" in shown.stdout.split("--algorithm", 1)[1].split("\n")[0]
    root = small_data_root  # and it trains, with either engine, as a user would run it
    for engine in ("per-task", "batched"):
        trained = subprocess.run(
            [sys.executable, "-m", "metagrad", "train", "--out", str(tmp_path / engine), "--dataset", "omniglot",
             "--algorithm", "plugged", "--ways", "5", "--shots", "1", "--queries", "2", "--filters", "4",
             "--meta-batch", "2", "--iterations", "2", "--validate-every", "2", "--validation-tasks", "2",
             "--engine", engine, "--data-root", str(root), "--threads", "1", "--no-progress"],
            capture_output=True, text=True, timeout=HANG_S, env=environment)
        assert trained.returncode == 0, trained.stderr
    a, b = (torch.load(tmp_path / engine / "checkpoint.pt")["theta"] for engine in ("per-task", "batched"))
    assert relative_error(a, b) < 1e-5  # float32: the same tasks and steps, summed in another order


# Where algorithm names may be written out, and why; anywhere else a harness would leave out an algorithm it was not
# written for, so it must take them from the registry (names, labels, colours, hyperparameters).
NAMES_MAY_APPEAR = {
    "algorithms/": "the algorithms themselves, each naming itself",
    "bench/training/presets.py": "the presets: the paper's settings of each algorithm",
    "bench/training/config.py": "metagrad train's default algorithm",
    "bench/reporting/paper.py": "the paper's published numbers, by row",
    "bench/cli/rerun.py": "the commands that made the committed results",
    "bench/harnesses/complexity.py": "Table 1: the paper's methods and their complexity bounds",
    "bench/harnesses/peers.py": "other libraries' implementations of two named algorithms, beside metagrad's",
    "bench/diagnostics/": "studies of the built-in algorithms' engines",
}


def test_no_list_of_algorithm_names_outside_the_registry_and_the_presets():
    import ast
    from pathlib import Path

    from metagrad.bench.training.presets import ALGORITHM_LABELS, EXTRA_VARIANTS

    names = set(algorithm_names()) | set(ALGORITHM_LABELS) | set(EXTRA_VARIANTS)
    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted([*root.glob("bench/**/*.py"), *root.glob("algorithms/**/*.py")]):
        relative = path.relative_to(root).as_posix()
        if any(relative.startswith(place) for place in NAMES_MAY_APPEAR):
            continue
        found += [f"{relative}:{node.lineno} {node.value!r}" for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.Constant) and node.value in names]
    assert not found, "algorithm names written out (take them from metagrad.algorithms.registry):\n" + "\n".join(found)


@pytest.mark.slow
def test_without_plug_ins_nothing_mentions_them():
    """METAGRAD_DISABLE_PLUGIN_AUTOLOAD (as pytest's PYTEST_DISABLE_PLUGIN_AUTOLOAD) is metagrad without the packages
    installed beside it: the built-in algorithms alone, in the list and in every command's choices."""
    environment = {**os.environ, DISABLE_PLUGINS: "1"}
    plugins = [name for name, entry in registry.entries().items() if entry.origin != "metagrad"]
    listed = subprocess.run([sys.executable, "-m", "metagrad", "algorithms"], capture_output=True, text=True,
                            timeout=HANG_S, env=environment)
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert listed.returncode == 0 and names == ["maml", "fomaml", "reptile", "imaml", "meta-sgd", "maml-lslr", "imaml-lambda"]
    for command in ("train", "profile", "exact-solve"):
        shown = subprocess.run([sys.executable, "-m", "metagrad", command, "--help"], capture_output=True, text=True,
                               timeout=HANG_S, env=environment)
        assert shown.returncode == 0 and not [name for name in plugins if name in shown.stdout], command
