"""Meta-gradient algorithms behind one protocol, and their numerical parts."""
import warnings

# Forward-mode AD (the jvp of every forward-over-reverse product) loads torch's decompositions for it on first
# use, and they call torch.jit.script, which warns that it is deprecated: torch's own use, nothing a user can act
# on. Loaded here once with that one warning silenced, so that it never reaches a user's terminal.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import torch._decomp.decompositions_for_jvp  # noqa: F401

from .batched import BatchedMetaGradient
from .conjugate_gradient import CGResult, conjugate_gradient
from .fomaml import FirstOrderMAML
from .functional import Batch, FunctionalModel, Task, TaskBatch, cross_entropy_loss, squared_error_loss
from .hessian_vector_product import HessianOperator, hessian_vector_product, value_and_gradient
from .imaml import IMAML
from .imaml_lambda import IMAMLLearnedLambda
from .inner_solvers import InnerSolution, gradient_descent, newton_cg
from .lanczos import lanczos_ritz_values
from .learned_step_sizes import LSLR, MetaSGD
from .maml import MAML, maml_meta_gradient_torch_func
from .meta_parameters import (
    MetaParameterGroup,
    initial_meta_parameters,
    learned_values,
    network_part,
    split_meta_parameters,
)
from .minres import masked_minres, minres
from .protocol import MetaGradient, MetaGradientAlgorithm, MetaGradientRecord, proximal_objective
from .registry import (
    ALGORITHMS,
    algorithm_label,
    algorithm_names,
    batched_adapt,
    batched_meta_gradient,
    entries,
    has_batched_form,
    load_plugins,
    make_algorithm,
    register,
)
from .reptile import Reptile

__all__ = [
    "ALGORITHMS", "Batch", "BatchedMetaGradient", "CGResult", "FirstOrderMAML", "FunctionalModel",
    "HessianOperator", "IMAML", "IMAMLLearnedLambda", "InnerSolution", "LSLR", "MAML", "MetaGradient",
    "MetaGradientAlgorithm", "MetaParameterGroup", "MetaSGD", "initial_meta_parameters", "learned_values",
    "network_part", "split_meta_parameters",
    "MetaGradientRecord", "Reptile", "Task", "TaskBatch", "algorithm_label", "algorithm_names", "conjugate_gradient",
    "cross_entropy_loss", "gradient_descent", "hessian_vector_product", "lanczos_ritz_values", "make_algorithm",
    "maml_meta_gradient_torch_func", "masked_minres", "minres", "newton_cg", "proximal_objective",
    "squared_error_loss", "value_and_gradient", "register",
    "batched_adapt", "batched_meta_gradient", "entries", "has_batched_form", "load_plugins",
]
