"""Multi-task methods, one module per family, all reachable by name through the catalogue.

Importing this package registers every built-in method; add a module here to add a family, or
register one from a plugin module (docs/extending.md).
"""

from pmtrec.methods import gradient, metabalance, mostpop, pmtrec, simple, weighting  # noqa: F401  (register)
from pmtrec.methods.base import GradientMethod, LossWeighting, Method, StepContext, StepOutput
from pmtrec.methods.registry import (METHODS, MODELS, VARIANTS, BaselineModel, Entry, available, build_method,
                                     check_params, entries, entry, register, register_variant)

__all__ = [
    "BaselineModel", "Entry", "GradientMethod", "LossWeighting", "Method", "StepContext", "StepOutput",
    "METHODS", "MODELS", "VARIANTS", "available", "build_method", "check_params", "entries", "entry",
    "register", "register_variant",
]
