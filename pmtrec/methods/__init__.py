"""Multi-task methods, one module per family, all reachable by name through the registry.

Importing this package registers every method; add a module here to add a family.
"""

from pmtrec.methods import gradient, metabalance, pmtrec, simple, weighting  # noqa: F401  (register methods)
from pmtrec.methods.base import GradientMethod, LossWeighting, Method, StepContext, StepOutput
from pmtrec.methods.registry import METHODS, VARIANTS, available, build_method, register, register_variant

__all__ = [
    "GradientMethod", "LossWeighting", "Method", "StepContext", "StepOutput",
    "METHODS", "VARIANTS", "available", "build_method", "register", "register_variant",
]
