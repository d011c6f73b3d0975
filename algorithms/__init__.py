"""Meta-gradient algorithms behind one protocol, and their numerical parts."""
from .conjugate_gradient import CGResult, conjugate_gradient
from .fomaml import FirstOrderMAML
from .functional import Batch, FunctionalModel, Task, cross_entropy_loss, squared_error_loss
from .hessian_vector_product import HessianOperator, hessian_vector_product, value_and_gradient
from .imaml import IMAML
from .inner_solvers import InnerSolution, gradient_descent, newton_cg
from .maml import MAML, maml_meta_gradient_torch_func
from .protocol import (
    ALGORITHMS,
    ConfigError,
    MetaGradient,
    MetaGradientAlgorithm,
    MetaGradientRecord,
    make_algorithm,
    proximal_objective,
)
from .reptile import Reptile

__all__ = [
    "ALGORITHMS", "Batch", "CGResult", "ConfigError", "FirstOrderMAML", "FunctionalModel", "HessianOperator", "IMAML",
    "InnerSolution", "MAML", "MetaGradient", "MetaGradientAlgorithm", "MetaGradientRecord", "Reptile", "Task",
    "conjugate_gradient", "cross_entropy_loss", "gradient_descent", "hessian_vector_product", "make_algorithm",
    "maml_meta_gradient_torch_func", "newton_cg", "proximal_objective", "squared_error_loss", "value_and_gradient",
]
