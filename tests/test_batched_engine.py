"""The batched engine against the per-task reference, task by task, in float64 with BatchNorm.

A batched result counts only where it equals the reference engine's: the meta-gradient of every task
of a meta-batch to 1e-10 relative, and every diagnostic (losses, accuracy, work counts, CG
iterations, residual, curvature flags) to the same precision or exactly.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from metagrad.algorithms import Batch, FunctionalModel, TaskBatch, batched, conjugate_gradient, cross_entropy_loss, make_algorithm
from metagrad.algorithms.conjugate_gradient import masked_conjugate_gradient
from metagrad.algorithms.meta_parameters import groups_of
from metagrad.bench.nets.convnet import ConvNet

from .conftest import classification_task, tiny_convnet, tiny_mlp
from .finite_differences import relative_error

TASKS = 6
# Small lambdas on the tiny nets make I + H/lambda indefinite for some tasks and not others (checked
# in test_the_batch_mixes_curvature below, so the masks are exercised both ways).
CONFIGS = {
    "maml": ("maml", {"inner_steps": 3, "inner_lr": 0.1}),
    "maml-proximal": ("maml", {"inner_steps": 3, "inner_lr": 0.02, "lam": 10.0}),
    "maml-truncated": ("maml", {"inner_steps": 4, "inner_lr": 0.02, "lam": 10.0, "backprop_steps": 2}),
    "fomaml": ("fomaml", {"inner_steps": 3, "inner_lr": 0.1}),
    "reptile": ("reptile", {"inner_steps": 3, "inner_lr": 0.1, "lam": 1.0}),
    # Nichol et al.'s form: Adam (beta1 = 0) on minibatches, other steps and batches at evaluation
    "reptile-nichol": ("reptile", {"inner_steps": 4, "inner_lr": 0.01, "inner_optimizer": "adam", "inner_batch": 3,
                                   "eval_inner_steps": 6, "eval_inner_batch": 2}),
    "imaml-gd": ("imaml", {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 8}),
    "imaml-gd-tolerance": ("imaml", {"lam": 5.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 8,
                                     "cg_tolerance": 1e-2}),
    "imaml-minres": ("imaml", {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 8, "meta_solver": "minres"}),
    "imaml-damped-cg": ("imaml", {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 8, "damping": 1.0}),
    # L and mu are not known on a network: any 0 < mu <= L gives the same iteration in both engines
    "imaml-nesterov": ("imaml", {"lam": 2.0, "inner_solver": "nesterov", "inner_steps": 5, "smoothness": 10.0,
                                 "strong_convexity": 1.0, "cg_steps": 5}),
    "imaml-gd-0-cg": ("imaml", {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 0}),
    # 5 meta-gradient CG steps, the paper's: at 8 the residual reaches 1e-4 on the MLP, where CG amplifies
    # the two engines' 1e-16 differences in one Hessian-vector product to 1e-9 (phi still agrees to 1e-16)
    "imaml-newton-cg": ("imaml", {"lam": 3.0, "inner_solver": "newton-cg", "inner_steps": 3, "newton_cg_steps": 5,
                                  "cg_steps": 5}),
    # the algorithms that learn more than theta, at learned values that differ parameter by parameter
    # (``learned_start``), so that a value read from the wrong place in either engine shows
    "meta-sgd": ("meta-sgd", {"inner_steps": 3, "inner_lr": 0.1}),
    "meta-sgd-proximal": ("meta-sgd", {"inner_steps": 3, "inner_lr": 0.02, "lam": 10.0}),
    "maml-lslr": ("maml-lslr", {"inner_steps": 3, "inner_lr": 0.1}),
    "imaml-lambda-scalar": ("imaml-lambda", {"lam": 2.0, "inner_steps": 5, "inner_lr": 0.1, "cg_steps": 8}),
    "imaml-lambda-layer": ("imaml-lambda", {"lam": 2.0, "lambda_shape": "layer", "inner_steps": 5, "inner_lr": 0.1,
                                            "cg_steps": 8}),
    "imaml-lambda-parameter": ("imaml-lambda", {"lam": 2.0, "lambda_shape": "parameter", "inner_steps": 5,
                                                "inner_lr": 0.1, "cg_steps": 8}),
    "imaml-lambda-tolerance": ("imaml-lambda", {"lam": 5.0, "lambda_shape": "parameter", "inner_steps": 5,
                                                "inner_lr": 0.1, "cg_steps": 8, "cg_tolerance": 1e-2}),
    "imaml-lambda-0-cg": ("imaml-lambda", {"lam": 2.0, "lambda_shape": "layer", "inner_steps": 5, "inner_lr": 0.1,
                                           "cg_steps": 0}),
}
# Newton-CG's code with fewer unrolled steps, for torch.compile's trace alone (dynamo unrolls every loop: the
# full configuration took 47 s to trace on an Intel Xeon); the engines are compared on the full one above
TRACED = {"imaml-newton-cg-short": ("imaml", {"lam": 3.0, "inner_solver": "newton-cg", "inner_steps": 1,
                                              "newton_cg_steps": 2, "cg_steps": 2})}
EXACT = ("grad_evals", "hvp_evals", "loss_evals", "cg_iterations", "negative_curvature", "inner_negative_curvature")
CLOSE = ("inner_loss", "query_loss", "query_accuracy", "cg_residual")


def problem(kind: str):
    torch.manual_seed(0)
    module, shape = (tiny_mlp(), (4,)) if kind == "mlp" else (tiny_convnet(), (1, 6, 6))
    module.channels_last = kind == "convnet-channels-last"  # the stacked network's memory order (--channels-last)
    model = FunctionalModel(module.double(), cross_entropy_loss)
    generator = torch.Generator().manual_seed(1)
    tasks = [classification_task(generator, shape) for _ in range(TASKS)]
    return model, model.flat_parameters(), tasks


def learned_start(algorithm, model: FunctionalModel, theta: torch.Tensor) -> torch.Tensor:
    """The whole vector the algorithm meta-learns: theta, then each of its own groups (none for most) at its start
    values times a factor from exp(-0.3) to exp(0.3), drawn per element with a fixed seed."""
    parts = [theta]
    generator = torch.Generator().manual_seed(2)
    for group in groups_of(algorithm, model):
        factor = torch.exp(0.3 * (2 * torch.rand(group.size, generator=generator, dtype=torch.float64) - 1))
        moved = replace(group, initial=group.initial * factor).stored()
        parts.append(moved.to(dtype=theta.dtype, device=theta.device))
    return torch.cat(parts)


@pytest.mark.parametrize("kind", ["mlp", "convnet", "convnet-channels-last"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_batched_equals_per_task_task_by_task(kind, config):
    model, theta, tasks = problem(kind)
    name, hyperparameters = CONFIGS[config]
    algorithm = make_algorithm(name, **hyperparameters)
    theta = learned_start(algorithm, model, theta)
    result = algorithm.batched_meta_gradient(model, theta, TaskBatch.stack(tasks))
    assert result.gradients.shape == (TASKS, theta.numel())
    tolerance = 1e-10
    for i, task in enumerate(tasks):
        reference = algorithm.meta_gradient(model, theta, task)
        assert relative_error(result.gradients[i], reference.gradient) < tolerance, (config, i)
        assert relative_error(result.adapted[i], reference.adapted) < tolerance
        record = reference.record
        for name in EXACT:
            assert result.diagnostics[name][i].item() == getattr(record, name), (config, i, name)
        for name in CLOSE:
            expected = getattr(record, name)
            expected = float("nan") if expected is None else expected
            got = result.diagnostics[name][i].item()
            assert got == pytest.approx(expected, rel=1e-10, abs=1e-12, nan_ok=True), (config, i, name)
    mean = torch.stack([algorithm.meta_gradient(model, theta, t).gradient for t in tasks]).mean(0)
    assert relative_error(result.gradient, mean) < tolerance


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_batched_adapt_equals_per_task_adapt(config):
    model, theta, tasks = problem("convnet")
    name, hyperparameters = CONFIGS[config]
    algorithm = make_algorithm(name, **hyperparameters)
    theta = learned_start(algorithm, model, theta)
    phi = algorithm.batched_adapt(model, theta, TaskBatch.stack(tasks))
    for i, task in enumerate(tasks):
        assert relative_error(phi[i], algorithm.adapt(model, theta, task.support)) < 1e-10


@pytest.mark.parametrize("config, flag", [("imaml-gd", "negative_curvature"),
                                          ("imaml-newton-cg", "negative_curvature"),
                                          ("imaml-gd-tolerance", "converged"),
                                          ("imaml-lambda-parameter", "negative_curvature"),
                                          ("imaml-lambda-tolerance", "converged")])
def test_the_batch_mixes_curvature_and_convergence(config, flag):
    """The equality tests above are only worth something if the masks act on some tasks and not others."""
    model, theta, tasks = problem("convnet")
    name, hyperparameters = CONFIGS[config]
    algorithm = make_algorithm(name, **hyperparameters)
    theta = learned_start(algorithm, model, theta)
    diagnostics = algorithm.batched_meta_gradient(model, theta, TaskBatch.stack(tasks)).diagnostics
    if flag == "negative_curvature":
        met = diagnostics["negative_curvature"]
    else:  # stopped on the tolerance before the budget, without meeting curvature
        met = (diagnostics["cg_iterations"] < hyperparameters["cg_steps"]) & ~diagnostics["negative_curvature"]
    assert 0 < int(met.sum()) < TASKS, (config, met)


def test_newton_cg_records_its_curvature_apart_from_the_meta_gradient_solve():
    model, theta, tasks = problem("convnet")
    algorithm = make_algorithm("imaml", lam=5.0, inner_solver="newton-cg", inner_steps=3, newton_cg_steps=5, cg_steps=8)
    records = [algorithm.meta_gradient(model, theta, t).record for t in tasks]
    assert any(r.inner_negative_curvature and not r.negative_curvature for r in records)


def random_symmetric(n: int, eigenvalues: torch.Tensor, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("case", ["spd", "indefinite", "tolerance", "zero-rhs", "exact-in-3"])
def test_masked_cg_is_the_reference_cg(case):
    n = 12
    eigenvalues = torch.logspace(0, 2, n, dtype=torch.float64)
    tolerance = 0.0
    if case == "indefinite":
        eigenvalues[:3] = -eigenvalues[:3]
    if case == "tolerance":
        tolerance = 1e-2
    if case == "exact-in-3":  # three distinct eigenvalues: CG is exact after three iterations
        eigenvalues = torch.tensor([1.0, 5.0, 9.0], dtype=torch.float64).repeat(4)
        tolerance = 1e-10
    a = random_symmetric(n, eigenvalues, seed=0)
    b = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if case == "zero-rhs":
        b = torch.zeros(n, dtype=torch.float64)
    reference = conjugate_gradient(lambda v: a @ v, b, 20, tolerance)
    masked = masked_conjugate_gradient(lambda v: a @ v, b, 20, tolerance)
    assert torch.allclose(masked.x, reference.x, rtol=1e-12, atol=1e-14)
    assert masked.iterations.item() == reference.iterations and masked.matvecs.item() == reference.matvecs
    assert masked.negative_curvature.item() == reference.negative_curvature
    assert masked.converged.item() == reference.converged
    assert masked.relative_residual.item() == pytest.approx(reference.relative_residual, rel=1e-12, abs=1e-15)
    if case == "indefinite":
        assert reference.negative_curvature
    if case in ("tolerance", "exact-in-3"):
        assert reference.converged and reference.iterations < 20



@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_the_masked_solvers_solve_a_stack_of_systems_row_by_row(solver):
    """Given [systems, n] right-hand sides and a product that multiplies row by row (the stacked network's
    Hessians), the masked solvers give every row what the reference gives its system alone: here one positive
    definite, one indefinite, one that meets the tolerance early and one zero right-hand side, side by side."""
    from metagrad.algorithms import minres
    from metagrad.algorithms.minres import masked_minres

    reference_solver, masked_solver = {"cg": (conjugate_gradient, masked_conjugate_gradient),
                                       "minres": (minres, masked_minres)}[solver]
    n = 12
    spectra = [torch.logspace(0, 2, n, dtype=torch.float64) for _ in range(4)]
    spectra[1][:3] = -spectra[1][:3]
    spectra[2] = torch.tensor([1.0, 5.0, 9.0], dtype=torch.float64).repeat(4)  # exact after three iterations
    matrices = torch.stack([random_symmetric(n, spectrum, seed=i) for i, spectrum in enumerate(spectra)])
    b = torch.randn(4, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b[3] = 0.0
    tolerance = 1e-10
    budget = 8  # under n: the first two rows run the whole budget, far from the tolerance
    masked = masked_solver(lambda v: torch.einsum("snm,sm->sn", matrices, v), b, budget, tolerance)
    assert masked.x.shape == b.shape and masked.iterations.shape == (4,)
    for row in range(4):
        reference = reference_solver(lambda v, a=matrices[row]: a @ v, b[row], budget, tolerance)
        assert torch.allclose(masked.x[row], reference.x, rtol=1e-10, atol=1e-12), (solver, row)
        assert masked.iterations[row].item() == reference.iterations and masked.matvecs[row].item() == reference.matvecs
        assert masked.negative_curvature[row].item() == reference.negative_curvature
        assert masked.converged[row].item() == reference.converged
        assert masked.relative_residual[row].item() == pytest.approx(reference.relative_residual, rel=1e-6, abs=1e-12)
    assert masked.converged[2] and masked.iterations[2] == 3 and masked.converged[3] and masked.iterations[3] == 0
    if solver == "cg":
        assert masked.negative_curvature[1] and not masked.negative_curvature[0]

def test_the_stacked_newton_line_searches_are_the_whole_ladder():
    """The stacked network's Newton-CG takes its line search's candidates one after another for the tasks still
    searching on the CPU, and all in one pass elsewhere (reading nothing back, for a CUDA graph). Both against the
    whole ladder, every candidate for every task one after another: the same steps and counts, phi equal to
    rounding (a pass of fewer tasks, or of more networks, need not round alike); the first evaluating exactly the
    task-candidates the reference evaluates (its count), the second in fewer operations. The tasks here take their
    steps after different numbers of halvings, so the ladder goes on past the first candidate for some tasks and not
    for others."""
    from metagrad.algorithms.inner_solvers import (
        armijo_ladder,
        armijo_ladder_at_once,
        armijo_ladder_searching_only,
        masked_newton_steps,
    )
    from metagrad.bench.measure.operations import count_operations

    model, theta, tasks = problem("convnet")
    support = TaskBatch.stack(tasks).support
    lam = CONFIGS["imaml-newton-cg"][1]["lam"]
    linearized, objective = batched.stacked_newton_problem(model, support, theta, lam)
    evaluated: dict[str, int] = {}

    def counting(name: str):
        def counted(points: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            evaluated[name] = evaluated.get(name, 0) + points.shape[0]
            return objective(points, rows)

        return counted

    searches = {"whole": armijo_ladder(counting("whole")),
                "searching only": armijo_ladder_searching_only(counting("searching only")),
                "at once": armijo_ladder_at_once(counting("at once"))}
    results, operations = {}, {}
    for name, search in searches.items():
        def solve(name=name, search=search):
            results[name] = masked_newton_steps(linearized, search, theta.expand(TASKS, -1), 3, 5)

        operations[name] = count_operations(solve).total
    whole = results["whole"]
    assert len(set(whole.loss_evals.tolist())) > 1, whole.loss_evals
    for name in ("searching only", "at once"):
        for field in ("grad_evals", "hvp_evals", "loss_evals", "negative_curvature"):
            assert torch.equal(getattr(results[name], field), getattr(whole, field)), (name, field)
        assert relative_error(results[name].phi, whole.phi) < 1e-12, name
    assert evaluated["searching only"] == whole.loss_evals.sum().item() < evaluated["whole"], evaluated
    assert evaluated["at once"] == 3 * 31 * TASKS
    assert operations["at once"] < operations["whole"], operations


def compiled_against_eager(config: str, optimizer: str, iterations: int = 3) -> tuple[torch.Tensor, ...]:
    """``iterations`` training steps of the batched engine with the device sampler, eager and through
    torch.compile, from one start, with outer SGD or Adam: their meta-parameters (every one: the ConvNet has no
    parameter that no loss depends on) and window sums."""
    from metagrad.bench.data.device_tasks import DeviceTasks
    from metagrad.bench.data.tasks import EpisodeSpec, ImageClassTasks
    from metagrad.bench.training.steps import BatchedStep, Window

    name, hyperparameters = (CONFIGS | TRACED)[config]
    images = torch.randint(0, 256, (6, 8, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tasks = ImageClassTasks(images, tuple((c, t) for c in range(6) for t in range(2)), EpisodeSpec(3, 2, 3))
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = FunctionalModel(tiny_convnet().double(), cross_entropy_loss)
        theta = model.flat_parameters().clone()
        window = Window(theta.device)
        source = DeviceTasks(tasks, "cpu", torch.float64, seed=0, count=4)
        outer = torch.optim.SGD([theta], lr=0.1) if optimizer == "sgd" else torch.optim.Adam([theta], lr=1e-2)
        step = BatchedStep(make_algorithm(name, **hyperparameters), model, theta, outer, window, source=source,
                           compile=compile)
        for _ in range(iterations):
            step()
        results.append((theta.detach().clone(), window.sums.clone(), window.work.tolist(), source.iteration.item()))
    (eager, eager_sums, eager_work, eager_drawn), (compiled, compiled_sums, compiled_work, compiled_drawn) = results
    assert eager_drawn == compiled_drawn == iterations and eager_work == compiled_work
    return eager, compiled, eager_sums, compiled_sums


@pytest.mark.slow
@pytest.mark.parametrize("config", ["maml", "imaml-gd", "imaml-newton-cg-short", "reptile-nichol"])
def test_torch_compile_traces_the_whole_iteration_without_a_break(monkeypatch, config):
    """fullgraph=True with dynamo's "eager" backend: a graph break (host work, Python control flow on
    values) would be an error; with outer SGD the compiled iterations are the eager ones. Two of them: in the
    third, iMAML-GD's CG on this tiny network meets a curvature near zero and divides by it, which turns the two
    traces' 1e-16 rounding differences into 1e-12 (measured on an AMD EPYC: 0, 8.6e-16, 1.1e-12 after 1, 2, 3)."""
    import metagrad.bench.training.steps

    monkeypatch.setattr(metagrad.bench.training.steps, "COMPILE_OPTIONS", {"backend": "eager", "fullgraph": True})
    torch._dynamo.reset()
    eager, compiled, eager_sums, compiled_sums = compiled_against_eager(config, "sgd", iterations=2)
    assert relative_error(compiled, eager) < 1e-12 and relative_error(compiled_sums, eager_sums) < 1e-12


@pytest.mark.slow
def test_torch_compile_of_the_adam_step_rounds_its_bias_correction_in_float32(monkeypatch):
    """torch's compiled Adam keeps its step count as a float32 tensor, so its bias corrections carry float32
    rounding: the compiled runs agree to 1e-6, not 1e-12."""
    import metagrad.bench.training.steps

    monkeypatch.setattr(metagrad.bench.training.steps, "COMPILE_OPTIONS", {"backend": "eager", "fullgraph": True})
    torch._dynamo.reset()
    eager, compiled, eager_sums, compiled_sums = compiled_against_eager("fomaml", "adam")
    assert relative_error(compiled, eager) < 1e-6 and relative_error(compiled_sums, eager_sums) < 1e-6


@pytest.mark.slow
def test_torch_compile_with_inductor_is_the_eager_iteration():
    """Inductor's generated kernels (on the CPU: C++, the slowest test here for its compiling) compute the
    same steps to rounding."""
    torch._dynamo.reset()
    eager, compiled, eager_sums, compiled_sums = compiled_against_eager("fomaml", "sgd")
    assert relative_error(compiled, eager) < 1e-12 and relative_error(compiled_sums, eager_sums) < 1e-12


def test_the_loss_forms_of_the_batched_engine_are_the_loss():
    """The cross-entropy the per-task functions take under vmap (gathered) and the one the stacked network takes
    (per task from a stack) equal ``cross_entropy_loss``, task by task, in value, gradient and Hessian-vector
    product (float64)."""
    from metagrad.algorithms.functional import MAPPED_LOSSES, gathered_cross_entropy_loss, stacked_cross_entropy_loss, stacked_loss

    assert MAPPED_LOSSES[cross_entropy_loss] is gathered_cross_entropy_loss
    assert stacked_loss(cross_entropy_loss) is stacked_cross_entropy_loss
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (4, 7), generator=generator)
    direction = torch.randn(4, 7, 5, generator=generator, dtype=torch.float64)
    stacked = stacked_cross_entropy_loss(logits, labels)
    for t in range(4):
        def derivatives(loss, t=t):
            gradient, value = torch.func.grad_and_value(loss)(logits[t], labels[t])
            product = torch.func.jvp(lambda z: torch.func.grad(loss)(z, labels[t]), (logits[t],), (direction[t],))[1]
            return value, gradient, product

        reference = derivatives(cross_entropy_loss)
        for mine, expected in zip(derivatives(gathered_cross_entropy_loss), reference):
            assert relative_error(mine, expected) < 1e-14
        assert abs(float(stacked[t] - reference[0])) < 1e-14
    mapped = torch.func.vmap(gathered_cross_entropy_loss)(logits, labels)
    assert relative_error(mapped, stacked) < 1e-14


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pooling,activation", [("stride", "tanh"), ("max", "relu")])
def test_the_stacked_network_is_each_tasks_own_network(monkeypatch, pooling, activation, channels_last):
    """``ConvNet.stacked_forward`` (the first-order inner loops' network) gives every task the logits and loss
    its own parameters give it alone, for Omniglot's strided blocks and Mini-ImageNet's max-pooled RGB ones,
    with its activations in either memory order (and with ``channels_last`` every convolution reads them so)."""
    torch.manual_seed(0)
    module = ConvNet(num_classes=3, in_channels=3, filters=2, blocks=2, image_size=8, pooling=pooling,
                     activation=activation, channels_last=channels_last).double()
    layouts = []
    convolution = torch.nn.functional.conv2d

    def recording(h, *args, **kwargs):
        layouts.append(h.is_contiguous(memory_format=torch.channels_last))
        return convolution(h, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", recording)
    model = FunctionalModel(module, cross_entropy_loss)
    assert model.stacks
    tasks = 4
    theta = model.flat_parameters() + 0.1 * torch.randn(tasks, model.num_parameters, dtype=torch.float64)
    batch = Batch(torch.randn(tasks, 5, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (tasks, 5)))
    assert torch.equal(model.unpack(model.pack(theta), tasks), theta)
    losses, logits = model.stacked_losses(model.pack(theta), batch)
    for t in range(tasks):
        alone = Batch(batch.x[t], batch.y[t])
        assert relative_error(logits[t], model.forward(theta[t], alone.x)) < 1e-12
        assert abs(float(losses[t] - model.loss(theta[t], alone))) < 1e-12
    stacked_layouts = layouts[:2]  # the first stacked pass's two convolutions (the per-task ones come after)
    assert stacked_layouts == [channels_last] * 2, layouts
    assert not FunctionalModel(tiny_mlp(), cross_entropy_loss).stacks  # the MLP keeps vmap
