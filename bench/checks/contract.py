"""What the suite checks of every algorithm, runnable on one: ``metagrad algorithms --check NAME``.

A plug-in author runs it on their own class, as metagrad's tests run it on every registered algorithm. In float64,
on a tiny ConvNet with BatchNorm in training mode (batch statistics), a few synthetic 3-way tasks:

- ``meta_gradient`` returns a ``MetaGradient`` whose gradient is laid out as theta;
- ``adapt`` reaches the parameters ``meta_gradient`` adapted to (``metagrad eval`` adapts with ``adapt``: an inner
  loop written only in ``meta_gradient`` trains one algorithm and evaluates another);
- the batched engine (the class's own, or the task-by-task one) equals the per-task engine: meta-gradients, adapted
  parameters and work counts;
- the meta-gradient is the gradient of ``meta_objective`` (central differences along random directions, under the
  class's ``exact_when`` hyperparameters).

Hyperparameters being dataclass fields is checked when the class registers. Each failure is one line naming the
method at fault and what to write.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metagrad.algorithms import FunctionalModel, TaskBatch, cross_entropy_loss, make_algorithm, registry
from metagrad.algorithms.functional import Batch, Task
from metagrad.algorithms.meta_parameters import group_slices, initial_meta_parameters, network_part
from metagrad.algorithms.registry import (
    batched_adapt,
    batched_engine_of,
    batched_meta_gradient,
    check_returned,
    hyperparameter_defaults,
)
from metagrad.bench.nets.convnet import ConvNet
from metagrad.errors import PluginError

TASKS = 4
DIRECTIONS = 8
GROUP_DIRECTIONS = 4  # more, within each group of an algorithm that learns several
# the tiny problem's inner loop, for the algorithms that take these: a step below 2 / the largest curvature
TINY_INNER_LOOP = {"inner_lr": 0.02, "inner_steps": 3}
SAME = 1e-10  # relative difference between two engines' float64 results
FINITE_DIFFERENCE = 1e-6  # relative difference to central differences with step 1e-5
WORK_COUNTS = ("grad_evals", "hvp_evals", "loss_evals", "cg_iterations", "negative_curvature",
               "inner_negative_curvature")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``passed`` True, False, or None where it could not be made (``message`` says why)."""

    name: str
    passed: bool | None
    message: str


def tiny_problem(tasks: int = TASKS, seed: int = 0) -> tuple[FunctionalModel, Tensor, list[Task]]:
    """(model, theta, tasks) in float64: a two-block ConvNet with BatchNorm (tanh, so that the inner problems have one
    minimizer), 3-way tasks of 6x6 images whose class means differ, 4 support and 3 query images per class."""
    torch.manual_seed(seed)
    net = ConvNet(num_classes=3, in_channels=1, filters=2, blocks=2, image_size=6, pooling="stride",
                  activation="tanh").double()
    model = FunctionalModel(net, cross_entropy_loss)
    generator = torch.Generator().manual_seed(seed + 1)

    def batch(per_class: int) -> Batch:
        labels = torch.arange(3).repeat_interleave(per_class)
        images = torch.randn(len(labels), 1, 6, 6, generator=generator, dtype=torch.float64)
        return Batch(images + 0.5 * labels.view(-1, 1, 1, 1).double(), labels)

    return model, model.flat_parameters(), [Task(batch(4), batch(3)) for _ in range(tasks)]


def relative_difference(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(torch.finfo(b.dtype).tiny)).item()


def _raised(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _returns(cls: str, algorithm: Any, model: FunctionalModel, theta: Tensor, task: Task) -> Check:
    try:
        result = algorithm.meta_gradient(model, theta, task)
        check_returned(algorithm, "meta_gradient", result, theta)
        if not hasattr(result, "record"):
            raise PluginError(f"{cls}.meta_gradient returned no record: return metagrad.MetaGradient(gradient, "
                              "MetaGradientRecord(...), adapted)")
        check_returned(algorithm, "adapt", algorithm.adapt(model, theta, task.support), network_part(model, theta))
    except Exception as error:  # a plug-in's own failure: reported, not raised
        return Check("returns", False, str(error) if isinstance(error, PluginError) else
                     f"{cls}.meta_gradient or adapt raised {_raised(error)} on a float64 task")
    return Check("returns", True, "meta_gradient and adapt return tensors laid out as theta and the network")


def _adapt_matches(cls: str, algorithm: Any, model: FunctionalModel, theta: Tensor, task: Task) -> Check:
    adapted = algorithm.meta_gradient(model, theta, task).adapted
    if adapted is None:
        return Check("adapt", None, f"{cls}.meta_gradient returns no adapted parameters (MetaGradient's third "
                     "field), so adapt cannot be compared with the inner loop it trained with")
    difference = relative_difference(algorithm.adapt(model, theta, task.support), adapted)
    if difference > SAME:
        return Check("adapt", False, f"{cls}.adapt reaches other parameters than {cls}.meta_gradient adapted to "
                     f"(relative difference {difference:.1e}): metagrad eval adapts with adapt, so write the inner "
                     "loop once and call it from both (or override adapt with the same loop)")
    return Check("adapt", True, "adapt reaches the parameters meta_gradient adapted to")


def _engines_agree(cls: str, algorithm: Any, model: FunctionalModel, theta: Tensor, tasks: list[Task]) -> Check:
    own, why = batched_engine_of(type(algorithm))
    engine = "its own batched engine" if own else "the task-by-task batched engine"
    method = "batched_meta_gradient" if own else "meta_gradient"
    try:
        batch = TaskBatch.stack(tasks)
        result = check_returned(algorithm, "batched_meta_gradient", batched_meta_gradient(algorithm, model, theta,
                                                                                         batch), theta, len(tasks))
        phi = check_returned(algorithm, "batched_adapt", batched_adapt(algorithm, model, theta, batch),
                             network_part(model, theta), len(tasks))
    except Exception as error:
        return Check("engines", False, str(error) if isinstance(error, PluginError) else
                     f"{engine} raised {_raised(error)}")
    for i, task in enumerate(tasks):
        reference = algorithm.meta_gradient(model, theta, task)
        difference = relative_difference(result.gradients[i], reference.gradient)
        if difference > SAME:
            return Check("engines", False, f"{cls}.{method} ({engine}) differs from {cls}.meta_gradient on task {i} "
                         f"(relative difference {difference:.1e}): make it compute the per-task engine's numbers, or "
                         "leave batched_meta_gradient and batched_adapt out (the task-by-task engine is then used)")
        difference = relative_difference(phi[i], algorithm.adapt(model, theta, task.support))
        if difference > SAME:
            return Check("engines", False, f"{cls}.batched_adapt differs from {cls}.adapt on task {i} (relative "
                         f"difference {difference:.1e}): make them one inner loop")
        for name in WORK_COUNTS:
            counted = getattr(reference.record, name, None)
            if name in result.diagnostics and counted is not None and result.diagnostics[name][i].item() != counted:
                return Check("engines", False, f"{cls}.{method} counts {name} = {result.diagnostics[name][i].item()} "
                             f"on task {i}, {cls}.meta_gradient {counted}: count the same work in both")
    note = f" ({why})" if why else ""
    return Check("engines", True, f"{engine} equals the per-task engine on {len(tasks)} tasks{note}")


def difference_directions(model: FunctionalModel, algorithm: Any, theta: Tensor) -> dict[str, Tensor]:
    """Unit directions along which to difference: across the whole vector, and where the algorithm learns groups of
    its own, within each group (the network's and each of the algorithm's), so that a group whose gradient is dropped
    cannot hide behind the others' larger ones."""
    generator = torch.Generator().manual_seed(5)
    found = {"all": torch.randn(DIRECTIONS, theta.numel(), generator=generator, dtype=theta.dtype)}
    slices = group_slices(algorithm, model)
    if slices:
        for name, part in {"network": slice(0, model.num_parameters), **slices}.items():
            within = torch.zeros(GROUP_DIRECTIONS, theta.numel(), dtype=theta.dtype)
            within[:, part] = torch.randn(GROUP_DIRECTIONS, part.stop - part.start, generator=generator,
                                          dtype=theta.dtype)
            found[name] = within
    return {name: rows / rows.norm(dim=1, keepdim=True) for name, rows in found.items()}


def _gradient_of_objective(cls: str, name: str, model: FunctionalModel, task: Task, **hyperparameters: Any) -> Check:
    algorithm_class = registry.ALGORITHMS[name]
    if not hasattr(algorithm_class, "meta_objective"):
        return Check("finite differences", None, f"{cls} declares no meta_objective, so nothing checks its "
                     "meta-gradient's value: add meta_objective(model, theta, task) -> metagrad.MetaObjective (what "
                     "the meta-gradient is the gradient of) and exact_when (the hyperparameters under which it is)")
    known = hyperparameter_defaults(name)
    settings = {**{k: v for k, v in TINY_INNER_LOOP.items() if k in known}, **hyperparameters,
                **getattr(algorithm_class, "exact_when", {})}
    algorithm = make_algorithm(name, **settings)
    theta = initial_meta_parameters(algorithm, model)
    errors = {}
    try:
        gradient = algorithm.meta_gradient(model, theta, task).gradient
        objective = algorithm.meta_objective(model, theta, task)
        for group, directions in difference_directions(model, algorithm, theta).items():
            differences = directional_derivatives(objective.function, objective.point, directions, step=1e-5)
            errors[group] = relative_difference(directions @ gradient, differences)
    except Exception as error:
        return Check("finite differences", False, f"{cls}.meta_objective raised {_raised(error)}")
    words = ", ".join(f"{key}={value}" for key, value in settings.items()) or "its defaults"
    wrong = {group: error for group, error in errors.items() if not error <= FINITE_DIFFERENCE}
    if wrong:
        where = ", ".join(f"{error:.1e} in the group {group}" if group != "all" else f"{error:.1e} across all"
                          for group, error in wrong.items())
        return Check("finite differences", False, f"{cls}.meta_gradient is not the gradient of {cls}.meta_objective "
                     f"(relative error {where}, against central differences with {words}): one of the two computes "
                     "something else")
    within = f"; within {', '.join(group for group in errors if group != 'all')}" if len(errors) > 1 else ""
    return Check("finite differences", True, f"meta_gradient is the gradient of meta_objective to "
                 f"{max(errors.values()):.1e} ({DIRECTIONS} directions{within}; {words})")


def directional_derivatives(f: Callable[[Tensor], float], x: Tensor, directions: Tensor, step: float) -> Tensor:
    """(f(x + h u) - f(x - h u)) / 2h for each row u of ``directions``."""
    x = x.detach()
    return torch.stack([torch.tensor((f(x + step * u) - f(x - step * u)) / (2 * step), dtype=x.dtype)
                        for u in directions])


def check_algorithm(name: str, **hyperparameters: Any) -> list[Check]:
    """Every check of the registered algorithm ``name`` at these hyperparameters (others at their defaults; the
    finite differences under its ``exact_when``), in order; after a failure of what it returns, the others are not
    made. theta is the network's parameters and the algorithm's own meta-parameters, at their start."""
    cls = registry.ALGORITHMS[name].__qualname__
    model, _, tasks = tiny_problem()
    algorithm = make_algorithm(name, **hyperparameters)
    theta = initial_meta_parameters(algorithm, model)
    returns = _returns(cls, algorithm, model, theta, tasks[0])
    if not returns.passed:
        return [returns]
    return [returns, _adapt_matches(cls, algorithm, model, theta, tasks[0]),
            _engines_agree(cls, algorithm, model, theta, tasks),
            _gradient_of_objective(cls, name, model, tasks[0], **hyperparameters)]
