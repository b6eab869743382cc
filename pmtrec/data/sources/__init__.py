"""Dataset sources: one module per source, each registering a loader ``cfg -> RawFrames``.

``SOURCES`` maps a source name (``dataset.source``) to its loader. To add a source,
write a module with a function ``load(cfg: dict) -> RawFrames`` and either

* decorate it with ``@register("name")`` and import the module before loading, or
* put it in this package as ``pmtrec/data/sources/<name>.py`` (found by name), or
* set ``dataset.source`` to ``"some.module:function"`` (imported on demand).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from pmtrec.data.frames import RawFrames
from pmtrec.errors import ConfigError, DataError

Loader = Callable[[dict[str, Any]], RawFrames]
SOURCES: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        SOURCES[name] = fn
        return fn

    return wrap


def _lookup(name: str) -> Loader:
    if name in SOURCES:
        return SOURCES[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"dataset.source: cannot import '{name}' ({exc})") from None
        return fn
    if name.isidentifier():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            module = None
        if module is not None:
            if name in SOURCES:
                return SOURCES[name]
            if hasattr(module, "load"):
                return module.load
    known = ", ".join(sorted(SOURCES))
    raise ConfigError(f"dataset.source: unknown source '{name}' (known: {known}; or 'module:function')")


def load_source(cfg: dict[str, Any]) -> RawFrames:
    """Load the raw frames of the source named by ``cfg['dataset']['source']``."""
    try:
        name = cfg["dataset"]["source"]
    except (KeyError, TypeError):
        raise ConfigError("missing config key 'dataset.source'") from None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"dataset.source: expected a source name, got {name!r}")
    raw = _lookup(name)(cfg)
    if not isinstance(raw, RawFrames):
        raise DataError(f"dataset.source '{name}': loader returned {type(raw).__name__}, not RawFrames")
    return raw


# Built-in sources register themselves on import.
from pmtrec.data.sources import amazon, amazon_hin, ciao, custom, epinions, lastfm, synthetic  # noqa: E402,F401

__all__ = ["SOURCES", "load_source", "register", "RawFrames"]
