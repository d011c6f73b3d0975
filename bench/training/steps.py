"""One outer iteration of meta-training, by either engine: meta-gradients, the Adam step, the diagnostics.

``PerTaskStep`` is the reference: ``meta_gradient`` task after task. ``BatchedStep`` runs the whole
meta-batch through ``batched_meta_gradient`` (every task at once: the stacked network, or ``vmap``) on fixed
input buffers, so that on CUDA the iteration can be captured once as a CUDA graph and replayed (``graph=True``):
eagerly, on these small networks, it is launch-bound. Both add their diagnostics to a ``Window`` of device tensors;
nothing is read back to the host inside an iteration.

Under several processes (``bench.training.distributed``) each step is handed this process's share of the
meta-batch: it sums its tasks' meta-gradients, the sums are added over the processes (one
``all_reduce``), and the total over the global meta-batch size is the mean every process steps on.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from metagrad.algorithms import FunctionalModel, TaskBatch
from metagrad.algorithms.inner_solvers import prepare_for_compile
from metagrad.algorithms.registry import batched_engine, check_returned, records_as_diagnostics
from metagrad.bench.data.device_tasks import DeviceTasks
from metagrad.bench.training.distributed import ProcessGroup

# Sums over the tasks since the last logged step, one slot each, kept on the device (see ``Window``).
WINDOW = ("tasks", "query_loss", "query_accuracy", "cg_negative_curvature", "cg_iterations", "cg_residual",
          "cg_residual_tasks", "inner_negative_curvature")
# Eager iterations before a CUDA graph is captured: they allocate Adam's state and warm up the kernels
# (and are real iterations of the run).
GRAPH_WARMUP = 3
# The other way to take the launches out of an iteration (``compile=True``): the iteration through
# torch.compile, with inductor's own CUDA graphs on CUDA (mode "reduce-overhead"), in two parts: the
# meta-gradients with fullgraph (a graph break is an error rather than a silent return to eager Python)
# and the optimizer's step, which breaks its graph on purpose. Tests run it with the "eager" backend too
# (dynamo's tracing alone), as inductor takes tens of seconds to minutes per algorithm on this CPU. Static: a second
# configuration compiled in one process (metagrad throughput's rows) would otherwise turn the step sizes into
# symbolic floats, which inductor's double backward cannot take ("x must be Tensor or scalar, got SymFloat").
COMPILE_OPTIONS: dict = {"mode": "reduce-overhead", "fullgraph": True, "dynamic": False}


class Window:
    """Sums of the training diagnostics since the last logged step, and the run's work totals, as device
    tensors: adding a meta-batch costs no host synchronization; ``read`` is the one per logged step."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(WINDOW), dtype=torch.float64, device=device)
        self.work = torch.zeros(2, dtype=torch.long, device=device)  # grad_evals, hvp_evals since the start

    def add(self, diagnostics: dict[str, Tensor]) -> None:
        residual = diagnostics["cg_residual"].double()
        has_residual = ~torch.isnan(residual)
        self.sums += torch.stack([
            torch.full((), float(residual.numel()), dtype=torch.float64, device=residual.device),
            diagnostics["query_loss"].double().sum(), diagnostics["query_accuracy"].double().sum(),
            diagnostics["negative_curvature"].double().sum(), diagnostics["cg_iterations"].double().sum(),
            torch.where(has_residual, residual, torch.zeros_like(residual)).sum(), has_residual.double().sum(),
            diagnostics["inner_negative_curvature"].double().sum(),
        ])
        self.work += torch.stack([diagnostics["grad_evals"].sum(), diagnostics["hvp_evals"].sum()])

    def collect(self, group: ProcessGroup) -> tuple[dict[str, float], dict[str, int]]:
        """``read`` over every process's tasks: the sums are added over the processes, every process reads
        them, and then only rank 0 keeps them (the others restart from zero), so that the next collection,
        and rank 0's checkpoint, count each task once."""
        if not group.active:
            return self.read()
        group.sum_(self.sums)
        group.sum_(self.work)
        result = self.read()
        if not group.is_main:
            self.sums.zero_()
            self.work.zero_()
        return result

    def read(self) -> tuple[dict[str, float], dict[str, int]]:
        """Means over the window's tasks, and the work totals (one host read)."""
        sums = dict(zip(WINDOW, self.sums.tolist()))
        grad_evals, hvp_evals = self.work.tolist()
        tasks = sums["tasks"] or float("nan")
        residual_tasks = sums["cg_residual_tasks"]
        means = {
            "train_query_loss": sums["query_loss"] / tasks, "train_query_accuracy": sums["query_accuracy"] / tasks,
            "cg_negative_curvature_fraction": sums["cg_negative_curvature"] / tasks,
            "cg_iterations_mean": sums["cg_iterations"] / tasks,
            "cg_residual_mean": sums["cg_residual"] / residual_tasks if residual_tasks else float("nan"),
            "inner_negative_curvature_fraction": sums["inner_negative_curvature"] / tasks,
        }
        return means, {"grad_evals": grad_evals, "hvp_evals": hvp_evals}

    def clear(self) -> None:
        self.sums.zero_()

    def state(self) -> dict[str, Tensor]:
        """A copy on the CPU, for checkpoints."""
        return {"sums": self.sums.cpu().clone(), "work": self.work.cpu().clone()}

    def load(self, state: dict[str, Tensor]) -> None:
        self.sums.copy_(state["sums"])
        self.work.copy_(state["work"])


def drawn(source: DeviceTasks | None, batch: TaskBatch | None) -> TaskBatch | None:
    """The batch a step is handed, or ``None`` when it draws its own from ``source``: one of the two."""
    if (source is None) == (batch is None):
        raise ValueError("a step is handed a batch, or draws one from its device sampler: exactly one of the two")
    return batch


class PerTaskStep:
    """The reference engine: each task's ``meta_gradient`` in turn, their mean, one Adam step. With a device
    sampler (``source``) each call draws the next meta-batch from it instead of being handed one."""

    def __init__(self, algorithm, model: FunctionalModel, theta: Tensor, optimizer: torch.optim.Optimizer,
                 window: Window, group: ProcessGroup | None = None, meta_batch: int | None = None,
                 source: DeviceTasks | None = None):
        self.algorithm, self.model, self.theta, self.optimizer, self.window = algorithm, model, theta, optimizer, window
        self.batched_meta_gradient = batched_engine(algorithm)[0]
        self.group, self.meta_batch, self.source = group or ProcessGroup(), meta_batch, source

    def __call__(self, batch: TaskBatch | None = None) -> None:
        batch = self.source.next() if drawn(self.source, batch) is None else batch
        total, records = torch.zeros_like(self.theta), []
        for task in batch.tasks():
            result = self.algorithm.meta_gradient(self.model, self.theta, task.to(self.theta.device))
            check_returned(self.algorithm, "meta_gradient", result, self.theta)
            total += result.gradient
            records.append(result.record)
        self.optimizer.zero_grad()
        self.group.sum_(total)
        self.theta.grad = total / (self.meta_batch if self.group.active else batch.size)
        self.optimizer.step()
        self.window.add(records_as_diagnostics(records, self.theta.device))


class BatchedStep:
    """The batched engine on fixed input buffers; with ``graph`` (CUDA only) captured once and replayed.

    Each call copies the sampled batch into the buffers, then runs (or replays) meta-gradients, the Adam
    step and the window's sums. With a device sampler (``source``) the draw of the meta-batch is part of
    the iteration, and of its graph: a replay then is the whole iteration, with no host work at all.
    With ``graph``, the first ``GRAPH_WARMUP`` calls run eagerly on a side stream (they are real
    iterations), the next captures the iteration and replays it, and every later call only replays. The
    optimizer must be built with ``capturable=True`` for that.
    """

    def __init__(self, algorithm, model: FunctionalModel, theta: Tensor, optimizer: torch.optim.Optimizer,
                 window: Window, graph: bool = False, group: ProcessGroup | None = None, meta_batch: int | None = None,
                 source: DeviceTasks | None = None, compile: bool = False):
        if graph and theta.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        if graph and compile:
            raise ValueError("a CUDA graph and torch.compile are two ways to capture the iteration: choose one")
        self.algorithm, self.model, self.theta, self.optimizer, self.window = algorithm, model, theta, optimizer, window
        self.batched_meta_gradient = batched_engine(algorithm)[0]
        self.group, self.meta_batch, self.source = group or ProcessGroup(), meta_batch, source
        if (graph or compile) and self.group.active:
            raise ValueError("CUDA graphs and torch.compile under several processes are not supported yet")
        self.graph, self.compile = graph, compile
        self.compiled = None
        self.inputs: TaskBatch | None = None
        self.calls = 0
        self.cuda_graph: torch.cuda.CUDAGraph | None = None

    def _meta_gradients(self) -> None:
        """The iteration up to the optimizer's step: the draw, the meta-gradients into ``theta.grad``, the
        window's sums."""
        if self.source is not None:
            self.inputs = self.source.next()
        result = self.batched_meta_gradient(self.model, self.theta, self.inputs)
        check_returned(self.algorithm, "batched_meta_gradient", result, self.theta, self.inputs.size)
        if self.group.active:
            total = result.gradients.sum(dim=0)
            self.group.sum_(total)
            self.theta.grad.copy_(total / self.meta_batch)
        else:
            self.theta.grad.copy_(result.gradient)  # in place: the graph's buffers stay the same tensors
        self.window.add(result.diagnostics)

    def _iteration(self) -> None:
        if self.theta.grad is None:
            self.theta.grad = torch.zeros_like(self.theta)
        self._meta_gradients()
        self.optimizer.step()

    def _compiled(self) -> tuple:
        """The iteration's two compiled parts; made once, after the first (eager) call."""
        # tensors that live across iterations keep their addresses: inductor's CUDA graphs then read and
        # update them in place instead of copying them in (the device sampler's 69 MB of images)
        lasting = [self.theta, self.theta.grad, self.window.sums, self.window.work,
                   *(t for state in self.optimizer.state.values() for t in state.values() if isinstance(t, Tensor))]
        if self.source is not None:
            lasting += [self.source.images, self.source.iteration]
        for tensor in lasting:
            torch._dynamo.mark_static_address(tensor)
        # the optimizer's step breaks a graph on purpose (torch.optim's _use_grad): compiled apart
        prepare_for_compile()
        _quiet_compiler()
        self.compiled = (torch.compile(self._meta_gradients, **COMPILE_OPTIONS),
                         torch.compile(self.optimizer.step, **{**COMPILE_OPTIONS, "fullgraph": False}))
        return self.compiled

    def _load(self, batch: TaskBatch) -> None:
        device = self.theta.device
        if self.inputs is None:
            self.inputs = batch.to(device)
            return
        for buffer, fresh in ((self.inputs.support.x, batch.support.x), (self.inputs.support.y, batch.support.y),
                              (self.inputs.query.x, batch.query.x), (self.inputs.query.y, batch.query.y)):
            if device.type == "cuda" and fresh.device.type == "cpu":
                fresh = fresh.pin_memory()  # an asynchronous copy: the host does not wait for the GPU
            buffer.copy_(fresh, non_blocking=True)

    def __call__(self, batch: TaskBatch | None = None) -> None:
        if drawn(self.source, batch) is not None:
            self._load(batch)
        self.calls += 1
        if self.compile and self.calls > 1:  # eager first: Adam's state exists, at fixed addresses, when compiled
            meta_gradients, optimizer_step = self.compiled or self._compiled()
            meta_gradients()
            optimizer_step()
        elif not self.graph:
            self._iteration()
        elif self.calls <= GRAPH_WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._iteration()
            torch.cuda.current_stream().wait_stream(side)
        else:
            if self.cuda_graph is None:
                self.cuda_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.cuda_graph):  # records, runs nothing
                    self._iteration()
            self.cuda_graph.replay()


def training_step(engine: str, algorithm, model: FunctionalModel, theta: Tensor, optimizer: torch.optim.Optimizer,
                  window: Window, graph: bool = False, group: ProcessGroup | None = None,
                  meta_batch: int | None = None, source: DeviceTasks | None = None,
                  compile: bool = False) -> PerTaskStep | BatchedStep:
    """The engine's step; under several processes, ``meta_batch`` is the global size the shares add up to.
    With ``source`` the step draws each meta-batch itself (called with no batch); ``compile``: the batched
    iteration through torch.compile."""
    if engine == "batched":
        return BatchedStep(algorithm, model, theta, optimizer, window, graph, group, meta_batch, source, compile)
    if graph or compile:
        raise ValueError("CUDA graphs and torch.compile need the batched engine")
    return PerTaskStep(algorithm, model, theta, optimizer, window, group, meta_batch, source)


# torch's own notes on the terminal when --compile compiles, nothing a user of it can act on: (logger, how the
# message starts)
COMPILER_NOTES = (("torch._dynamo.variables.ctx_manager", "Profiler record function"),  # torch.optim's, around a step
                  ("torch.utils.cpp_extension", "No CUDA runtime is found"))  # inductor's C++ build without CUDA


class _Silenced(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def _quiet_compiler() -> None:
    for name, start in COMPILER_NOTES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Silenced) and f.start == start for f in logger.filters):
            logger.addFilter(_Silenced(start))
