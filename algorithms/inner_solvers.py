"""Solvers for the inner problem min_phi G(phi), started at theta, that keep no graph across steps.

Only their end point is used by first-order MAML, Reptile and iMAML; second-order MAML unrolls
its own differentiable gradient descent (``maml.py``).
"""
from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .conjugate_gradient import conjugate_gradient, masked_conjugate_gradient, row_dot, row_scalar
from .hessian_vector_product import HessianOperator, forward_over_reverse_hvp, value_and_gradient

Objective = Callable[[Tensor], Tensor]
# (points [m, n], rows [m] or None) -> G [m] on a stack of problems: point i as problem rows[i], or without rows as
# problem i mod problems (m a multiple of their number: candidate-major stacks of points, ``armijo_ladder_at_once``'s)
ProblemObjective = Callable[[Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class InnerSolution:
    phi: Tensor
    grad_evals: int = 0
    hvp_evals: int = 0
    loss_evals: int = 0
    negative_curvature: bool = False


@dataclass(frozen=True)
class MaskedInnerSolution:
    """``InnerSolution`` as tensors, for the batched engine (per-task scalars under ``vmap``)."""

    phi: Tensor
    grad_evals: Tensor
    hvp_evals: Tensor
    loss_evals: Tensor
    negative_curvature: Tensor

    @staticmethod
    def of_gradient_steps(phi: Tensor, steps: int) -> MaskedInnerSolution:
        """The counts of ``steps`` plain gradient steps (no products, no line search, no curvature)."""
        zero = torch.zeros((), dtype=torch.long, device=phi.device)
        return MaskedInnerSolution(phi, zero + steps, zero, zero, torch.zeros((), dtype=torch.bool, device=phi.device))


def gradient_descent(objective: Objective, start: Tensor, steps: int, lr: float) -> InnerSolution:
    """``steps`` plain gradient steps phi <- phi - lr grad G(phi)."""
    phi = start.detach()
    for _ in range(steps):
        _, grad = value_and_gradient(objective, phi)
        phi = phi - lr * grad
    return InnerSolution(phi=phi, grad_evals=steps)


# Nichol et al.'s inner optimizer: TensorFlow's Adam with beta1 = 0 and its defaults beta2 = 0.999, epsilon = 1e-8
ADAM_BETA2, ADAM_EPSILON = 0.999, 1e-8


def _shuffled(size: int) -> tuple[int, ...]:
    """0, ..., size - 1 in the fixed random order of Python's ``random``, seed 0."""
    order = list(range(size))
    random.Random(0).shuffle(order)
    return tuple(order)


def prepare_for_compile() -> None:
    """Mark for ``torch.compile`` what it must take as constant: ``_shuffled`` (torch 2.11's dynamo, the GPU
    machine's, cannot trace ``Random.shuffle``). Called before compiling rather than as a decorator, because the
    decorator imports dynamo, a second of every command's start. Dynamo traces through ``minibatch_indices``'s
    cache, which only saves making the same index tensors again, and warns that it does: that warning is
    silenced, for this function only."""
    torch.compiler.assume_constant_result(_shuffled)
    warnings.filterwarnings("ignore", category=UserWarning, message=r"Dynamo detected a call to a "
                            r"`functools\.lru_cache`-wrapped function at '(reptile|inner_solvers)\.py")


@functools.lru_cache(maxsize=64)
def minibatch_indices(size: int, batch: int, steps: int, device: torch.device | None = None) -> tuple[Tensor, ...]:
    """The examples of each of ``steps`` inner steps, as index tensors on ``device`` (made once per device
    and cached: a copy from the host inside an iteration would stall it, and would break a CUDA graph's
    capture): all ``size`` of them when ``batch`` is 0 or at least
    ``size``, else consecutive runs of ``batch`` through one fixed random order (Python's ``random``, seed
    0: no torch random operation, so it may run under ``vmap``), wrapping around.

    The order is the same for every task: the labels are assigned to classes at random per task, so the
    batches' mix of classes is random anyway, and the inner loop stays a pure function of (theta, task)."""
    if batch <= 0 or batch >= size:
        return (torch.arange(size, device=device),) * steps
    # made on the device itself: torch.compile traces through the cache, and then sees no host tensor
    order = torch.tensor(_shuffled(size), device=device)
    return tuple(order[(k * batch + torch.arange(batch, device=device)) % size] for k in range(steps))


def minibatch_descent(gradient_at: Callable[[Tensor, int], Tensor], start: Tensor, steps: int, lr: float,
                      adam: bool) -> Tensor:
    """``steps`` steps from ``start``; ``gradient_at(phi, k)`` is step k's gradient (on its minibatch).

    SGD: phi <- phi - lr g. Adam with beta1 = 0 (as Nichol et al.'s Reptile, in TensorFlow's form), its
    state fresh for each task: v <- beta2 v + (1 - beta2) g^2, phi <- phi - lr sqrt(1 - beta2^k) g /
    (sqrt(v) + epsilon), k = 1, 2, ..."""
    phi = start
    second_moment = torch.zeros_like(start)
    for k in range(steps):
        grad = gradient_at(phi, k)
        if adam:
            second_moment = ADAM_BETA2 * second_moment + (1 - ADAM_BETA2) * grad * grad
            rate = lr * (1 - ADAM_BETA2 ** (k + 1)) ** 0.5
            phi = phi - rate * grad / (second_moment.sqrt() + ADAM_EPSILON)
        else:
            phi = phi - lr * grad
    return phi


def nesterov_momentum(smoothness: float, strong_convexity: float) -> float:
    """beta = (sqrt(kappa) - 1) / (sqrt(kappa) + 1), kappa = L / mu: the constant momentum of the accelerated
    method for strongly convex objectives."""
    root = (smoothness / strong_convexity) ** 0.5
    return (root - 1.0) / (root + 1.0)


def _nesterov_steps(gradient: Callable[[Tensor], Tensor], start: Tensor, steps: int, smoothness: float,
                    strong_convexity: float) -> Tensor:
    """The iteration both forms of Nesterov's method share; ``gradient`` gives grad G at a point."""
    beta = nesterov_momentum(smoothness, strong_convexity)
    x = y = start
    for _ in range(steps):
        x_next = y - gradient(y) / smoothness
        y = x_next + beta * (x_next - x)
        x = x_next
    return x


def nesterov_accelerated_gradient(objective: Objective, start: Tensor, steps: int, smoothness: float,
                                  strong_convexity: float) -> InnerSolution:
    """Nesterov's accelerated gradient method for an L-smooth, mu-strongly convex G (the constant-step
    scheme of Nesterov's Introductory Lectures, 2004, Section 2.2), from x_0 = y_0 = start:

        x_{k+1} = y_k - grad G(y_k) / L,    y_{k+1} = x_{k+1} + beta (x_{k+1} - x_k),
        beta = (sqrt(kappa) - 1) / (sqrt(kappa) + 1),   kappa = L / mu.

    It needs both constants, known: with them G(x_k) - G* <= (1 - 1/sqrt(kappa))^k (G(x_0) - G* +
    mu/2 ||x_0 - x*||^2), so about sqrt(kappa) log(1/eps) gradients where gradient descent needs
    kappa log(1/eps) (the paper's Lemma 2 and Theorem 2). They are known for the linear-regression
    family (``bench.data.linear_regression``: mu = lam + a_min, L = kappa mu); on a network they are not,
    and an L too small or a mu too large voids the guarantee (the iterates can diverge). One gradient
    per step; the iterate returned is x_k.
    """
    def gradient(point: Tensor) -> Tensor:
        return value_and_gradient(objective, point)[1]

    phi = _nesterov_steps(gradient, start.detach(), steps, smoothness, strong_convexity)
    return InnerSolution(phi=phi, grad_evals=steps)


def newton_cg(
    objective: Objective,
    start: Tensor,
    iterations: int,
    cg_steps: int,
    armijo: float = 1e-4,
    max_halvings: int = 30,
    gradient_tolerance: float = 0.0,
    cg_tolerance: float = 0.0,
) -> InnerSolution:
    """Hessian-free (truncated Newton-CG) minimization with a backtracking line search.

    Each iteration: direction d from ``cg_steps`` CG iterations on (grad^2 G) d = -grad G, using
    Hessian-vector products only; if CG meets negative curvature before its first update, the
    steepest-descent direction -grad G is used instead. Step size t by halving from 1 until the
    Armijo condition G(phi + t d) <= G(phi) + armijo * t * grad G . d holds (at most ``max_halvings``
    halvings; if none holds the iterate is left where it is). Stops early once ||grad G|| <=
    ``gradient_tolerance``; each direction's CG stops once its relative residual <= ``cg_tolerance``.
    """
    phi = start.detach()
    grad_evals = hvp_evals = loss_evals = 0
    negative_curvature = False
    for _ in range(iterations):
        hessian = HessianOperator(objective, phi)
        grad_evals += 1
        value, grad = hessian.value.detach(), hessian.gradient.detach()
        if grad.norm().item() <= gradient_tolerance:
            break
        solve = conjugate_gradient(hessian, -grad, max_iterations=cg_steps, tolerance=cg_tolerance)
        hvp_evals += hessian.products
        negative_curvature |= solve.negative_curvature
        direction = solve.x if solve.iterations > 0 else -grad
        del hessian  # free the gradient's graph before the line search
        slope = torch.dot(grad, direction).item()
        if slope >= 0:  # not a descent direction (CG stopped on curvature with a poor iterate)
            direction, slope = -grad, -torch.dot(grad, grad).item()
        step = 1.0
        with torch.no_grad():
            for _ in range(max_halvings + 1):
                trial = phi + step * direction
                loss_evals += 1
                if objective(trial).item() <= value.item() + armijo * step * slope:
                    phi = trial
                    break
                step *= 0.5
    return InnerSolution(phi=phi, grad_evals=grad_evals, hvp_evals=hvp_evals, loss_evals=loss_evals,
                         negative_curvature=negative_curvature)


def gradient_steps(gradient: Callable[[Tensor], Tensor], start: Tensor, steps: int, lr: float) -> Tensor:
    """``steps`` plain steps phi <- phi - lr gradient(phi) from ``start``: the batched engine's gradient descent,
    one task's under ``vmap`` or every task's at once on the stacked network."""
    phi = start
    for _ in range(steps):
        phi = torch.add(phi, gradient(phi), alpha=-lr)  # one operation where phi - lr * g is two
    return phi


def functional_gradient_descent(objective: Objective, start: Tensor, steps: int, lr: float) -> MaskedInnerSolution:
    """``gradient_descent`` as a pure ``torch.func`` function: the same steps, batchable with ``vmap``."""
    return MaskedInnerSolution.of_gradient_steps(gradient_steps(torch.func.grad(objective), start, steps, lr), steps)


def functional_nesterov_accelerated_gradient(objective: Objective, start: Tensor, steps: int, smoothness: float,
                                             strong_convexity: float) -> MaskedInnerSolution:
    """``nesterov_accelerated_gradient`` as a pure ``torch.func`` function (the batched engine's)."""
    phi = _nesterov_steps(torch.func.grad(objective), start, steps, smoothness, strong_convexity)
    return MaskedInnerSolution.of_gradient_steps(phi, steps)


# phi -> (G(phi), grad G(phi), u -> grad^2 G(phi) u) for one problem (phi [n], G a scalar), or for a stack of
# independent problems (phi [problems, n], G [problems], the product row by row): a Newton iteration's linearization
Linearization = Callable[[Tensor], tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]]
# (phi, direction, G(phi), slope grad G . direction, searching) -> (the point taken, candidates evaluated): Newton-CG's
# backtracking line search, per problem; value, slope, searching and the count are [..., 1] (``row_dot``'s shape)
LineSearch = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def masked_newton_cg(
    objective: Objective,
    start: Tensor,
    iterations: int,
    cg_steps: int,
    armijo: float = 1e-4,
    max_halvings: int = 30,
    gradient_tolerance: float = 0.0,
    cg_tolerance: float = 0.0,
    product_objective: Objective | None = None,
) -> MaskedInnerSolution:
    """``newton_cg`` without data-dependent control flow, for ``vmap`` and graph capture: ``masked_newton_steps`` on
    one task's G, the gradient by ``torch.func.grad``, forward-over-reverse Hessian-vector products and the line
    search's candidates one after another (``armijo_ladder``). ``product_objective``, where given, is ``objective`` in
    a form cheaper to differentiate twice, for the products."""
    # not `or`: torch 2.11's dynamo cannot take a nested function's truth value
    products_of = objective if product_objective is None else product_objective
    value_and_grad = torch.func.grad_and_value(objective)

    def linearized(phi: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        grad, value = value_and_grad(phi)
        return value, grad, lambda u: forward_over_reverse_hvp(products_of, phi, u)

    return masked_newton_steps(linearized, armijo_ladder(objective, armijo, max_halvings), start, iterations, cg_steps,
                               gradient_tolerance, cg_tolerance)


def masked_newton_steps(
    linearized: Linearization,
    line_search: LineSearch,
    start: Tensor,
    iterations: int,
    cg_steps: int,
    gradient_tolerance: float = 0.0,
    cg_tolerance: float = 0.0,
) -> MaskedInnerSolution:
    """``newton_cg``'s iterations without data-dependent control flow, on one problem or on a stack of independent
    ones (``start`` [n] or [problems, n]; ``linearized``'s G is then [problems], its product row by row: every task's
    on the stacked network, ``algorithms.batched.stacked_newton_problem``).

    The same iterations: directions by ``masked_conjugate_gradient`` (which solves a stack row by row), the
    steepest-descent fallbacks, and the Armijo backtracking as a fixed ladder of candidate steps 1, 1/2, 1/4, ...,
    the first acceptable one taken (``line_search``: ``armijo_ladder``, ``armijo_ladder_searching_only`` or
    ``armijo_ladder_at_once``). A problem the reference would have stopped (gradient below tolerance) is frozen by a
    mask. Counts are what the reference counts, one per problem. The price, but for the searching-only form (which
    reads back), is the ladder: every candidate costs a forward pass, where the reference usually stops at the
    first."""
    # per-problem scalars kept as [..., 1] (``row_dot``'s shape), so that they broadcast against the rows
    phi = start
    zero = row_scalar(start, 0, torch.long)
    grad_evals = hvp_evals = loss_evals = zero
    negative_curvature = row_scalar(start, False, torch.bool)
    alive = row_scalar(start, True, torch.bool)
    for _ in range(iterations):
        value, grad, product = linearized(phi)
        grad_evals = grad_evals + alive  # a bool mask adds as 0 or 1: no conversion
        alive = alive & (torch.linalg.vector_norm(grad, dim=-1, keepdim=True) > gradient_tolerance)
        solve = masked_conjugate_gradient(product, -grad, cg_steps, cg_tolerance)
        hvp_evals = hvp_evals + torch.where(alive, solve.matvecs.unsqueeze(-1), zero)
        negative_curvature = negative_curvature | (alive & solve.negative_curvature.unsqueeze(-1))
        direction = torch.where(solve.iterations.unsqueeze(-1) > 0, solve.x, -grad)
        slope = row_dot(grad, direction)
        uphill = slope >= 0
        direction = torch.where(uphill, -grad, direction)
        slope = torch.where(uphill, -row_dot(grad, grad), slope)
        phi, evaluated = line_search(phi, direction, value.unsqueeze(-1), slope, alive)  # a stopped problem stays
        loss_evals = loss_evals + evaluated
    return MaskedInnerSolution(phi, grad_evals.squeeze(-1), hvp_evals.squeeze(-1), loss_evals.squeeze(-1),
                               negative_curvature.squeeze(-1))


def armijo_ladder(objective: Objective, armijo: float = 1e-4, max_halvings: int = 30) -> LineSearch:
    """``newton_cg``'s backtracking without data-dependent control flow: the candidates phi + t d, t = 1, 1/2, ...,
    2^-max_halvings, one after another, each evaluated for every problem, the first for which
    G(phi + t d) <= G(phi) + armijo t slope taken by each problem still searching (phi kept where none is).
    ``objective``: phi [n] -> G, or [problems, n] -> [problems]. The form under ``vmap``; on a stack of problems,
    ``armijo_ladder_searching_only`` and ``armijo_ladder_at_once`` compute the same."""

    def search(phi: Tensor, direction: Tensor, value: Tensor, slope: Tensor, searching: Tensor) -> tuple[Tensor, Tensor]:
        accepted = ~searching
        chosen, evaluated = phi, torch.zeros_like(searching, dtype=torch.long)
        step = 1.0
        for _ in range(max_halvings + 1):
            trial = phi + step * direction
            pending = ~accepted
            evaluated = evaluated + pending
            ok = pending & (objective(trial).unsqueeze(-1) <= value + armijo * step * slope)
            chosen = torch.where(ok, trial, chosen)
            accepted = accepted | ok
            step *= 0.5
        return chosen, evaluated

    return search


def armijo_ladder_searching_only(objective: ProblemObjective, armijo: float = 1e-4,
                                 max_halvings: int = 30) -> LineSearch:
    """``armijo_ladder`` on a stack of problems, each candidate evaluated only for the problems still searching
    (their rows picked out: ``objective``'s ``rows``), and ending once none is: the evaluations the reference makes,
    no more. The same steps and counts; the same arithmetic row by row, the objective's on fewer rows (on the stacked
    network, a pass of fewer tasks: equal to rounding, tested). It reads which problems still search back to the
    host once a candidate, so it is the CPU's form, outside ``vmap`` and graph capture."""

    def search(phi: Tensor, direction: Tensor, value: Tensor, slope: Tensor, searching: Tensor) -> tuple[Tensor, Tensor]:
        chosen, evaluated = phi.clone(), torch.zeros_like(searching, dtype=torch.long)
        rows = searching.squeeze(-1).nonzero().squeeze(-1)  # a read back: the problems still searching
        step = 1.0
        for _ in range(max_halvings + 1):
            if rows.numel() == 0:
                break
            trial = phi[rows] + step * direction[rows]
            evaluated[rows] += 1
            ok = objective(trial, rows) <= (value[rows] + armijo * step * slope[rows]).squeeze(-1)
            chosen[rows[ok]] = trial[ok]
            rows = rows[~ok]
            step *= 0.5
        return chosen, evaluated

    return search


def armijo_ladder_at_once(objective: ProblemObjective, armijo: float = 1e-4, max_halvings: int = 30) -> LineSearch:
    """``armijo_ladder`` on a stack of problems with every candidate of every problem evaluated in one call of
    ``objective`` on [candidates x problems, n] (on the stacked network, one forward pass of candidates x tasks
    networks: a few operations where the ladder takes a pass per candidate, for the same arithmetic and candidates x
    the activations' memory), reading nothing back: the form for a captured graph. The same candidates (t d with t a
    power of two: the same products), the same tests, the first acceptable one taken."""
    candidates = max_halvings + 1
    made: dict[tuple[torch.dtype, torch.device], Tensor] = {}  # the steps, made once per solve (a dict: dynamo
    # cannot trace functools.cache)

    def search(phi: Tensor, direction: Tensor, value: Tensor, slope: Tensor, searching: Tensor) -> tuple[Tensor, Tensor]:
        key = (phi.dtype, phi.device)
        if key not in made:  # 1, 1/2, ..., 2^-max_halvings, exactly (halving is exact where a device's pow need not be)
            made[key] = (torch.full((candidates,), 0.5, dtype=phi.dtype, device=phi.device).cumprod(0) * 2.0).view(-1, 1, 1)
        steps = made[key]
        trials = phi + steps * direction  # [candidates, problems, n]
        values = objective(trials.view(-1, trials.shape[-1]), None).view(candidates, -1)  # candidate-major: see objective
        ok = searching & (values.unsqueeze(-1) <= value + armijo * steps * slope)
        found = ok.any(dim=0)
        first = ok.to(torch.uint8).argmax(dim=0)  # the first acceptable candidate (argmax: the first maximum)
        evaluated = torch.where(searching, torch.where(found, first + 1, candidates), 0)
        return torch.where(found, phi + steps.view(-1)[first] * direction, phi), evaluated

    return search
