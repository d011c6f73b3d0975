"""A function of fixed inputs and one varying input, traced once and run in two stages.

iMAML's conjugate gradients take several Hessian-vector products at the same phi, and a forward-over-reverse
product (``jvp`` of ``grad``) recomputes, every time, all that depends on phi and the data alone: the network's
forward and backward passes, and the parts of the derivative formulas that do not involve the direction (on the
presets' stacked network, 134 of a product's 303 operations: bench/diagnostics/staged_products.py).
``Staged`` traces the function once per signature of its inputs into a graph of ATen operations (``make_fx``),
splits the graph into the operations that depend on the fixed inputs only and the rest, and runs the first part
once per ``bind`` and the second per call: the same operations in the same order on the same values, so the
function's results to the last bit (tested), in fewer operations per call.

The trace bakes in what is not a tensor input (shapes, strides, devices, the network's structure, Python
numbers), so a ``Staged`` belongs to one function, and its traces are keyed by each input's shape, stride,
dtype and device. Under ``torch.compile`` the function runs as it is: dynamo traces it itself.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.fx as fx
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_leaves

Signature = tuple[tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.device], ...]


def _signature(tensors: tuple[Tensor, ...]) -> Signature:
    return tuple((tuple(t.shape), tuple(t.stride()), t.dtype, t.device) for t in tensors)


class Staged:
    """``function(*fixed, varying)`` run as ``bind(*fixed)(varying)``: what depends on ``fixed`` alone runs
    once, at the bound function's first call; each call runs only what depends on ``varying``. The function
    returns a tensor or a tuple of tensors; an output that depends on ``fixed`` alone is also there before any
    call (``Bound.fixed_output``), since the first stage computes it.

    ``traces`` counts the signatures traced so far (a bind with the shapes of an earlier one reuses its trace).
    """

    def __init__(self, function: Callable[..., Tensor | tuple[Tensor, ...]]):
        self.function = function
        self.traces = 0
        self._stages: dict[Signature, Stages] = {}

    def bind(self, *fixed: Tensor) -> Bound:
        return Bound(self, fixed)

    def _staged(self, key: Signature, fixed: tuple[Tensor, ...], varying: Tensor) -> Stages:
        if key not in self._stages:
            # traced outside any active dispatch mode (an operation counter or a host-read check sees the stages'
            # operations when they run, not the trace's), on fake tensors: no computation, and a value read from the
            # data (an ``item``) is an operation of the graph, not a constant baked into it. The inputs are fresh
            # tensors of the same layout: one passed twice (a bound phi as ``like``) would be traced as one value
            with _disable_current_modes():
                inputs = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device) for t in (*fixed, varying)]
                graph = make_fx(self.function, tracing_mode="fake")(*inputs)
            self._stages[key] = split_stages(graph, varying_inputs=1)
            self.traces += 1
        return self._stages[key]


class Bound:
    """A ``Staged`` function bound to its fixed inputs. It keeps the first stage's values per trace: a varying
    input laid out otherwise has a trace of its own, whose second stage must read its own first stage's values.
    Under ``torch.compile`` the function runs unstaged (dynamo traces it, and drops what is not used)."""

    def __init__(self, staged: Staged, fixed: tuple[Tensor, ...]):
        self.staged, self.fixed = staged, fixed
        self._saved: dict[Signature, tuple[Tensor, ...]] = {}

    def __call__(self, varying: Tensor) -> Tensor | tuple[Tensor, ...]:
        if torch.compiler.is_compiling():
            return self.staged.function(*self.fixed, varying)
        stages, values = self._first_stage(varying)
        return stages.second(*values, varying)

    def fixed_output(self, index: int, like: Tensor) -> Tensor:
        """Output ``index`` of the function's tuple, which depends on the fixed inputs alone, as the first stage
        computes it (running that stage now if no call has, as a call with a varying input of ``like``'s shape,
        strides, dtype and device would); ``ValueError`` for an output that depends on the varying input."""
        if torch.compiler.is_compiling():
            return self.staged.function(*self.fixed, like)[index]
        stages, values = self._first_stage(like)
        position = stages.fixed_outputs[index]
        if position is None:
            raise ValueError(f"output {index} of the staged function depends on its varying input")
        return values[position]

    def _first_stage(self, varying: Tensor) -> tuple[Stages, tuple[Tensor, ...]]:
        key = _signature((*self.fixed, varying))
        stages = self.staged._staged(key, self.fixed, varying)
        if key not in self._saved:  # the first call (or a varying input laid out otherwise, whose trace is another)
            self._saved[key] = stages.first(*self.fixed)
        return stages, self._saved[key]


class Stages(NamedTuple):
    """``split_stages``'s result. ``fixed_outputs``: for each output of the graph (flattened), its position among
    the first stage's values where it is one of them (it depends on the fixed inputs alone), else None."""
    first: fx.GraphModule
    second: fx.GraphModule
    fixed_outputs: tuple[int | None, ...]


def split_stages(graph: fx.GraphModule, varying_inputs: int) -> Stages:
    """``graph`` (placeholders: the fixed inputs, then ``varying_inputs`` varying ones) as two graphs: the first
    takes the fixed inputs and returns every value the rest needs; the second takes those values and the varying
    inputs and returns ``graph``'s output (``Stages.fixed_outputs`` says which outputs are first-stage values). An
    operation may write into a value of the second stage only: one that wrote into a value of the first would
    change it for every later call (refused)."""
    nodes = list(graph.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    varying = set(placeholders[len(placeholders) - varying_inputs:])
    for node in nodes:
        if node.op in ("call_function", "call_method", "call_module") and any(a in varying for a in node.all_input_nodes):
            varying.add(node)
    for node in nodes:
        written = _written_arguments(node)
        if any(not isinstance(a, fx.Node) or a not in varying for a in written):
            raise ValueError(f"cannot stage an operation that writes into a value of the first stage: {node.format_node()}")
    output = next(n for n in nodes if n.op == "output")
    live = _live(nodes, output)
    # the fixed values the second stage reads: computed by the first (constants stay attributes of both). Only
    # live readers count: a value read by dead operations alone (make_fx keeps them) would be computed and held
    boundary = [n for n in nodes if n in live and n not in varying and n.op not in ("output", "get_attr")
                and any(user in live and (user in varying or user is output) for user in n.users)]

    first, copies = fx.Graph(), {}
    for node in nodes:
        if node not in varying and node is not output:
            copies[node] = first.node_copy(node, copies.__getitem__)
    first.output(tuple(copies[n] for n in boundary))
    first.eliminate_dead_code()

    second, copies = fx.Graph(), {}
    for node in boundary:
        copies[node] = second.placeholder(f"fixed_{node.name}")
    for node in nodes:
        if node.op == "get_attr" and any(user in varying and user in live for user in node.users):
            copies[node] = second.node_copy(node)
        elif node in varying and node.op == "placeholder":
            copies[node] = second.placeholder(node.name)
        elif node in varying and node in live or node is output:
            copies[node] = second.node_copy(node, copies.__getitem__)
    second.eliminate_dead_code()
    positions = {node: i for i, node in enumerate(boundary)}
    fixed_outputs = tuple(positions.get(leaf) if isinstance(leaf, fx.Node) else None for leaf in tree_leaves(output.args[0]))
    return Stages(fx.GraphModule(graph, first), fx.GraphModule(graph, second), fixed_outputs)


def _live(nodes: list[fx.Node], output: fx.Node) -> set[fx.Node]:
    """The nodes the output depends on, and those with side effects (``Node.is_impure``) and what they read."""
    live: set[fx.Node] = set()
    pending = [output, *(n for n in nodes if n.op == "call_function" and n.is_impure())]
    while pending:
        node = pending.pop()
        if node not in live:
            live.add(node)
            pending.extend(node.all_input_nodes)
    return live


def _written_arguments(node: fx.Node) -> list[object]:
    """The arguments an operation writes into (an in-place or ``out=`` operation's), by its schema."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return []
    schema = node.target._schema
    if not schema.is_mutable:
        return []
    written = []
    for position, argument in enumerate(schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            if argument.kwarg_only or position >= len(node.args):
                written.append(node.kwargs.get(argument.name))
            else:
                written.append(node.args[position])
    return written
