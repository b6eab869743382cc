"""Methods by name, and named variants (a method with some parameters fixed)."""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from pmtrec.errors import ConfigError
from pmtrec.methods.base import Method

METHODS: dict[str, type[Method]] = {}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def register_variant(name: str, base: str, **params: Any) -> None:
    """A named preset, e.g. ``pmtrec-no-focus`` = ``pmtrec`` with ``focus=False``."""
    VARIANTS[name] = (base, params)


def available() -> list[str]:
    return sorted([*METHODS, *VARIANTS, "mostpop"])


def resolve(name: str, params: dict[str, Any] | None = None) -> tuple[type[Method], dict[str, Any]]:
    params = dict(params or {})
    if name in VARIANTS:
        base, preset = VARIANTS[name]
        params = {**preset, **params}
        name = base
    if name not in METHODS:
        raise ConfigError(f"train.method: unknown method '{name}' (known: {', '.join(available())})")
    cls = METHODS[name]
    accepted = inspect.signature(cls.__init__).parameters
    for key in params:
        if key not in accepted or key in ("self", "task_names"):
            options = [p for p in accepted if p not in ("self", "task_names")]
            raise ConfigError(f"train.method_params.{key}: not a parameter of method '{name}' "
                              f"(its parameters: {', '.join(options) or 'none'})")
    return cls, params


def build_method(name: str, task_names: Sequence[str], params: dict[str, Any] | None = None) -> Method:
    cls, params = resolve(name, params)
    try:
        return cls(task_names, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.method_params for '{name}': {exc}") from None
