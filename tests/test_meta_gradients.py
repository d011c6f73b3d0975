"""Every algorithm's meta-gradient against central finite differences or a closed form, in float64."""
from __future__ import annotations

import pytest
import torch

from metagrad.algorithms import (
    FunctionalModel,
    cross_entropy_loss,
    gradient_descent,
    make_algorithm,
    maml_meta_gradient_torch_func,
    newton_cg,
    proximal_objective,
    squared_error_loss,
)
from metagrad.bench.data.linear_regression import LinearRegressionConfig, LinearRegressor, sample_linear_regression_task

from .conftest import classification_task, tiny_convnet
from .finite_differences import central_difference_gradient, directional_derivatives, relative_error

LAM = 10.0
LR = 0.02  # below 2 / (largest curvature of G) on the tiny problems


def adapted(model, theta, task, steps, lr, lam):
    return gradient_descent(proximal_objective(model, task.support, theta, lam), theta, steps, lr).phi


def exact_inner_solution(model, theta, task, lam, start=None):
    """Alg*(theta) to machine precision: Newton with CG run to convergence (from ``start`` if given)."""
    n = theta.numel()
    return newton_cg(proximal_objective(model, task.support, theta, lam), theta if start is None else start,
                     iterations=30, cg_steps=4 * n, gradient_tolerance=1e-13, cg_tolerance=1e-13).phi


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_maml_matches_finite_differences_of_the_unrolled_loop(tiny_problem, lam):
    model, theta, task = tiny_problem
    steps, lr = 3, LR
    result = make_algorithm("maml", inner_steps=steps, inner_lr=lr, lam=lam).meta_gradient(model, theta, task)
    fd = central_difference_gradient(
        lambda th: model.loss(adapted(model, th, task, steps, lr, lam), task.query).item(), theta)
    assert relative_error(result.gradient, fd) < 1e-6
    # a silently first-order MAML (inner gradients without create_graph) would be far off
    first_order = make_algorithm("fomaml", inner_steps=steps, inner_lr=lr, lam=lam).meta_gradient(model, theta, task)
    assert relative_error(first_order.gradient, fd) > 1e-3


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_maml_higher_matches_torch_func(tiny_problem, lam):
    model, theta, task = tiny_problem
    algorithm = make_algorithm("maml", inner_steps=4, inner_lr=LR, lam=lam)
    via_higher = algorithm.meta_gradient(model, theta, task).gradient
    via_func = maml_meta_gradient_torch_func(algorithm, model, theta, task)
    assert relative_error(via_higher, via_func) < 1e-12


def test_maml_matches_finite_differences_on_the_relu_convnet():
    """The standard ReLU block; a few steps, far from kinks at a finite-difference step of 1e-6."""
    torch.manual_seed(0)
    module = tiny_convnet("relu").double()
    model = FunctionalModel(module, cross_entropy_loss)
    theta, task = model.flat_parameters(), classification_task(torch.Generator().manual_seed(1), (1, 6, 6))
    result = make_algorithm("maml", inner_steps=2, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    fd = central_difference_gradient(
        lambda th: model.loss(adapted(model, th, task, 2, LR, LAM), task.query).item(), theta)
    assert relative_error(result.gradient, fd) < 1e-6


def test_fomaml_is_the_query_gradient_at_the_adapted_parameters(tiny_problem):
    model, theta, task = tiny_problem
    result = make_algorithm("fomaml", inner_steps=3, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    phi = adapted(model, theta, task, 3, LR, LAM)
    assert torch.equal(result.adapted, phi)
    fd = central_difference_gradient(lambda p: model.loss(p, task.query).item(), phi)
    assert relative_error(result.gradient, fd) < 1e-7


def test_reptile_equals_scaled_training_gradient_at_the_proximal_solution(tiny_problem):
    """Paper Appendix A: theta - phi = (1/lam) grad L_train(phi) when phi minimizes G."""
    model, theta, task = tiny_problem
    result = make_algorithm("reptile", inner_steps=300, inner_lr=LR, lam=LAM).meta_gradient(model, theta, task)
    phi = result.adapted
    fd = central_difference_gradient(lambda p: model.loss(p, task.support).item(), phi)
    assert relative_error(result.gradient, fd / LAM) < 1e-7
    assert relative_error(phi, exact_inner_solution(model, theta, task, LAM)) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("inner_solver,inner_steps", [("newton-cg", 25), ("gd", 300)])
def test_imaml_matches_finite_differences_of_the_exact_inner_solution(tiny_problem, inner_solver, inner_steps):
    model, theta, task = tiny_problem
    n = theta.numel()
    algorithm = make_algorithm("imaml", lam=LAM, inner_solver=inner_solver, inner_steps=inner_steps, inner_lr=LR,
                               newton_cg_steps=4 * n, cg_steps=4 * n, cg_tolerance=1e-14)
    result = algorithm.meta_gradient(model, theta, task)
    phi_star = exact_inner_solution(model, theta, task, LAM)
    assert relative_error(result.adapted, phi_star) < 1e-10
    assert result.record.cg_residual < 1e-12  # the meta-gradient system was solved
    # each evaluation is a full Newton solve, so check 8 random directions rather than every coordinate
    directions = torch.randn(8, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    fd = directional_derivatives(
        lambda th: model.loss(exact_inner_solution(model, th, task, LAM, phi_star), task.query).item(), theta,
        directions, step=1e-5)
    assert relative_error(directions @ result.gradient, fd) < 1e-6
    # the implicit correction matters here: first-order MAML at the same phi is clearly off
    first_order = make_algorithm("imaml", lam=LAM, inner_solver=inner_solver, inner_steps=inner_steps, inner_lr=LR,
                                 newton_cg_steps=4 * n, cg_steps=0).meta_gradient(model, theta, task)
    assert relative_error(directions @ first_order.gradient, fd) > 1e-3


def test_imaml_with_zero_cg_steps_is_first_order_maml(tiny_problem):
    model, theta, task = tiny_problem
    imaml = make_algorithm("imaml", lam=LAM, inner_steps=7, inner_lr=LR, cg_steps=0).meta_gradient(model, theta, task)
    fomaml = make_algorithm("fomaml", lam=LAM, inner_steps=7, inner_lr=LR).meta_gradient(model, theta, task)
    assert torch.equal(imaml.gradient, fomaml.gradient)
    assert imaml.record.hvp_evals == 0 and imaml.record.grad_evals == fomaml.record.grad_evals == 8


def test_records_count_work(tiny_problem):
    model, theta, task = tiny_problem
    maml = make_algorithm("maml", inner_steps=4, inner_lr=LR).meta_gradient(model, theta, task).record
    assert (maml.grad_evals, maml.hvp_evals) == (5, 4)
    imaml = make_algorithm("imaml", lam=LAM, inner_steps=4, inner_lr=LR, cg_steps=3).meta_gradient(model, theta, task)
    r = imaml.record
    assert (r.grad_evals, r.hvp_evals, r.cg_iterations) == (6, 3, 3)
    assert 0 < r.cg_residual < 1 and 0.0 <= r.query_accuracy <= 1.0
    hf = make_algorithm("imaml", lam=LAM, inner_solver="newton-cg", inner_steps=3, newton_cg_steps=5,
                        cg_steps=5).meta_gradient(model, theta, task).record
    # Newton's CG may stop early on negative curvature far from the minimizer; the meta-gradient CG runs all 5
    assert hf.grad_evals == 3 + 1 + 1 and 3 + 5 <= hf.hvp_evals <= 3 * 5 + 5 and hf.loss_evals >= 3
    assert hf.cg_iterations == 5


# ---- closed forms on the paper's linear regression (Appendix F.1)

@pytest.fixture(scope="module")
def regression():
    config = LinearRegressionConfig(dim=20, kappa=20.0)
    generator = torch.Generator().manual_seed(3)
    task = sample_linear_regression_task(config, generator)
    theta = torch.randn(config.dim, generator=generator, dtype=torch.float64) * 0.3
    return config, task, theta, FunctionalModel(LinearRegressor(config.dim), squared_error_loss)


def test_imaml_matches_the_closed_form_meta_gradient(regression):
    config, task, theta, model = regression
    exact = task.exact_meta_gradient(theta, config.lam)
    gd = make_algorithm("imaml", lam=config.lam, inner_steps=600, inner_lr=config.default_inner_lr,
                        cg_steps=100, cg_tolerance=1e-14).meta_gradient(model, theta, task.task)
    assert relative_error(gd.gradient, exact) < 1e-10
    assert relative_error(gd.adapted, task.inner_solution(theta, config.lam)) < 1e-10
    # the Hessian-free solver needs one Newton iteration on a quadratic
    hf = make_algorithm("imaml", lam=config.lam, inner_solver="newton-cg", inner_steps=1, newton_cg_steps=100,
                        cg_steps=100, cg_tolerance=1e-14).meta_gradient(model, theta, task.task)
    assert relative_error(hf.gradient, exact) < 1e-8


def test_maml_matches_the_closed_form_of_the_unrolled_quadratic(regression):
    """phi_K is affine in theta: d phi_K / d theta = M^K + sum_{j<K} M^j alpha lam, M = I - alpha (A + lam I)."""
    config, task, theta, model = regression
    steps, alpha, lam = 7, config.default_inner_lr, config.lam
    eye = torch.eye(config.dim, dtype=torch.float64)
    m = eye - alpha * (task.A_train + lam * eye)
    jacobian = torch.linalg.matrix_power(m, steps) + sum(torch.linalg.matrix_power(m, j) for j in range(steps)) * alpha * lam
    phi = theta.clone()
    for _ in range(steps):
        phi = m @ phi + alpha * (lam * theta - task.b_train)
    expected = jacobian.T @ (task.A_test @ phi + task.b_test)
    result = make_algorithm("maml", inner_steps=steps, inner_lr=alpha, lam=lam).meta_gradient(model, theta, task.task)
    assert relative_error(result.gradient, expected) < 1e-12
    assert relative_error(result.adapted, phi) < 1e-12


# ---- truncated backpropagation (Shaban et al., 2019)

@pytest.mark.parametrize("lam", [0.0, LAM])
def test_truncated_maml_at_full_length_is_maml(tiny_problem, lam):
    model, theta, task = tiny_problem
    full = make_algorithm("maml", inner_steps=4, inner_lr=LR, lam=lam).meta_gradient(model, theta, task)
    truncated = make_algorithm("maml", inner_steps=4, inner_lr=LR, lam=lam, backprop_steps=4).meta_gradient(
        model, theta, task)
    assert torch.equal(truncated.gradient, full.gradient)
    assert truncated.record.hvp_evals == full.record.hvp_evals == 4


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_truncated_maml_with_no_backprop_steps_is_first_order_maml(tiny_problem, lam):
    model, theta, task = tiny_problem
    truncated = make_algorithm("maml", inner_steps=4, inner_lr=LR, lam=lam, backprop_steps=0).meta_gradient(
        model, theta, task)
    first_order = make_algorithm("fomaml", inner_steps=4, inner_lr=LR, lam=lam).meta_gradient(model, theta, task)
    assert relative_error(truncated.gradient, first_order.gradient) < 1e-12
    assert relative_error(truncated.adapted, first_order.adapted) < 1e-12
    assert (truncated.record.grad_evals, truncated.record.hvp_evals) == (5, 0)


@pytest.mark.parametrize("lam", [0.0, LAM])
def test_truncated_maml_matches_finite_differences_of_its_definition(tiny_problem, lam):
    """T of K steps: d/dtheta L_test(phi_K), with phi_{K-T} = theta + c held as c = phi_{K-T}(theta0) - theta0."""
    model, theta, task = tiny_problem
    steps, tracked = 5, 2
    result = make_algorithm("maml", inner_steps=steps, inner_lr=LR, lam=lam, backprop_steps=tracked).meta_gradient(
        model, theta, task)
    offset = adapted(model, theta, task, steps - tracked, LR, lam) - theta

    def query_loss(th):
        phi = th + offset
        for _ in range(tracked):
            phi = gradient_descent(proximal_objective(model, task.support, th, lam), phi, 1, LR).phi
        return model.loss(phi, task.query).item()

    fd = central_difference_gradient(query_loss, theta)
    assert relative_error(result.gradient, fd) < 1e-6
    # and it is neither full MAML nor first-order MAML
    full = make_algorithm("maml", inner_steps=steps, inner_lr=LR, lam=lam).meta_gradient(model, theta, task)
    assert relative_error(result.gradient, full.gradient) > 1e-4
    assert result.record.hvp_evals == tracked


def test_truncated_maml_bias_decays_with_the_inner_contraction(regression):
    """On the quadratic, the gap to full MAML shrinks geometrically in T (Shaban et al., Prop. 3.1)."""
    config, task, theta, model = regression
    steps = 60
    full = make_algorithm("maml", inner_steps=steps, inner_lr=config.default_inner_lr, lam=config.lam).meta_gradient(
        model, theta, task.task).gradient
    gaps = [relative_error(make_algorithm("maml", inner_steps=steps, inner_lr=config.default_inner_lr, lam=config.lam,
                                          backprop_steps=t).meta_gradient(model, theta, task.task).gradient, full)
            for t in (0, 10, 20, 30)]
    assert all(later < earlier / 2 for earlier, later in zip(gaps, gaps[1:]))


def test_backprop_steps_is_checked():
    with pytest.raises(ValueError, match="backprop_steps"):
        make_algorithm("maml", inner_steps=3, backprop_steps=4)
    with pytest.raises(ValueError, match="backprop_steps"):
        make_algorithm("maml", inner_steps=3, backprop_steps=-2)


# ---- Nesterov's accelerated inner solver

def test_nesterov_converges_at_its_theoretical_rate_on_a_quadratic():
    """||x_k - x*||^2 <= (L + mu)/mu (1 - 1/sqrt(kappa))^k ||x_0 - x*||^2, from G(x_k) - G* <= (1 - 1/sqrt(kappa))^k
    (G(x_0) - G* + mu/2 ||x_0 - x*||^2) and G's curvature between mu and L; and its steps grow like sqrt(kappa)."""
    from metagrad.algorithms.inner_solvers import nesterov_accelerated_gradient

    def steps_to(kappa: float, tolerance: float) -> int:
        n, mu = 40, 1.0
        generator = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
        hessian = q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(kappa)).item(), n,
                                                dtype=torch.float64)) @ q.T
        b = torch.randn(n, generator=generator, dtype=torch.float64)
        x_star = torch.linalg.solve(hessian, b)
        x0 = torch.zeros(n, dtype=torch.float64)
        visited = []  # the points y_k where the method takes its gradients

        def objective(y):
            visited.append(y.detach().clone())
            return 0.5 * y @ hessian @ y - b @ y

        steps = int(30 * kappa ** 0.5)
        nesterov_accelerated_gradient(objective, x0, steps, kappa * mu, mu)
        # x_{k+1} = y_k - grad G(y_k) / L
        iterates = [x0] + [y - (hessian @ y - b) / (kappa * mu) for y in visited]
        rate, first = 1 - 1 / kappa ** 0.5, None
        for k, x in enumerate(iterates):
            gap = ((x - x_star).norm() / (x0 - x_star).norm()).item()
            assert gap ** 2 <= (kappa + 1) * rate ** k + 1e-28, (kappa, k)
            if first is None and gap <= tolerance:
                first = k
        assert first is not None
        return first

    small, large = steps_to(100.0, 1e-8), steps_to(1600.0, 1e-8)
    # sqrt(16) = 4 times the steps for 16 times the condition number (gradient descent: about 16 times)
    assert 2.5 < large / small < 6


def test_imaml_with_nesterov_matches_the_closed_form(regression):
    config, task, theta, model = regression
    exact = task.exact_meta_gradient(theta, config.lam)
    result = make_algorithm("imaml", lam=config.lam, inner_solver="nesterov", inner_steps=200,
                            smoothness=config.smoothness, strong_convexity=config.strong_convexity, cg_steps=100,
                            cg_tolerance=1e-14).meta_gradient(model, theta, task.task)
    assert relative_error(result.gradient, exact) < 1e-10
    assert result.record.grad_evals == 200 + 2
    with pytest.raises(ValueError, match="nesterov needs"):
        make_algorithm("imaml", inner_solver="nesterov")


# ---- Reptile as Nichol et al. ran it: Adam (beta1 = 0) on minibatches

def test_the_inner_adam_is_pytorchs_adam_with_beta1_zero():
    """Where epsilon is negligible (large gradients) TensorFlow's form of Adam, which Nichol et al. ran, and
    PyTorch's coincide; checked against torch.optim.Adam(betas=(0, 0.999)) on a quadratic."""
    from metagrad.algorithms.inner_solvers import minibatch_descent

    generator = torch.Generator().manual_seed(0)
    scale = torch.logspace(7, 9, 7, dtype=torch.float64)  # gradients of 1e7 to 1e9: epsilon / sqrt(v) < 1e-13
    start = torch.randn(7, generator=generator, dtype=torch.float64)
    ours = minibatch_descent(lambda phi, k: scale * (phi - k), start, 12, 0.05, adam=True)
    phi = start.clone().requires_grad_(True)
    reference = torch.optim.Adam([phi], lr=0.05, betas=(0.0, 0.999), eps=0.0)
    for k in range(12):
        reference.zero_grad()
        phi.grad = (scale * (phi.detach() - k))
        reference.step()
    assert relative_error(ours, phi.detach()) < 1e-12


def test_minibatches_go_through_the_support_set_in_one_fixed_order():
    from metagrad.algorithms.inner_solvers import minibatch_indices

    batches = minibatch_indices(50, 10, 7)
    assert sorted(torch.cat(batches[:5]).tolist()) == list(range(50))  # one epoch: every example once
    assert torch.equal(batches[5], batches[0]) and torch.equal(minibatch_indices(50, 10, 7)[3], batches[3])
    assert all(torch.equal(b, torch.arange(5)) for b in minibatch_indices(5, 0, 3) + minibatch_indices(5, 5, 3))


def test_reptile_on_minibatches_is_theta_minus_its_adapted_parameters(tiny_problem):
    """Nichol et al.'s Reptile through the protocol equals theta - phi with phi from torch.optim.Adam on the
    same minibatches; adapt() takes the evaluation's steps and batches. TensorFlow's epsilon, added to
    sqrt(v), is PyTorch's epsilon / sqrt(1 - beta2^k), added to sqrt(v / (1 - beta2^k))."""
    from metagrad.algorithms.inner_solvers import minibatch_indices

    model, theta, task = tiny_problem
    reptile = make_algorithm("reptile", inner_optimizer="adam", inner_steps=4, inner_lr=0.01, inner_batch=5,
                             eval_inner_steps=7, eval_inner_batch=3)

    def adam_phi(steps, batch):
        phi = theta.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([phi], lr=0.01, betas=(0.0, 0.999), eps=1e-8)
        for k, indices in enumerate(minibatch_indices(task.support.y.shape[0], batch, steps)):
            optimizer.param_groups[0]["eps"] = 1e-8 / (1 - 0.999 ** (k + 1)) ** 0.5
            optimizer.zero_grad()
            loss = model.loss(phi, type(task.support)(task.support.x[indices], task.support.y[indices]))
            loss.backward()
            optimizer.step()
        return phi.detach()

    result = reptile.meta_gradient(model, theta, task)
    # 1e-8, not 1e-15: the two forms round differently where a gradient is 1e-16 noise (a bias ahead of
    # BatchNorm) and Adam divides it by its own root mean square (measured 1e-10); PyTorch's own epsilon
    # placement would be 1e-5 off, another minibatch order or a shared Adam state further
    assert relative_error(result.gradient, theta - adam_phi(4, 5)) < 1e-8
    assert relative_error(reptile.adapt(model, theta, task.support), adam_phi(7, 3)) < 1e-8
    assert result.record.grad_evals == 4
    shared = make_algorithm("reptile", inner_steps=4, inner_lr=0.01)
    assert shared.shared_protocol and not reptile.shared_protocol
    with pytest.raises(ValueError, match="inner_optimizer"):
        make_algorithm("reptile", inner_optimizer="rmsprop")
