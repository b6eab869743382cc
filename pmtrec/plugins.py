"""Plugins: modules outside the package that register methods or dataset sources.

A run config (and the workflow config) may list ``plugins: [module, ...]``; each is imported
before anything is resolved, so its ``@pmtrec.methods.register`` and
``@pmtrec.data.sources.register`` decorators have run by the time a name is looked up. The
working directory is on the import path, so a plugin file next to the config is found without
installing it (docs/extending.md).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

from pmtrec.errors import ConfigError

_LOADED: set[str] = set()
# source name -> its option defaults (dataset.<name>.*), declared by `sources.register(options=...)`;
# kept here, not in pmtrec.data, so reading the config imports no data code.
SOURCE_OPTIONS: dict[str, dict] = {}


def load_plugins(modules: Iterable[str] | None, where: str = "plugins") -> list[str]:
    """Import each module once; a one-line ConfigError naming the module if it cannot be imported."""
    if modules is None:
        return []
    if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"{where}: expected a list of module names, got {modules!r}")
    if not modules:
        return []
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    # the built-in registries first, so a plugin may subclass and sit beside them
    import pmtrec.data.sources  # noqa: F401
    import pmtrec.methods  # noqa: F401,E402

    loaded = []
    for name in modules:
        if name not in _LOADED:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise ConfigError(f"{where}: cannot import plugin module '{name}' ({exc})") from None
            except ValueError as exc:  # e.g. a name registered twice
                raise ConfigError(f"{where}: plugin module '{name}': {exc}") from None
            _LOADED.add(name)
        loaded.append(name)
    return loaded
