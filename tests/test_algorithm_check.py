"""``metagrad algorithms --check NAME``, a plug-in author's own check, on the mistakes a plug-in author makes (issue
41): an inner loop written only in ``meta_gradient`` (training and evaluation then run different algorithms), a
meta-gradient of the wrong length, a batched engine that computes something else; and the boundary check that names
the plug-in when training meets what it returned."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import metagrad.algorithms.registry as registry
from metagrad.algorithms import FirstOrderMAML, algorithm_names
from metagrad.algorithms.protocol import (
    InnerGradientDescentConfig,
    MetaGradient,
    MetaGradientRecord,
    query_loss_and_gradient,
)
from metagrad.bench.checks.contract import check_algorithm
from metagrad.bench.cli import main
from metagrad.errors import PluginError


@dataclass(frozen=True)
class MomentumInMetaGradientOnly(InnerGradientDescentConfig):
    """A momentum inner loop written in meta_gradient alone: adapt is the inherited plain gradient descent."""

    name: ClassVar[str] = "test-momentum"
    label: ClassVar[str] = "momentum (a test's)"
    momentum: float = 0.9

    def meta_gradient(self, model, theta, task) -> MetaGradient:
        phi, velocity = theta.detach(), torch.zeros_like(theta)
        for _ in range(self.inner_steps):
            _, gradient, _ = query_loss_and_gradient(model, phi, task.support)
            velocity = self.momentum * velocity + gradient
            phi = phi - self.inner_lr * velocity
        loss, gradient, accuracy = query_loss_and_gradient(model, phi, task.query)
        return MetaGradient(gradient, MetaGradientRecord(query_loss=loss, query_accuracy=accuracy), phi)


@dataclass(frozen=True)
class WrongLength(FirstOrderMAML):
    name: ClassVar[str] = "test-wrong-length"
    label: ClassVar[str] = "wrong length (a test's)"

    def meta_gradient(self, model, theta, task) -> MetaGradient:
        result = super().meta_gradient(model, theta, task)
        return MetaGradient(result.gradient[:10], result.record, result.adapted)


@dataclass(frozen=True)
class BatchedElsewhere(FirstOrderMAML):
    """A batched engine of its own that scales what the per-task engine returns."""

    name: ClassVar[str] = "test-batched-elsewhere"
    label: ClassVar[str] = "batched elsewhere (a test's)"

    def batched_meta_gradient(self, model, theta, batch):
        result = super().batched_meta_gradient(model, theta, batch)
        return type(result)(2 * result.gradients, result.diagnostics, result.adapted)


@pytest.fixture
def registered(monkeypatch):
    """Register classes for one test alone (the registry as it was afterwards)."""
    monkeypatch.setattr(registry, "ALGORITHMS", dict(registry.ALGORITHMS))
    monkeypatch.setattr(registry, "ENTRIES", dict(registry.ENTRIES))

    def register(cls: type) -> str:
        registry.register(cls, origin="a test")
        return cls.name

    return register


def _checked(capsys, name: str) -> tuple[int, list[str]]:
    code = main(["algorithms", "--check", name])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out.strip().splitlines() + captured.err.strip().splitlines()


def test_an_inner_loop_written_only_in_meta_gradient_fails_the_adapt_check_naming_adapt(registered, capsys):
    name = registered(MomentumInMetaGradientOnly)
    code, lines = _checked(capsys, name)
    assert code == 1
    failed = [line for line in lines if ": FAILED: " in line]
    assert len(failed) == 1 and failed[0].startswith(f"{name}: adapt: FAILED: MomentumInMetaGradientOnly.adapt reaches "
                                                    "other parameters than MomentumInMetaGradientOnly.meta_gradient")
    assert lines[-1] == f"metagrad algorithms: error: {name} fails 1 of its checks (adapt)"


def test_a_meta_gradient_of_the_wrong_length_fails_at_the_boundary_naming_the_class(registered, capsys):
    name = registered(WrongLength)
    code, lines = _checked(capsys, name)
    assert code == 1
    assert lines[0].startswith(f"{name}: returns: FAILED: WrongLength.meta_gradient (from a test) returned a "
                               "torch.float64 tensor of shape (10,)"), lines
    assert "must be a torch.float64 tensor of shape" in lines[0]


def test_a_batched_engine_that_computes_something_else_fails_naming_it(registered, capsys):
    name = registered(BatchedElsewhere)
    code, lines = _checked(capsys, name)
    assert code == 1
    assert any(line.startswith(f"{name}: engines: FAILED: BatchedElsewhere.batched_meta_gradient (its own batched "
                               "engine) differs from BatchedElsewhere.meta_gradient") for line in lines), lines


def test_an_inherited_engine_a_subclass_overrides_is_not_used_and_the_check_says_which_engine_ran(registered, capsys):
    """First-order MAML with its own inner loop: the inherited batched engine would run first-order MAML's; the
    registry gives it the task-by-task engine, and the check passes on that."""

    @dataclass(frozen=True)
    class OwnInnerLoop(FirstOrderMAML):
        name: ClassVar[str] = "test-own-inner-loop"
        label: ClassVar[str] = "own inner loop (a test's)"

        def inner_solution(self, model, theta, support):
            return super().inner_solution(model, theta.detach() * 0.5, support)

    name = registered(OwnInnerLoop)
    code, lines = _checked(capsys, name)
    assert code == 0, lines
    assert any("engines: ok: the task-by-task batched engine" in line and "overrides" in line for line in lines)


@pytest.mark.parametrize("name", algorithm_names())
def test_every_registered_algorithm_passes_its_own_check(name):
    """The command a plug-in author runs, on every registered algorithm (the registry tests make the same checks
    with more configurations): nothing fails, and metagrad's own check everything."""
    checks = check_algorithm(name)
    assert all(check.passed is not False for check in checks), [check.message for check in checks]
    if registry.entries()[name].origin == "metagrad":
        assert all(check.passed for check in checks), [check.message for check in checks]


def test_training_meets_a_wrong_length_meta_gradient_with_one_line_naming_the_class(registered):
    """The trainer's boundary (bench/training/steps.py): a PluginError naming the class and the method, not a shape
    error in the optimizer's update."""
    from metagrad.algorithms import TaskBatch
    from metagrad.algorithms.registry import check_returned
    from metagrad.bench.checks.contract import tiny_problem

    registered(WrongLength)
    algorithm = WrongLength()
    model, theta, tasks = tiny_problem(tasks=2)
    with pytest.raises(PluginError, match=r"WrongLength.meta_gradient \(from a test\) returned a torch.float64 tensor "
                                          r"of shape \(10,\)"):
        check_returned(algorithm, "meta_gradient", algorithm.meta_gradient(model, theta, tasks[0]), theta)
    with pytest.raises(PluginError, match=r"batched_meta_gradient \(from a test\) returned .* shape \(2, 10\)"):
        check_returned(algorithm, "batched_meta_gradient",
                       registry.batched_meta_gradient(algorithm, model, theta, TaskBatch.stack(tasks)), theta, 2)
