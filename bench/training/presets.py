"""Presets: every row of the paper's Tables 2 and 3, and every registered algorithm's own, for the paper's settings.

Each algorithm names its presets for a setting through one hook, ``presets(dataset, ways, shots)`` (variant name ->
its hyperparameters, and the training settings where they differ from the defaults below), or its short form
``preset_hyperparameters`` (one preset, named after the algorithm): the built-in algorithms and the plug-ins alike.
Where each number comes from is said beside it (Finn et al.'s MAML in ``algorithms/maml.py``, Nichol et al.'s Reptile
in ``algorithms/reptile.py``, the paper's iMAML in ``algorithms/imaml.py``). Every preset trains with the setting's
meta-batch (Finn et al.'s 32 / 16 / 4), Adam at 1e-3, 15 query images a class, 60,000 iterations, validation and a
checkpoint every 500, unless its own settings say otherwise.
"""
from __future__ import annotations

from typing import Any

from metagrad.algorithms.registry import algorithm_color, algorithm_label, entries
from metagrad.errors import ConfigError, require

SETTINGS = {  # name: (dataset, ways, shots, meta-batch)
    "omniglot-5w1s": ("omniglot", 5, 1, 32),
    "omniglot-5w5s": ("omniglot", 5, 5, 32),
    "omniglot-20w1s": ("omniglot", 20, 1, 16),
    "omniglot-20w5s": ("omniglot", 20, 5, 16),
    "mini-imagenet-5w1s": ("mini-imagenet", 5, 1, 4),
}

# The rows of Tables 2 and 3: the registered algorithms, iMAML once per inner solver.
ALGORITHM_LABELS = {
    **{name: algorithm_label(name) for name in ("maml", "fomaml", "reptile")},
    "imaml-gd": f"{algorithm_label('imaml')}, GD", "imaml-hf": f"{algorithm_label('imaml')}, Hessian-free",
}


# Named variants beside the paper's rows: not rows of Tables 2 and 3 (the paper has no number for them);
# their runs are shown beside the paper's rows in the report's run list and figures.
EXTRA_VARIANTS = {"imaml-gd-minres": f"{algorithm_label('imaml')}, GD, MINRES meta-gradient",
                  "reptile-shared": f"{algorithm_label('reptile')}, shared protocol (SGD inside, Adam outside)"}
# the colours of the variants that are not an algorithm's own (its registry colour), in every figure
_VARIANT_COLORS = {"imaml-hf": "C4", "imaml-gd-minres": "C5", "reptile-shared": "C6"}
# iMAML-GD with each meta-gradient solver, the paper's CG and MINRES: the report's full-size comparison of the two
META_SOLVER_VARIANTS = ("imaml-gd", "imaml-gd-minres")


def variant_of(algorithm: str, hyperparameters: dict[str, Any]) -> str:
    """The variant a run without a preset ran: its algorithm, iMAML's by its inner solver."""
    if algorithm == "imaml":
        return "imaml-hf" if hyperparameters.get("inner_solver") == "newton-cg" else "imaml-gd"
    return algorithm


def variant_color(variant: str) -> str:
    """A preset variant's colour: its own, or its algorithm's (``algorithms.registry.algorithm_color``)."""
    return _VARIANT_COLORS.get(variant) or algorithm_color(variant_algorithm(variant))


def variant_algorithm(variant: str) -> str:
    """The algorithm a preset variant runs (its algorithm's ``presets`` name it; every setting has the same ones),
    or ``variant`` itself where no preset has that name."""
    dataset, ways, shots, _ = next(iter(SETTINGS.values()))
    return algorithm_presets(dataset, ways, shots).get(variant, (variant,))[0]


def variant_label(variant: str) -> str:
    """The paper's rows' and the named variants' labels; another preset variant's is its algorithm's label and the
    rest of its name ("iMAML, learned lambda, layer" for imaml-lambda-layer)."""
    named = {**ALGORITHM_LABELS, **EXTRA_VARIANTS}.get(variant)
    if named:
        return named
    algorithm = variant_algorithm(variant)
    if algorithm != variant and variant.startswith(f"{algorithm}-"):
        return f"{algorithm_label(algorithm)}, {variant[len(algorithm) + 1:]}"
    return algorithm_label(variant)


def algorithm_presets(dataset: str, ways: int, shots: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """variant -> (algorithm, its preset's settings) for one setting, from every registered algorithm's ``presets``
    (or ``preset_hyperparameters``), in the registry's order."""
    table: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in entries().items():
        if hasattr(entry.cls, "presets"):
            named = entry.cls.presets(dataset, ways, shots) or {}
        elif hasattr(entry.cls, "preset_hyperparameters"):
            hyperparameters = entry.cls.preset_hyperparameters(dataset, ways, shots)
            named = {} if hyperparameters is None else {name: {"hyperparameters": hyperparameters}}
        else:
            named = {}
        for variant, settings in named.items():
            require(variant not in table, f"the preset variant {variant!r} of {name} is taken by {table.get(variant, ('',))[0]}")
            table[variant] = (name, settings)
    return table


def setting_defaults(setting: str, algorithm: str) -> dict[str, Any]:
    """A setting's task shape and training defaults with ``algorithm`` at its default hyperparameters: what a preset
    lays its own settings over, and what an algorithm without a preset runs (``metagrad throughput --algorithms``)."""
    dataset, ways, shots, meta_batch = SETTINGS[setting]
    return {"dataset": dataset, "ways": ways, "shots": shots, "queries": 15, "meta_batch": meta_batch,
            "algorithm": algorithm, "hyperparameters": {}, "meta_lr": 1e-3, "iterations": 60_000,
            "validate_every": 500, "checkpoint_every": 500}


def presets() -> dict[str, dict[str, Any]]:
    table = {}
    for setting, (dataset, ways, shots, _) in SETTINGS.items():
        for variant, (algorithm, settings) in algorithm_presets(dataset, ways, shots).items():
            table[f"{setting}-{variant}"] = {**setting_defaults(setting, algorithm), **settings}
    return table


def setting_presets(setting: str) -> tuple[str, ...]:
    """The presets of one setting: each row of Tables 2 and 3, then each one of an algorithm the paper has not."""
    dataset, ways, shots, _ = SETTINGS[setting]
    others = [variant for variant in algorithm_presets(dataset, ways, shots)
              if variant not in ALGORITHM_LABELS and variant not in EXTRA_VARIANTS]
    return tuple(f"{setting}-{variant}" for variant in (*ALGORITHM_LABELS, *others))


def preset(name: str) -> dict[str, Any]:
    table = presets()
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; presets are {', '.join(sorted(table))}")
    return dict(table[name], preset=name)
