"""metagrad: a benchmark and profiling suite for optimization-based meta-learning.

This package is the public API, what the README, the examples and every plug-in import::

    import metagrad
    imaml = metagrad.make_algorithm("imaml", lam=2.0)

Its names are loaded on first use, so ``import metagrad`` (and the ``metagrad`` command's ``--help``) does not import
torch. The code lives in two subpackages, which are internal and free to move: ``metagrad.algorithms`` (the
algorithms, their registry and numerics; the checkout's ``algorithms/``) and ``metagrad.bench`` (data, networks,
training, harnesses, measures, the report and the command line; the checkout's ``bench/``). Nothing is installed
under any other top-level name.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # algorithms: the protocol, the registry, the built-in classes to subclass
    "register": "metagrad.algorithms.registry",
    "make_algorithm": "metagrad.algorithms.registry",
    "algorithm_names": "metagrad.algorithms.registry",
    "algorithm_label": "metagrad.algorithms.registry",
    "hyperparameter_defaults": "metagrad.algorithms.registry",
    "batched_meta_gradient": "metagrad.algorithms.registry",
    "batched_adapt": "metagrad.algorithms.registry",
    "MetaGradientAlgorithm": "metagrad.algorithms.protocol",
    "MetaGradient": "metagrad.algorithms.protocol",
    "MetaGradientRecord": "metagrad.algorithms.record",
    "MetaObjective": "metagrad.algorithms.protocol",
    "InnerGradientDescentConfig": "metagrad.algorithms.protocol",
    "proximal_objective": "metagrad.algorithms.protocol",
    "BatchedMetaGradient": "metagrad.algorithms.batched",
    "MAML": "metagrad.algorithms.maml",
    "FirstOrderMAML": "metagrad.algorithms.fomaml",
    "Reptile": "metagrad.algorithms.reptile",
    "IMAML": "metagrad.algorithms.imaml",
    "MetaSGD": "metagrad.algorithms.learned_step_sizes",
    "LSLR": "metagrad.algorithms.learned_step_sizes",
    "IMAMLLearnedLambda": "metagrad.algorithms.imaml_lambda",
    # meta-parameters an algorithm learns beside the network's initialization (step sizes, lambda)
    "MetaParameterGroup": "metagrad.algorithms.meta_parameters",
    "initial_meta_parameters": "metagrad.algorithms.meta_parameters",
    "split_meta_parameters": "metagrad.algorithms.meta_parameters",
    "network_part": "metagrad.algorithms.meta_parameters",
    # what an algorithm works on: theta as one flat vector of a network, tasks, losses
    "FunctionalModel": "metagrad.algorithms.functional",
    "Batch": "metagrad.algorithms.functional",
    "Task": "metagrad.algorithms.functional",
    "TaskBatch": "metagrad.algorithms.functional",
    "cross_entropy_loss": "metagrad.algorithms.functional",
    "squared_error_loss": "metagrad.algorithms.functional",
    # numerics an algorithm may reuse: solvers that know only a matvec and a right-hand side
    "conjugate_gradient": "metagrad.algorithms.conjugate_gradient",
    "minres": "metagrad.algorithms.minres",
    "hessian_vector_product": "metagrad.algorithms.hessian_vector_product",
    "gradient_descent": "metagrad.algorithms.inner_solvers",
    # data and networks
    "task_source": "metagrad.bench.data.sources",
    "EpisodeSpec": "metagrad.bench.data.tasks",
    "LinearRegressionConfig": "metagrad.bench.data.linear_regression",
    "LinearRegressor": "metagrad.bench.data.linear_regression",
    "sample_linear_regression_task": "metagrad.bench.data.linear_regression",
    "network": "metagrad.bench.nets.convnet",
    "ConvNet": "metagrad.bench.nets.convnet",
    # measures
    "SavedTensorPeak": "metagrad.bench.measure.memory",
    # harnesses: the registry of measurements (a subcommand, its result files, its tables and figures)
    "Harness": "metagrad.bench.harnesses.harness",
    "register_harness": "metagrad.bench.harnesses.registry",
    "harness_names": "metagrad.bench.harnesses.registry",
    "Result": "metagrad.bench.harnesses.harness",
    "Rendering": "metagrad.bench.harnesses.harness",
    "Table": "metagrad.bench.harnesses.harness",
    "Figure": "metagrad.bench.harnesses.harness",
    # what a harness's config and writer use: a dataclass field that is a command-line option, atomic writes
    "option": "metagrad.bench.options",
    "write_csv": "metagrad.bench.atomic",
    "write_text": "metagrad.bench.atomic",
    "save_figure": "metagrad.bench.atomic",
    # errors, each with the command's exit code
    "MetagradError": "metagrad.errors",
    "ConfigError": "metagrad.errors",
    "CorruptFileError": "metagrad.errors",
    "DivergenceError": "metagrad.errors",
    "PluginError": "metagrad.errors",
    "RerunError": "metagrad.errors",
    "require": "metagrad.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'metagrad' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors see
    from metagrad.algorithms.batched import BatchedMetaGradient
    from metagrad.algorithms.conjugate_gradient import conjugate_gradient
    from metagrad.algorithms.fomaml import FirstOrderMAML
    from metagrad.algorithms.functional import (
        Batch,
        FunctionalModel,
        Task,
        TaskBatch,
        cross_entropy_loss,
        squared_error_loss,
    )
    from metagrad.algorithms.hessian_vector_product import hessian_vector_product
    from metagrad.algorithms.imaml import IMAML
    from metagrad.algorithms.imaml_lambda import IMAMLLearnedLambda
    from metagrad.algorithms.inner_solvers import gradient_descent
    from metagrad.algorithms.learned_step_sizes import LSLR, MetaSGD
    from metagrad.algorithms.maml import MAML
    from metagrad.algorithms.meta_parameters import (
        MetaParameterGroup,
        initial_meta_parameters,
        network_part,
        split_meta_parameters,
    )
    from metagrad.algorithms.minres import minres
    from metagrad.algorithms.protocol import (
        InnerGradientDescentConfig,
        MetaGradient,
        MetaGradientAlgorithm,
        MetaObjective,
        proximal_objective,
    )
    from metagrad.algorithms.record import MetaGradientRecord
    from metagrad.algorithms.registry import (
        algorithm_label,
        algorithm_names,
        batched_adapt,
        batched_meta_gradient,
        hyperparameter_defaults,
        make_algorithm,
        register,
    )
    from metagrad.algorithms.reptile import Reptile
    from metagrad.bench.atomic import save_figure, write_csv, write_text
    from metagrad.bench.data.linear_regression import (
        LinearRegressionConfig,
        LinearRegressor,
        sample_linear_regression_task,
    )
    from metagrad.bench.data.sources import task_source
    from metagrad.bench.data.tasks import EpisodeSpec
    from metagrad.bench.harnesses.harness import Figure, Harness, Rendering, Result, Table
    from metagrad.bench.harnesses.registry import harness_names, register_harness
    from metagrad.bench.measure.memory import SavedTensorPeak
    from metagrad.bench.nets.convnet import ConvNet, network
    from metagrad.bench.options import option
    from metagrad.errors import (
        ConfigError,
        CorruptFileError,
        DivergenceError,
        MetagradError,
        PluginError,
        RerunError,
        require,
    )
