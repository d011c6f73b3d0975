"""The one list of algorithms: their names, labels, order and colours, where each came from, which engines it has.

An algorithm joins with ``@register`` on its class (a frozen dataclass of hyperparameters with ``name``, ``label`` and
the per-task protocol, ``meta_gradient`` and ``adapt``), or, from a package installed beside metagrad, through the
entry-point group ``metagrad.algorithms`` (``anil = "metagrad_anil:ANIL"``), loaded once, the first time the registry
is read. A plug-in that fails to load is one line on stderr naming it, and left out. An algorithm without a batched
engine of its own gets one that runs its per-task engine over the tasks (the same numbers, the diagnostics in the
batched form), so that every harness and both engines take it; ``engine auto`` then picks the per-task one.
``METAGRAD_DISABLE_PLUGIN_AUTOLOAD=1`` loads no plug-in (``metagrad.plugins``).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from metagrad.errors import PluginError, require
from metagrad.plugins import load_entry_points

from .batched import BatchedMetaGradient
from .functional import FunctionalModel, TaskBatch
from .record import diagnostic_defaults

PLUGIN_GROUP = "metagrad.algorithms"
REQUIRED = ("name", "label", "meta_gradient", "adapt")  # the protocol; everything else is optional
# colours for algorithms that name none: matplotlib's C7 to C9 and tab20b's stronger tones, none of the built-ins' C0 to C6
PALETTE = ("#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252",
           "#bd9e39", "#ad494a", "#a55194")


@dataclass(frozen=True)
class Entry:
    """A registered algorithm: its class, where it came from, its place in tables and sweeps, whether it has a batched
    engine of its own (and, where an inherited one is not its own, why)."""

    cls: type
    origin: str
    batched: bool
    order: int
    note: str = ""


ALGORITHMS: dict[str, type] = {}  # name -> class: the one list of algorithms, in the order they registered
ENTRIES: dict[str, Entry] = {}
_plugins_loaded = False
# Each batched method, and the per-task methods it computes again in its own form: a class that overrides one of them
# below the class that wrote the batched method has a batched engine that does not compute what it wrote.
# (``_inner_loop``: Meta-SGD's unrolled steps, which its batched engine writes again on the stacked network.)
MIRRORS = {"batched_meta_gradient": ("meta_gradient", "inner_solution", "functional_inner_solution", "_inner_loop"),
           "batched_adapt": ("adapt", "inner_solution", "functional_inner_solution", "_inner_loop")}


def _owner(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def batched_engine_of(cls: type) -> tuple[bool, str]:
    """Whether ``cls`` has a batched engine of its own, and where it inherits one that is not, why: the batched
    methods' class is an ancestor of the class that overrides a per-task method they mirror (``MIRRORS``)."""
    for batched, mirrored in MIRRORS.items():
        owner = _owner(cls, batched)
        if owner is None:
            return False, ""
        for name in mirrored:
            overrider = _owner(cls, name)
            if overrider is not None and overrider is not owner and issubclass(overrider, owner):
                return False, (f"{cls.__qualname__}.{name} overrides what {owner.__qualname__}.{batched} computes "
                               "again, so the inherited batched engine is not this class's")
    return True, ""


def check_parts(cls: type) -> None:
    """What an algorithm class declares, checked as it registers, each problem one message naming the part and what
    to write (``protocol.MetaGradientAlgorithm``, ``protocol.OptionalParts``)."""
    name = cls.__qualname__
    require(isinstance(cls.name, str) and cls.name and " " not in cls.name,
            f"{name}.name must be one word (the registry's key), got {cls.name!r}")
    require(isinstance(cls.label, str) and bool(cls.label), f"{name}.label must be a non-empty string")
    for method in ("meta_gradient", "adapt"):
        require(callable(getattr(cls, method)), f"{name}.{method} must be a method")
    require(dataclasses.is_dataclass(cls), f"{name} is not a dataclass: decorate it with @dataclass(frozen=True), "
            "its fields being its hyperparameters")
    fields_of = {f.name for f in fields(cls)}
    loose = [attribute for attribute, kind in cls.__dict__.get("__annotations__", {}).items()
             if "ClassVar" not in str(kind) and attribute not in fields_of]
    require(not loose, f"{name}.{', '.join(loose)} {'is' if len(loose) == 1 else 'are'} not a hyperparameter: "
            f"decorate {name} itself with @dataclass(frozen=True) (a subclass needs its own), or annotate "
            "ClassVar for a class constant")
    for part, kind, what in (("order", int, "an int"), ("color", str, "a matplotlib colour string"),
                             ("exact_when", dict, "a dict of hyperparameters"),
                             ("cpu_batched_max_step_images", int, "an int")):
        value = getattr(cls, part, None)  # a property (iMAML's step-image limit depends on its solver) is read later
        require(value is None or isinstance(value, property) or (isinstance(value, kind) and not isinstance(value, bool)),
                f"{name}.{part} must be {what}, got {value!r}")
    for part in ("meta_objective", "preset_hyperparameters", "steps_and_batch", "meta_solve", "meta_parameters"):
        require(not hasattr(cls, part) or callable(getattr(cls, part)), f"{name}.{part} must be a method")


def register(cls: type | None = None, *, origin: str = "metagrad") -> Any:
    """Add an algorithm class to the registry (a decorator: ``@register``, or ``@register(origin=...)``). It needs
    ``name``, ``label``, ``meta_gradient`` and ``adapt`` (``protocol.REQUIRED``); the optional parts
    (``protocol.MetaGradientAlgorithm``) are read where present. The class itself is not changed: without a batched
    engine of its own (``batched_engine_of``), ``batched_meta_gradient`` and ``batched_adapt`` below run its per-task
    engine over the tasks; without ``order`` it comes after the algorithms before it."""
    if cls is None:
        return lambda c: register(c, origin=origin)
    require(isinstance(cls, type), f"register takes an algorithm class, got {type(cls).__name__} {cls!r}")
    missing = [attribute for attribute in REQUIRED if not hasattr(cls, attribute)]
    require(not missing, f"{cls.__qualname__} lacks {', '.join(missing)}: an algorithm has a name, a label, "
            "meta_gradient and adapt")
    check_parts(cls)
    known = ENTRIES.get(cls.name)
    require(known is None or known.cls is cls, f"the algorithm name {cls.name!r} is taken by {known and known.origin}")
    batched, note = batched_engine_of(cls)
    ALGORITHMS[cls.name] = cls
    ENTRIES[cls.name] = Entry(cls, origin, batched, getattr(cls, "order", 100 + len(ALGORITHMS)), note)
    return cls


def load_plugins() -> None:
    """Register every algorithm of the entry-point group ``metagrad.algorithms``, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True

    def accept(entry: importlib.metadata.EntryPoint, cls: type) -> None:
        origin = f"{entry.dist.name if entry.dist else 'a plug-in'} ({entry.value})"
        known = ENTRIES.get(getattr(cls, "name", None))
        if known is not None and known.cls is cls:  # it registered itself on import, with @register
            ENTRIES[cls.name] = replace(known, origin=origin)
        else:
            register(cls, origin=origin)

    load_entry_points(PLUGIN_GROUP, "algorithm", accept)


def entries() -> dict[str, Entry]:
    load_plugins()
    return {name: ENTRIES[name] for name in algorithm_names()}


def algorithm_names() -> tuple[str, ...]:
    """The registered algorithms' names in their display order."""
    load_plugins()
    return tuple(sorted(ALGORITHMS, key=lambda name: ENTRIES[name].order))


def algorithm_label(name: str) -> str:
    """The registered algorithm's label (``name`` itself for anything unregistered)."""
    load_plugins()
    return ALGORITHMS[name].label if name in ALGORITHMS else name


def algorithm_color(name: str) -> str:
    """The algorithm's ``color`` (a matplotlib colour) where it names one, else one of ``PALETTE`` chosen by its
    name's hash: the same colour in every figure and on every machine, for algorithms the suite has never seen too."""
    load_plugins()
    color = getattr(ALGORITHMS.get(name), "color", None)
    return color or PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def has_batched_form(name: str) -> bool:
    """Whether the algorithm has a batched engine of its own (else its batched engine runs it task by task)."""
    return entries()[name].batched


def hyperparameter_defaults(name: str) -> dict[str, Any]:
    """The registered algorithm's hyperparameters and their defaults: what a harness may pass it."""
    load_plugins()
    require(name in ALGORITHMS, f"unknown algorithm {name!r}; choose from {', '.join(sorted(ALGORITHMS))}")
    return {f.name: f.default for f in fields(ALGORITHMS[name])}


def make_algorithm(name: str, **hyperparameters: Any):
    """The registered algorithm ``name`` with the given hyperparameters (others at their defaults)."""
    defaults = hyperparameter_defaults(name)
    unknown = sorted(set(hyperparameters) - set(defaults))
    require(not unknown, f"{name} has no hyperparameter {', '.join(unknown)}; it takes {', '.join(sorted(defaults))}")
    for key, value in hyperparameters.items():  # the type of each value, before the dataclass compares it with numbers
        default = defaults[key]
        if isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        else:
            ok, kind = isinstance(value, type(default)), type(default).__name__
        require(ok, f"{name}: {key} must be {kind}, got {value!r}")
        require(_in_domain(value, key, ALGORITHMS[name]), f"{name}: {key} must be {_domain(key, ALGORITHMS[name])}, "
                f"got {value!r}")
    return ALGORITHMS[name](**hyperparameters)


LARGEST_INTEGER = 2**63 - 1  # torch's generators and tensors hold 64-bit integers
MOST_STEPS = 100_000  # a count of steps (a field named *_steps) past this would run for days, not finish


def _limit(key: str, cls: type) -> float | None:
    field = next((f for f in fields(cls) if f.name == key), None)
    declared = field.metadata.get("at_most") if field is not None else None
    return declared if declared is not None else (MOST_STEPS if key.endswith("_steps") else None)


def _in_domain(value: Any, key: str, cls: type) -> bool:
    """A number finite and within 64 bits, and at most the field's ``at_most`` (metadata), which a field counting
    steps has by default: the domain of every hyperparameter, before the class's own checks."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    limit = _limit(key, cls)
    fits = math.isfinite(value) if isinstance(value, float) else abs(value) <= LARGEST_INTEGER
    return fits and (limit is None or value <= limit)


def _domain(key: str, cls: type) -> str:
    limit = _limit(key, cls)
    return f"a finite number of at most {limit:g}" if limit is not None else "a finite number (integers within 64 bits)"


def records_as_diagnostics(records: list, device: torch.device) -> dict[str, Tensor]:
    """Per-task ``MetaGradientRecord``s in the batched engine's form: one tensor [tasks] per field."""
    dtypes = {bool: torch.bool, int: torch.long, float: torch.float64}
    out = {}
    for name, default in diagnostic_defaults().items():
        values = [getattr(record, name) for record in records]
        out[name] = torch.tensor([default if value is None else value for value in values],
                                 dtype=dtypes[type(default)], device=device)
    return out


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    return f"{type(value).__name__} {value!r:.60}"


def check_returned(algorithm: Any, method: str, value: Any, theta: Tensor, tasks: int | None = None) -> Tensor:
    """``value``, what ``algorithm.method`` returned, checked at the boundary: a tensor laid out as ``theta`` (its
    dtype, device and shape, with a leading task dimension for the batched methods, ``tasks`` not None), or an object
    whose ``gradient`` (``gradients``, batched) is. A meta-gradient is laid out as the whole meta-parameter vector,
    adapted parameters as the network's part of it: pass that part as ``theta`` for ``adapt``. A ``PluginError``
    naming the class, the method and what it must return otherwise, instead of a shape error deep in the trainer.
    Metadata only: no host sync, nothing inside a captured graph."""
    cls = type(algorithm).__qualname__
    entry = ENTRIES.get(getattr(algorithm, "name", ""))
    origin = f" (from {entry.origin})" if entry is not None and entry.origin != "metagrad" else ""
    tensor = value
    part = ""
    if method.endswith("meta_gradient"):
        part = ".gradients" if tasks is not None else ".gradient"
        tensor = getattr(value, part[1:], value)
    shape = (tasks, *theta.shape) if tasks is not None else tuple(theta.shape)
    if not (isinstance(tensor, Tensor) and tuple(tensor.shape) == shape and tensor.dtype == theta.dtype
            and tensor.device == theta.device):
        raise PluginError(f"{cls}.{method}{origin} returned {_described(tensor)} as{part or ' its result'}; it must "
                          f"be a {theta.dtype} tensor of shape {shape} on {theta.device}, "
                          f"{'one row per task, ' if tasks is not None else ''}laid out as theta")
    return value


def batched_engine(algorithm: Any) -> tuple[Callable[..., BatchedMetaGradient], Callable[..., Tensor]]:
    """The algorithm's batched engine as two functions of (model, theta, batch), its meta-gradients and its adapted
    phi: its own methods where it has a batched engine of its own (``batched_engine_of``), else its per-task ones run
    for each task in turn. Chosen once, so that a captured or compiled iteration calls the method itself."""
    if batched_engine_of(type(algorithm))[0]:
        return algorithm.batched_meta_gradient, algorithm.batched_adapt
    return (lambda model, theta, batch: meta_gradients_task_by_task(algorithm, model, theta, batch),
            lambda model, theta, batch: adapt_task_by_task(algorithm, model, theta, batch))


def batched_meta_gradient(algorithm: Any, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> BatchedMetaGradient:
    """Every task's meta-gradient at once, through the algorithm's batched engine (``batched_engine``)."""
    return batched_engine(algorithm)[0](model, theta, batch)


def batched_adapt(algorithm: Any, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> Tensor:
    """``adapt`` for every task of the batch, phi [tasks, parameters], through the algorithm's batched engine."""
    return batched_engine(algorithm)[1](model, theta, batch)


def meta_gradients_task_by_task(self, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> BatchedMetaGradient:
    """The batched engine of an algorithm without one of its own: its ``meta_gradient`` for each task in turn."""
    results = [self.meta_gradient(model, theta, task) for task in batch.tasks()]
    adapted = [result.adapted for result in results]
    return BatchedMetaGradient(torch.stack([result.gradient for result in results]),
                               records_as_diagnostics([result.record for result in results], theta.device),
                               None if any(phi is None for phi in adapted) else torch.stack(adapted))


def adapt_task_by_task(self, model: FunctionalModel, theta: Tensor, batch: TaskBatch) -> Tensor:
    """``batched_adapt`` of an algorithm without one of its own: its ``adapt`` for each task in turn."""
    return torch.stack([self.adapt(model, theta, task.support) for task in batch.tasks()])
