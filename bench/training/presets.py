"""Presets for every row of the paper's Tables 2 and 3.

Sources: iMAML's settings from the paper (Appendix F): Omniglot
lambda = 2, 16 GD steps (5-way) or 25 (20-way), Mini-ImageNet lambda = 0.5 and 10 GD steps, 5 CG
steps for every meta-gradient, Hessian-free = 3 Newton iterations of 5 CG steps with a line search.
MAML and first-order MAML: Finn et al. (2017): Omniglot 5-way 1 step of 0.4, 20-way 5 steps of 0.1,
Mini-ImageNet 5 steps of 0.01; meta-batch 32 / 16 / 4; Adam 1e-3; 60,000 iterations. Reptile:
as Nichol et al. (2018) ran it (the commands in openai/supervised-reptile's README, archived version;
``NICHOL_REPTILE``): inner Adam with beta1 = 0 on minibatches of a task with 10 (Mini-ImageNet 15) shots
per class, an outer SGD step on theta - phi annealed linearly from 1 to 0, their meta-batch and
iteration counts, and their inner iterations at evaluation. Ours where they are silent or differ: the
4-block ConvNet of the other rows (theirs on Omniglot has strided convolutions), 5 query images per
class in meta-training tasks (Reptile does not use them; they only give the training accuracy), the
shared evaluation (15 query images per class, scored together); their 5-shot Omniglot command is not
transductive, ours always is; each task's inner Adam starts afresh (theirs kept its second moments
from task to task). ``{setting}-reptile-shared`` is the suite's shared protocol instead: plain SGD
inside (5 steps of 0.1 on Omniglot, 8 of 0.01 on Mini-ImageNet, on the whole support set) and the
shared Adam outer loop; its 30-minute Omniglot run peaked at 59% validation accuracy.

Where a paper is silent, our choice is marked "ours": the inner step size of iMAML's gradient
descent (0.03 on Omniglot, 0.02 on Mini-ImageNet) and iMAML's meta-batch (that of MAML for the same
setting). Why 0.03 on Omniglot: with 0.1, a 30-minute CPU run's 16 steps stopped reducing the
support loss as training went on (1.12 after adaptation on the test tasks) and validation accuracy
fell from 0.64 to 0.46; with 0.03 the support loss stayed low (0.20) and the run ended at 0.76
(reports/cpu-training/).
``{setting}-imaml-gd-minres`` is ours too: iMAML-GD with MINRES instead of CG for the meta-gradient, which
trained better than CG at every lambda in the curvature study (README, "When iMAML's system is
indefinite"); the paper's presets stay as they are.
"""
from __future__ import annotations

from typing import Any

from metagrad.algorithms.registry import algorithm_color, algorithm_label, entries
from metagrad.errors import ConfigError

SETTINGS = {  # name: (dataset, ways, shots, meta-batch)
    "omniglot-5w1s": ("omniglot", 5, 1, 32),
    "omniglot-5w5s": ("omniglot", 5, 5, 32),
    "omniglot-20w1s": ("omniglot", 20, 1, 16),
    "omniglot-20w5s": ("omniglot", 20, 5, 16),
    "mini-imagenet-5w1s": ("mini-imagenet", 5, 1, 4),
}

# Nichol et al.'s commands (openai/supervised-reptile, README, archived version) per (dataset, ways):
# --inner-iters, --inner-batch, --learning-rate (the inner Adam's), --eval-iters, --eval-batch,
# --train-shots, --meta-batch, --meta-iters; every one with --meta-step 1 --meta-step-final 0.
NICHOL_REPTILE = {
    ("omniglot", 5): {"inner_steps": 5, "inner_batch": 10, "inner_lr": 0.001, "eval_inner_steps": 50,
                      "eval_inner_batch": 5, "train_shots": 10, "meta_batch": 5, "iterations": 100_000},
    ("omniglot", 20): {"inner_steps": 10, "inner_batch": 20, "inner_lr": 0.0005, "eval_inner_steps": 50,
                       "eval_inner_batch": 10, "train_shots": 10, "meta_batch": 5, "iterations": 200_000},
    ("mini-imagenet", 5): {"inner_steps": 8, "inner_batch": 10, "inner_lr": 0.001, "eval_inner_steps": 50,
                           "eval_inner_batch": 5, "train_shots": 15, "meta_batch": 5, "iterations": 100_000},
}

# The rows of Tables 2 and 3: the registered algorithms, iMAML once per inner solver.
ALGORITHM_LABELS = {
    **{name: algorithm_label(name) for name in ("maml", "fomaml", "reptile")},
    "imaml-gd": f"{algorithm_label('imaml')}, GD", "imaml-hf": f"{algorithm_label('imaml')}, Hessian-free",
}


def _hyperparameters(dataset: str, ways: int, variant: str) -> tuple[str, dict[str, Any]]:
    omniglot = dataset == "omniglot"
    if variant in ("maml", "fomaml"):
        if omniglot:
            steps, lr = (1, 0.4) if ways == 5 else (5, 0.1)
        else:
            steps, lr = 5, 0.01
        return variant, {"inner_steps": steps, "inner_lr": lr}
    if variant == "reptile":
        nichol = NICHOL_REPTILE[(dataset, ways)]
        return "reptile", {"inner_optimizer": "adam", "inner_steps": nichol["inner_steps"],
                           "inner_batch": nichol["inner_batch"], "inner_lr": nichol["inner_lr"],
                           "eval_inner_steps": nichol["eval_inner_steps"], "eval_inner_batch": nichol["eval_inner_batch"]}
    if variant == "reptile-shared":  # ours: the shared protocol (plain SGD inside, the shared Adam outside)
        return "reptile", {"inner_steps": 5 if omniglot else 8, "inner_lr": 0.1 if omniglot else 0.01}
    lam = 2.0 if omniglot else 0.5
    if variant == "imaml-gd":
        steps = (16 if ways == 5 else 25) if omniglot else 10
        return "imaml", {"lam": lam, "inner_solver": "gd", "inner_steps": steps,
                         "inner_lr": 0.03 if omniglot else 0.02, "cg_steps": 5}
    if variant == "imaml-hf":
        return "imaml", {"lam": lam, "inner_solver": "newton-cg", "inner_steps": 3, "newton_cg_steps": 5,
                         "cg_steps": 5}
    if variant == "imaml-gd-minres":  # ours: the paper's iMAML-GD with MINRES for the meta-gradient
        algorithm, hyperparameters = _hyperparameters(dataset, ways, "imaml-gd")
        return algorithm, {**hyperparameters, "meta_solver": "minres"}
    raise ConfigError(f"unknown algorithm variant {variant!r}")


# Named variants beside the paper's rows: not rows of Tables 2 and 3 (the paper has no number for them);
# their runs are shown beside the paper's rows in the report's run list and figures.
EXTRA_VARIANTS = {"imaml-gd-minres": f"{algorithm_label('imaml')}, GD, MINRES meta-gradient",
                  "reptile-shared": f"{algorithm_label('reptile')}, shared protocol (SGD inside, Adam outside)"}
# the colours of the variants that are not an algorithm's own (its registry colour), in every figure
_VARIANT_COLORS = {"imaml-hf": "C4", "imaml-gd-minres": "C5", "reptile-shared": "C6"}
# the algorithm each variant named otherwise runs
VARIANT_ALGORITHMS = {"imaml-gd": "imaml", "imaml-hf": "imaml", "imaml-gd-minres": "imaml", "reptile-shared": "reptile"}
# iMAML-GD with each meta-gradient solver, the paper's CG and MINRES: the report's full-size comparison of the two
META_SOLVER_VARIANTS = ("imaml-gd", "imaml-gd-minres")


def variant_of(algorithm: str, hyperparameters: dict[str, Any]) -> str:
    """The variant a run without a preset ran: its algorithm, iMAML's by its inner solver."""
    if algorithm == "imaml":
        return "imaml-hf" if hyperparameters.get("inner_solver") == "newton-cg" else "imaml-gd"
    return algorithm


def variant_color(variant: str) -> str:
    """A preset variant's colour: its own, or its algorithm's (``algorithms.registry.algorithm_color``)."""
    return _VARIANT_COLORS.get(variant) or algorithm_color(VARIANT_ALGORITHMS.get(variant, variant))


def variant_label(variant: str) -> str:
    return {**ALGORITHM_LABELS, **EXTRA_VARIANTS}.get(variant) or algorithm_label(variant)


def plugin_presets() -> dict[str, tuple[str, dict[str, Any]]]:
    """``{setting}-{name}``: (name, hyperparameters) for every registered algorithm with ``preset_hyperparameters``
    (a plug-in's settings for the paper's tasks; the built-in algorithms' are this module's)."""
    table = {}
    for name, entry in entries().items():
        settings_of = getattr(entry.cls, "preset_hyperparameters", None)
        for setting, (dataset, ways, shots, _) in SETTINGS.items():
            hyperparameters = settings_of(dataset, ways, shots) if settings_of else None
            if hyperparameters is not None:
                table[f"{setting}-{name}"] = (name, hyperparameters)
    return table


def presets() -> dict[str, dict[str, Any]]:
    table = {}
    plugins = plugin_presets()
    for setting, (dataset, ways, shots, meta_batch) in SETTINGS.items():
        variants = (*ALGORITHM_LABELS, *EXTRA_VARIANTS, *(key[len(setting) + 1:] for key in plugins
                                                          if key.startswith(setting + "-")))
        for variant in variants:
            key = f"{setting}-{variant}"
            algorithm, hyperparameters = plugins[key] if key in plugins else _hyperparameters(dataset, ways, variant)
            table[key] = {
                "dataset": dataset, "ways": ways, "shots": shots, "queries": 15, "meta_batch": meta_batch,
                "algorithm": algorithm, "hyperparameters": hyperparameters, "meta_lr": 1e-3,
                "iterations": 60_000, "validate_every": 500, "checkpoint_every": 500,
            }
            if variant == "reptile":  # Nichol et al.'s outer loop and training tasks
                nichol = NICHOL_REPTILE[(dataset, ways)]
                table[f"{setting}-{variant}"].update(
                    outer_optimizer="sgd", meta_lr=1.0, meta_lr_final=0.0, train_shots=nichol["train_shots"],
                    train_queries=5, meta_batch=nichol["meta_batch"], iterations=nichol["iterations"])
    return table


def setting_presets(setting: str) -> tuple[str, ...]:
    """The presets of one setting: each row of Tables 2 and 3, then each plug-in algorithm's."""
    return (*(f"{setting}-{variant}" for variant in ALGORITHM_LABELS),
            *(key for key in plugin_presets() if key.startswith(setting + "-")))


def preset(name: str) -> dict[str, Any]:
    table = presets()
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; presets are {', '.join(sorted(table))}")
    return dict(table[name], preset=name)
