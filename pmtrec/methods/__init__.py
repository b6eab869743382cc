"""Multi-task methods, one module per family, all reachable by name through the catalogue.

Importing this package registers every built-in method; add a module here to add a family, or
register one from a plugin module (docs/extending.md).
"""

import importlib
import pkgutil

from pmtrec.methods.base import GradientMethod, LossWeighting, Method, StepContext, StepOutput
from pmtrec.methods.registry import (METHODS, MODELS, VARIANTS, BaselineModel, Entry, available, build_method,
                                     check_params, entries, entry, register, register_variant)

# Every module of this package registers its methods on import (base and registry define the interface).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BaselineModel", "Entry", "GradientMethod", "LossWeighting", "Method", "StepContext", "StepOutput",
    "METHODS", "MODELS", "VARIANTS", "available", "build_method", "check_params", "entries", "entry",
    "register", "register_variant",
]
