"""Meta-parameters an algorithm learns beside the network's initialization: Meta-SGD's step sizes, MAML++'s per-layer
per-step step sizes, iMAML's proximal weight lambda.

Everything metagrad carries is one flat vector, theta: the network's parameters, then each group the algorithm
declares with ``meta_parameters(model)``, in order. So the trainer's optimizer and its state, checkpoints and exact
resume, torchrun's all-reduce, both engines and ``metagrad eval`` carry the groups without a case of their own: an
algorithm's ``meta_gradient`` returns the gradient of the whole vector, its ``adapt`` reads the learned values from
it and returns the task parameters phi, which are the network's alone. An algorithm without the method learns the
network's initialization alone, and its vector is the network's, as before.

A group stores its values in a parametrization, stated: ``identity`` (the value itself, of any sign: Meta-SGD's and
MAML++'s step sizes, as Li et al. and Antoniou et al. learn them) or ``log`` (the value is the exponential of what is
stored: a proximal weight, which must stay positive; Adam then moves it by a factor per step rather than by an
amount, which suits a weight that may span orders of magnitude).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metagrad.errors import PluginError

from .functional import FunctionalModel

PARAMETRIZATIONS = ("identity", "log")


@dataclass(frozen=True)
class MetaParameterGroup:
    """One named group of an algorithm's own meta-parameters.

    ``initial``: the values (not their parametrization), flat; ``labels``: what consecutive runs of its elements
    belong to, as (label, count) pairs covering it in order (a layer's name; "step 2: features.0.weight"), how the
    run folder and the report name the learned values."""

    name: str
    initial: Tensor
    parametrization: str = "identity"
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.parametrization not in PARAMETRIZATIONS:
            raise PluginError(f"meta-parameter group {self.name!r}: parametrization must be one of "
                              f"{', '.join(PARAMETRIZATIONS)}, got {self.parametrization!r}")
        if self.labels and sum(count for _, count in self.labels) != self.initial.numel():
            raise PluginError(f"meta-parameter group {self.name!r}: its labels cover "
                              f"{sum(count for _, count in self.labels)} elements, its values {self.initial.numel()}")

    @property
    def size(self) -> int:
        return self.initial.numel()

    def stored(self) -> Tensor:
        """What the flat vector holds for the initial values."""
        flat = self.initial.reshape(-1)
        return flat.log() if self.parametrization == "log" else flat

    def values(self, stored: Tensor) -> Tensor:
        """The values from what the flat vector holds (differentiable)."""
        return stored.exp() if self.parametrization == "log" else stored


def groups_of(algorithm: Any, model: FunctionalModel) -> tuple[MetaParameterGroup, ...]:
    """The algorithm's own meta-parameter groups on this network (none for an algorithm without them)."""
    declare = getattr(algorithm, "meta_parameters", None)
    return tuple(declare(model)) if declare is not None else ()


def initial_meta_parameters(algorithm: Any, model: FunctionalModel, network: Tensor | None = None) -> Tensor:
    """The flat vector training starts from: the network's parameters (``network``, else the model's own), then each
    group's stored initial values."""
    theta = model.flat_parameters() if network is None else network
    groups = groups_of(algorithm, model)
    if not groups:
        return theta
    return torch.cat([theta, *(group.stored().to(dtype=theta.dtype, device=theta.device) for group in groups)])


def network_part(model: FunctionalModel, theta: Tensor) -> Tensor:
    """The network's parameters in the flat vector (a view: gradients flow)."""
    return theta[..., :model.num_parameters]


def group_slices(algorithm: Any, model: FunctionalModel) -> dict[str, slice]:
    """Where each of the algorithm's groups lies in the flat vector, by name, in order after the network's part."""
    slices, start = {}, model.num_parameters
    for group in groups_of(algorithm, model):
        slices[group.name] = slice(start, start + group.size)
        start += group.size
    return slices


def split_meta_parameters(algorithm: Any, model: FunctionalModel, theta: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The network's parameters and each group's values (not their parametrization), as views of ``theta``, so that
    what is computed from them is differentiable with respect to it."""
    groups = groups_of(algorithm, model)
    expected = model.num_parameters + sum(group.size for group in groups)
    if theta.shape[-1] != expected:
        raise PluginError(f"{type(algorithm).__qualname__}: theta holds {theta.shape[-1]} values; the network and "
                          f"its meta-parameter groups ({', '.join(g.name for g in groups) or 'none'}) hold {expected}")
    slices = group_slices(algorithm, model)
    values = {group.name: group.values(theta[..., slices[group.name]]) for group in groups}
    return network_part(model, theta), values


def stored_pullback(algorithm: Any, model: FunctionalModel, theta: Tensor,
                    spread: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """For an algorithm with one group: a cotangent of ``spread(values)`` (what the algorithm makes of the group's
    values: every parameter's lambda, every inner step's step sizes) -> the cotangent of what the flat vector stores
    for the group, through the parametrization and the sharing; a pure function (``torch.func.vjp``), which the batched
    engines map over the tasks."""
    (group,) = groups_of(algorithm, model)
    stored = theta.detach()[group_slices(algorithm, model)[group.name]]
    _, pullback = torch.func.vjp(lambda s: spread(group.values(s)), stored)
    return lambda cotangent: pullback(cotangent)[0]


def learned_values(algorithm: Any, model: FunctionalModel, theta: Tensor) -> dict[str, list[dict[str, Any]]]:
    """Each group's values by label, for the run folder: [{"label", "mean", "min", "max", "count"}, ...] (a label
    covering one element gives its value three times)."""
    out = {}
    _, values = split_meta_parameters(algorithm, model, theta.detach())
    for group in groups_of(algorithm, model):
        flat = values[group.name].double().cpu()
        rows, start = [], 0
        for label, count in group.labels or ((group.name, group.size),):
            part = flat[start:start + count]
            rows.append({"label": label, "mean": part.mean().item(), "min": part.min().item(),
                         "max": part.max().item(), "count": count})
            start += count
        out[group.name] = rows
    return out


def per_layer(model: FunctionalModel, values: Tensor) -> Tensor:
    """One value per parameter tensor ("layer", as MAML++ names them), spread over its elements: a P-vector (each
    value expanded and the pieces joined: ``repeat_interleave`` with a tensor of counts would read its size back from
    the device)."""
    return torch.cat([values[..., i:i + 1].expand(*values.shape[:-1], count) for i, count in enumerate(model.numels)],
                     dim=-1)


def layer_labels(model: FunctionalModel, prefix: str = "") -> tuple[tuple[str, int], ...]:
    """(``prefix`` + name, its element count) for every parameter tensor: a per-parameter group's labels."""
    return tuple((f"{prefix}{name}", count) for name, count in zip(model.names, model.numels))
