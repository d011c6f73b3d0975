"""The same meta-gradients through metagrad and through other libraries, side by side: ``metagrad peers``.

One process, one problem (the profiler's: a ConvNet with BatchNorm on batch statistics, 5-way tasks), the same
initial weights and tasks for every implementation:

- MAML (second order, ``inner_steps`` steps of ``inner_lr``): metagrad's per-task and batched engines; ``higher``'s
  ``innerloop_ctx`` written out here; torchopt's ``MetaSGD`` (``pip install -e '.[peers]'``).
- iMAML (``inner_steps`` gradient steps on the proximal objective, then ``cg_steps`` CG steps on (I + H/lambda) g = v):
  metagrad's two engines; torchopt's ``custom_root`` with ``solve_cg`` on the stationarity condition
  grad L(phi) + lambda (phi - theta) = 0. Its CG runs on (H + lambda I) u = v and returns lambda u: the same iterates
  as CG on (I + H/lambda) g = v, scaled (tolerance 0 and 0: the same number of steps).

Every peer's meta-gradient is compared, in float64, with metagrad's per-task one (the reference); times, saved bytes
and tasks per second are measured in float32. A peer that is not installed is one line saying how to install it.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.nn import functional as F

from metagrad.bench.options import MOST_FILTERS, MOST_IMAGES, MOST_REPEATS, MOST_STEPS, option
from metagrad.errors import require

COLUMNS = ["algorithm", "peer", "version", "device", "dtype_checked", "max_rel_diff", "time_per_task_s",
           "time_iqr_s", "saved_bytes", "tasks_per_s", "meta_batch", "settings", "note"]
ALGORITHMS = ("maml", "imaml")
INSTALL = "pip install -e '.[peers]'"


@dataclass(frozen=True)
class PeersConfig:
    dataset: str = option("random-images", "the problem's images: random-images (no data) or omniglot",
                          choices=("random-images", "omniglot"))
    ways: int = option(5, "classes per task", at_most=MOST_IMAGES)
    shots: int = option(1, "support images per class", at_most=MOST_IMAGES)
    queries: int = option(15, "query images per class", at_most=MOST_IMAGES)
    filters: int = option(32, "the ConvNet's channels", at_most=MOST_FILTERS)
    inner_steps: int = option(5, "inner gradient steps", at_most=MOST_STEPS)
    inner_lr: float = option(0.4, "inner step size")
    lam: float = option(2.0, "iMAML's lambda")
    cg_steps: int = option(5, "iMAML's CG steps", at_most=MOST_STEPS)
    meta_batch: int = option(8, "tasks per meta-batch, for tasks per second", at_most=MOST_IMAGES)
    repeats: int = option(10, "timed repeats per peer", at_most=MOST_REPEATS)
    seed: int = option(0, "seed of the weights and the tasks")
    device: str = option("cpu", "torch device: cpu or cuda[:N]")
    data_root: str | None = option(None, "the data folder, for --dataset omniglot")

    def __post_init__(self) -> None:
        require(self.ways >= 2 and self.shots >= 1 and self.queries >= 1, "ways >= 2, shots and queries >= 1")
        require(self.inner_steps >= 1 and self.cg_steps >= 1, "inner steps and CG steps must be >= 1")
        require(self.inner_lr > 0 and self.lam > 0, "the inner step size and lambda must be > 0")
        require(self.meta_batch >= 1 and self.repeats >= 1 and self.filters >= 1, "meta-batch, repeats, filters >= 1")


@dataclass
class Problem:
    module: torch.nn.Module
    theta: Tensor
    tasks: list  # Task, the first the compared one
    model: Any = None  # metagrad's FunctionalModel of ``module``, made once: it keeps what it traced

    def functional(self):
        from metagrad.algorithms import FunctionalModel, cross_entropy_loss

        if self.model is None:
            self.model = FunctionalModel(self.module, cross_entropy_loss)
        return self.model


def build(config: PeersConfig, dtype: torch.dtype) -> Problem:
    from metagrad.bench.harnesses.profile import ProfileConfig, build_problem

    profile = ProfileConfig(dataset=config.dataset, ways=config.ways, shots=config.shots, queries=config.queries,
                            filters=config.filters, device=config.device, data_root=config.data_root,
                            seed=config.seed)
    first = build_problem(profile)
    tasks = [first.task] + [build_problem(replace(profile, seed=config.seed + 1 + i)).task
                            for i in range(config.meta_batch - 1)]
    module = first.model.module.to(dtype)
    cast = [task.to(first.device) for task in tasks]
    if dtype == torch.float64:
        from metagrad.algorithms import Batch, Task

        cast = [Task(Batch(t.support.x.double(), t.support.y), Batch(t.query.x.double(), t.query.y)) for t in cast]
    return Problem(module, torch.nn.utils.parameters_to_vector(module.parameters()).detach(), cast)


def _set(module: torch.nn.Module, theta: Tensor) -> None:
    torch.nn.utils.vector_to_parameters(theta.detach().clone(), module.parameters())


def _flat(grads) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def metagrad_peer(name: str, config: PeersConfig, batched: bool) -> Callable:
    from metagrad.algorithms import make_algorithm
    from metagrad.algorithms.functional import TaskBatch

    algorithm = make_algorithm(name, inner_steps=config.inner_steps, inner_lr=config.inner_lr,
                               **({"lam": config.lam, "cg_steps": config.cg_steps} if name == "imaml" else {}))

    def run(problem: Problem, tasks: list) -> list[Tensor]:
        model = problem.functional()
        if batched:
            return list(algorithm.batched_meta_gradient(model, problem.theta, TaskBatch.stack(tasks)).gradients)
        return [algorithm.meta_gradient(model, problem.theta, task).gradient for task in tasks]

    return run


def higher_maml(config: PeersConfig) -> Callable:
    import higher

    def run(problem: Problem, tasks: list) -> list[Tensor]:
        module, out = problem.module, []
        for task in tasks:
            _set(module, problem.theta)
            sgd = torch.optim.SGD(module.parameters(), lr=config.inner_lr)
            with higher.innerloop_ctx(module, sgd, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(config.inner_steps):
                    diffopt.step(F.cross_entropy(fmodel(task.support.x), task.support.y))
                loss = F.cross_entropy(fmodel(task.query.x), task.query.y)
                out.append(_flat(torch.autograd.grad(loss, list(module.parameters()))))
        return out

    return run


def torchopt_maml(config: PeersConfig) -> Callable:
    import torchopt

    def run(problem: Problem, tasks: list) -> list[Tensor]:
        out = []
        for task in tasks:
            net = copy.deepcopy(problem.module)
            _set(net, problem.theta)
            start = list(net.parameters())
            inner = torchopt.MetaSGD(net, lr=config.inner_lr)
            for _ in range(config.inner_steps):
                inner.step(F.cross_entropy(net(task.support.x), task.support.y))
            loss = F.cross_entropy(net(task.query.x), task.query.y)
            out.append(_flat(torch.autograd.grad(loss, start)))
        return out

    return run


def torchopt_imaml(config: PeersConfig) -> Callable:
    import torchopt
    from torch.func import functional_call

    def run(problem: Problem, tasks: list) -> list[Tensor]:
        module, out = problem.module, []
        names = [name for name, _ in module.named_parameters()]
        shapes = [p.shape for p in module.parameters()]
        sizes = [p.numel() for p in module.parameters()]
        theta = tuple(t.view(s) for t, s in zip(problem.theta.split(sizes), shapes))
        for task in tasks:
            def inner_loss(phi, anchor, task=task):
                logits = functional_call(module, dict(zip(names, phi)), (task.support.x,))
                return F.cross_entropy(logits, task.support.y) + 0.5 * config.lam * sum(
                    ((p - a) ** 2).sum() for p, a in zip(phi, anchor))

            def stationarity(phi, anchor):  # torchopt differentiates it under torch.func: a functional gradient
                return torch.func.grad(inner_loss)(phi, anchor)

            @torchopt.diff.implicit.custom_root(stationarity, argnums=1, solve=torchopt.linear_solve.solve_cg(
                maxiter=config.cg_steps, rtol=0.0, atol=0.0))
            def inner_solve(phi, anchor):
                phi = tuple(p.detach() for p in phi)
                anchor = tuple(a.detach() for a in anchor)
                for _ in range(config.inner_steps):
                    with torch.enable_grad():
                        start = tuple(p.requires_grad_(True) for p in phi)
                        grads = torch.autograd.grad(inner_loss(start, anchor), start)
                    phi = tuple((p - config.inner_lr * g).detach() for p, g in zip(phi, grads))
                return phi

            anchor = tuple(t.detach().clone().requires_grad_(True) for t in theta)
            with warnings.catch_warnings():  # torchopt 0.7.3 calls functorch.vjp, which torch says is deprecated
                warnings.simplefilter("ignore", FutureWarning)
                phi = inner_solve(tuple(t.detach().clone() for t in theta), anchor)
                loss = F.cross_entropy(functional_call(module, dict(zip(names, phi)), (task.query.x,)),
                                       task.query.y)
                out.append(_flat(torch.autograd.grad(loss, anchor)))
        return out

    return run


def peers(config: PeersConfig) -> list[tuple[str, str, str, Callable | None, str]]:
    """(algorithm, peer, version, its function or None where not installed, its settings)."""
    from importlib.metadata import version

    ours = version("metagrad")
    found = []
    try:
        import torchopt

        torchopt_version = torchopt.__version__
    except ImportError:
        torchopt_version = None
    for name in ALGORITHMS:
        found.append((name, "metagrad per-task", ours, metagrad_peer(name, config, False),
                      "the reference"))
        found.append((name, "metagrad batched", ours, metagrad_peer(name, config, True),
                      "the meta-batch at once"))
    found.append(("maml", "higher", version("higher"),
                  higher_maml(config), "innerloop_ctx, SGD inner steps, copy_initial_weights=False"))
    settings_maml = "MetaSGD(lr=inner_lr), extract/recover_state_dict"
    settings_imaml = "custom_root(stationarity, argnums=1, solve_cg(maxiter=cg_steps, rtol=0, atol=0))"
    if torchopt_version is None:
        found.append(("maml", "torchopt", "", None, f"not installed ({INSTALL})"))
        found.append(("imaml", "torchopt", "", None, f"not installed ({INSTALL})"))
    else:
        found.append(("maml", "torchopt", torchopt_version, torchopt_maml(config), settings_maml))
        found.append(("imaml", "torchopt", torchopt_version, torchopt_imaml(config), settings_imaml))
    return found


def _negative_curvature_stop(config: PeersConfig, exact: Problem) -> str:
    """Where metagrad's CG stopped early on the compared task because I + H/lambda is not positive definite along
    its direction (metagrad stops there; a plain CG goes on), that, in words: the reason two iMAMLs differ."""
    from metagrad.algorithms import make_algorithm

    algorithm = make_algorithm("imaml", inner_steps=config.inner_steps, inner_lr=config.inner_lr, lam=config.lam,
                               cg_steps=config.cg_steps)
    record = algorithm.meta_gradient(exact.functional(), exact.theta, exact.tasks[0]).record
    if not record.negative_curvature:
        return ""
    return (f"the system is indefinite here: metagrad's CG stopped after {record.cg_iterations} of {config.cg_steps} "
            "steps on a direction of non-positive curvature, the peer's CG goes on through it")


def _relative(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def measure_peers(config: PeersConfig, say: Callable[[str], None] = print) -> pd.DataFrame:
    from metagrad.bench.measure.memory import SavedTensorPeak
    from metagrad.bench.measure.timing import interquartile_range, median_time

    device = torch.device(config.device)
    if device.type == "cuda":  # the same arithmetic for every peer: no TF32 in convolutions or matrix products
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    exact, timed = build(config, torch.float64), build(config, torch.float32)
    rows = []
    listed = peers(config)
    reference = {name: run(exact, exact.tasks[:1])[0] for name, peer, _, run, _ in listed if peer == "metagrad per-task"}
    stopped = _negative_curvature_stop(config, exact)
    for name, peer, version, run, settings in listed:
        if run is None:
            say(f"{peer} ({name}): {settings}")
            rows.append({"algorithm": name, "peer": peer, "version": "", "device": str(device), "settings": settings})
            continue
        # the reference row is the reference: computing it again would only show 0 again
        difference = 0.0 if peer == "metagrad per-task" else _relative(run(exact, exact.tasks[:1])[0], reference[name])
        one, spread = median_time(lambda run=run: run(timed, timed.tasks[:1]), device, config.repeats)
        saved_bytes = None
        try:  # torch.func's transforms (the batched engine) refuse saved-tensor hooks: that column stays empty
            with SavedTensorPeak() as saved:
                run(timed, timed.tasks[:1])
            saved_bytes = saved.peak_bytes
        except RuntimeError:
            pass
        batch_s, _ = median_time(lambda run=run: run(timed, timed.tasks), device, max(1, config.repeats // 3))
        rows.append({"algorithm": name, "peer": peer, "version": version, "device": str(device),
                     "dtype_checked": "float64", "max_rel_diff": difference, "time_per_task_s": one,
                     "time_iqr_s": interquartile_range(spread), "saved_bytes": saved_bytes,
                     "tasks_per_s": config.meta_batch / batch_s, "meta_batch": config.meta_batch,
                     "settings": settings,
                     "note": stopped if name == "imaml" and not peer.startswith("metagrad") and stopped else ""})
        say(f"{peer} ({name}): relative difference {difference:.2e}, {1000 * one:.1f} ms per task")
    return pd.DataFrame(rows, columns=COLUMNS)


def write_peers(config: PeersConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    from metagrad.bench.atomic import save_figure, write_csv, write_text

    frame = measure_peers(config, print if progress else (lambda line: None))
    write_csv(frame, out / "peers.csv")
    write_text(out / "config.json", pd.Series({k: getattr(config, k) for k in config.__dataclass_fields__}).to_json(
        indent=1) + "\n")
    save_figure(plot_peers(frame), out / "peers.png")
    return frame


def plot_peers(frame: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = frame.dropna(subset=["time_per_task_s"])
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [f"{row.algorithm}: {row.peer}" for row in shown.itertuples()]
    axes[0].barh(labels, 1000 * shown["time_per_task_s"], xerr=1000 * shown["time_iqr_s"] / 2, color="C0")
    axes[0].set_xlabel("time per task (ms, float32; bar: median, line: interquartile range)")
    axes[1].barh(labels, shown["max_rel_diff"].clip(lower=1e-17), color="C1")
    for y, value in enumerate(shown["max_rel_diff"]):
        if value == 0:  # bit for bit the reference: no bar to draw on a log axis
            axes[1].text(2e-17, y, "0 (bit for bit)", va="center", fontsize=8)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("relative difference from metagrad per-task (float64)")
    axes[1].set_yticks([])
    for axis in axes:
        axis.invert_yaxis()  # the listing's order, metagrad first
    figure.suptitle("The same meta-gradients through metagrad and its peers")
    figure.tight_layout()
    return figure


def ratios(frame: pd.DataFrame) -> dict[str, float]:
    """metagrad per-task's time per task over each peer's, per algorithm."""
    out: dict[str, Any] = {}
    for name, group in frame.dropna(subset=["time_per_task_s"]).groupby("algorithm"):
        ours = group[group["peer"] == "metagrad per-task"]["time_per_task_s"]
        if len(ours):
            for row in group.itertuples():
                if not row.peer.startswith("metagrad"):
                    out[f"{name}: metagrad / {row.peer}"] = float(ours.iloc[0]) / row.time_per_task_s
    return out
