"""The linear-regression task family of the paper (Appendix F.1), with closed-form meta-gradients.

A task is a regression h_phi(x) = phi^T x, x in R^d, y in R, with loss
L(phi) = 1/2 mean (phi^T x - y)^2 = 1/2 phi^T A phi + phi^T b + const,
A = mean x x^T, b = -mean x y over the set. The inner objective G(phi) = L_train(phi) +
lam/2 ||phi - theta||^2 has Hessian A_train + lam I, and

    Alg*(theta) = (A + lam I)^-1 (lam theta - b)
    d/dtheta L_test(Alg*(theta)) = lam (A + lam I)^-1 grad L_test(Alg*(theta)).

How the spectrum is built: the eigenvalues of G's Hessian A_train + lam I are log-spaced (equal
ratios) between mu = lam + a_min and L = kappa * mu, so G's condition number is exactly kappa; the
eigenvalues of A_train are those minus lam (a_min = 1 by default, so A_train itself is positive
definite). With ``distinct_eigenvalues = k`` only k log-spaced levels are used, each repeated; CG
then solves the meta-gradient system exactly in k iterations. The eigenvectors are a random
orthogonal basis Q per task. The support inputs are
X = sqrt(n) U diag(sqrt(a)) Q^T with U an n x d matrix of orthonormal columns, so that the empirical
second moment X^T X / n equals Q diag(a) Q^T exactly, not only in expectation. Query inputs are
Gaussian with that covariance. Targets are y = x^T w + noise, with the task's weights
w ~ N(w_mean, w_spread^2 I / d) around a mean shared by all tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metagrad.algorithms import Batch, Task
from metagrad.bench.options import MOST_DIMENSIONS, option
from metagrad.errors import require


@dataclass(frozen=True)
class LinearRegressionConfig:
    dim: int = option(50, "input dimension d", at_most=MOST_DIMENSIONS)
    lam: float = option(5.0, "proximal regularization lambda")
    kappa: float = option(50.0, "condition number of the inner objective G")
    a_min: float = 1.0  # smallest eigenvalue of A_train
    n_support: int = 100
    n_query: int = 100
    noise: float = 0.1
    w_spread: float = 1.0
    distinct_eigenvalues: int = option(0, "number of distinct eigenvalues of the training Hessian (k: each of k "
                                          "values repeated)", shown="0: all distinct", at_most=MOST_DIMENSIONS)


    def __post_init__(self) -> None:
        require(self.dim >= 1, f"dim must be >= 1, got {self.dim}")
        require(self.lam > 0, f"lam must be > 0, got {self.lam}")
        require(self.kappa >= 1, f"kappa must be >= 1, got {self.kappa}")
        require(self.a_min >= 0, f"a_min must be >= 0, got {self.a_min}")
        require(self.n_support >= self.dim, f"dim must be at most the {self.n_support} support examples (n_support) "
                f"for an exact spectrum, got {self.dim}")
        require(self.n_query >= 1, f"n_query must be >= 1, got {self.n_query}")
        require(0 <= self.distinct_eigenvalues <= self.dim,
                f"distinct_eigenvalues must be between 0 and dim ({self.dim}), got {self.distinct_eigenvalues}")

    def spectrum(self) -> Tensor:
        """Eigenvalues of A_train, ascending."""
        mu = self.lam + self.a_min
        levels = self.distinct_eigenvalues or self.dim
        g = torch.logspace(math.log10(mu), math.log10(self.kappa * mu), levels, dtype=torch.float64)
        if levels < self.dim:  # spread the dim eigenvalues over the levels, extremes included
            g = g[torch.linspace(0, levels - 1, self.dim).round().long()]
        return g - self.lam

    @property
    def smoothness(self) -> float:
        """Largest eigenvalue of G's Hessian."""
        return self.kappa * (self.lam + self.a_min)

    @property
    def strong_convexity(self) -> float:
        return self.lam + self.a_min

    @property
    def default_inner_lr(self) -> float:
        """2 / (L + mu): the fastest fixed gradient-descent step on G, contraction (kappa-1)/(kappa+1) per step."""
        return 2.0 / (self.smoothness + self.strong_convexity)


class LinearRegressor(nn.Module):
    """h_phi(x) = phi^T x, no bias."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        # a matrix-matrix product, not mv: torch's FLOP counter counts mm but not mv
        return (x @ self.weight.unsqueeze(1)).squeeze(1)


@dataclass(frozen=True)
class LinearRegressionTask:
    task: Task
    A_train: Tensor
    b_train: Tensor
    A_test: Tensor
    b_test: Tensor

    def inner_solution(self, theta: Tensor, lam: float) -> Tensor:
        """Alg*(theta) = (A + lam I)^-1 (lam theta - b)."""
        eye = torch.eye(theta.numel(), dtype=theta.dtype)
        return torch.linalg.solve(self.A_train + lam * eye, lam * theta - self.b_train)

    def exact_meta_gradient(self, theta: Tensor, lam: float) -> Tensor:
        """lam (A + lam I)^-1 grad L_test(Alg*(theta)), the target of Definition 3."""
        phi = self.inner_solution(theta, lam)
        grad_test = self.A_test @ phi + self.b_test
        eye = torch.eye(theta.numel(), dtype=theta.dtype)
        return lam * torch.linalg.solve(self.A_train + lam * eye, grad_test)

    def exact_lambda_gradient(self, theta: Tensor, lam: Tensor) -> Tensor:
        """d/dlambda_i L_test(Alg*(theta, Lambda)) for a diagonal Lambda = diag(lam), lam one weight per parameter:
        Alg* = (A + Lambda)^-1 (Lambda theta - b), and differentiating (A + Lambda) phi = Lambda theta - b in lambda_i,
        (A + Lambda) dphi = e_i (theta - phi)_i, so the gradient is (theta - phi)_i g_i, g = (A + Lambda)^-1
        grad L_test(phi)."""
        system = self.A_train + torch.diag(lam)
        phi = torch.linalg.solve(system, lam * theta - self.b_train)
        g = torch.linalg.solve(system, self.A_test @ phi + self.b_test)
        return (theta - phi) * g


def _second_moments(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    n = x.shape[0]
    return x.T @ x / n, -(x.T @ y) / n


def sample_linear_regression_task(config: LinearRegressionConfig, generator: torch.Generator) -> LinearRegressionTask:
    """One task in float64, reproducible from ``generator``."""
    d = config.dim
    dt = torch.float64
    a = config.spectrum()
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dt))
    u, _ = torch.linalg.qr(torch.randn(config.n_support, d, generator=generator, dtype=dt))
    x_support = math.sqrt(config.n_support) * u @ torch.diag(a.sqrt()) @ q.T
    x_query = torch.randn(config.n_query, d, generator=generator, dtype=dt) @ torch.diag(a.sqrt()) @ q.T
    w_mean = torch.ones(d, dtype=dt) / math.sqrt(d)
    w = w_mean + config.w_spread * torch.randn(d, generator=generator, dtype=dt) / math.sqrt(d)
    y_support = x_support @ w + config.noise * torch.randn(config.n_support, generator=generator, dtype=dt)
    y_query = x_query @ w + config.noise * torch.randn(config.n_query, generator=generator, dtype=dt)
    A_train, b_train = _second_moments(x_support, y_support)
    A_test, b_test = _second_moments(x_query, y_query)
    return LinearRegressionTask(Task(Batch(x_support, y_support), Batch(x_query, y_query)),
                                A_train, b_train, A_test, b_test)
