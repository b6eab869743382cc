"""Dataset sources: one module per source, each registering a loader ``cfg -> RawFrames``.

``SOURCES`` maps a source name (``dataset.source``) to its loader, ``SOURCE_INFO`` to what it
declares (raw files to download, local-file keys, the relations it can give). To add a source,
write a module with a function ``load(cfg: dict) -> RawFrames`` and either

* decorate it with ``@register("name", ...)`` and list the module in the config's ``plugins``
  (docs/extending.md), or
* put it in this package as ``pmtrec/data/sources/<name>.py`` (found by name), or
* set ``dataset.source`` to ``"some.module:function"`` (imported on demand).
"""

from __future__ import annotations

import importlib
import difflib
from dataclasses import dataclass
from typing import Any, Callable

from pmtrec.data.frames import RawFrames
from pmtrec.errors import ConfigError, DataError

Loader = Callable[[dict[str, Any]], RawFrames]
SOURCES: dict[str, Loader] = {}


@dataclass(frozen=True)
class SourceInfo:
    """What a source declares (the workflow plans its jobs from this)."""

    name: str
    raw_files: bool = False              # reads raw files (mirror, cache, URL): a download job first
    path_keys: tuple[str, ...] = ()      # dataset.<name> keys naming local files or URLs (workflow inputs)
    required_keys: tuple[str, ...] = ()  # dataset.<name> keys that must be set
    relations: tuple[str, ...] = ()      # auxiliary relations it can give: social, category, coview
    # relation -> the path key whose file gives it (a relation without its file set is absent)
    relation_keys: tuple[tuple[str, str], ...] = ()

    def relation_key(self, relation: str) -> str | None:
        return dict(self.relation_keys).get(relation)


SOURCE_INFO: dict[str, SourceInfo] = {}


def register(name: str, *, raw_files: bool = False, path_keys: tuple[str, ...] = (),
             required_keys: tuple[str, ...] = (), relations: tuple[str, ...] = (),
             options: dict[str, Any] | None = None, relation_keys: dict[str, str] | None = None
             ) -> Callable[[Loader], Loader]:
    """Function decorator: ``@register("name", raw_files=True, relations=("social",))``.

    ``relation_keys``: relation -> the path key of the file that gives it, for a source whose
    relations come from optional files (``{"social": "net"}``): the relation is absent when
    that key is not set.

    ``options``: the defaults of the source's own config section ``dataset.<name>`` (a plugin
    source; the built-in ones have theirs in pmtrec/defaults.yaml).
    """
    def wrap(fn: Loader) -> Loader:
        if name in SOURCES and SOURCES[name] is not fn:
            raise ValueError(f"dataset source '{name}' registered twice")
        SOURCES[name] = fn
        if options is not None:
            from pmtrec.plugins import SOURCE_OPTIONS

            SOURCE_OPTIONS[name] = dict(options)
        SOURCE_INFO[name] = SourceInfo(name, raw_files, tuple(path_keys), tuple(required_keys), tuple(relations),
                                       tuple((relation_keys or {}).items()))
        return fn

    return wrap


def source_info(name: str) -> SourceInfo:
    """The declaration of a source (``module:function`` sources declare nothing); ConfigError if unknown."""
    if name not in SOURCE_INFO:
        _lookup(name)
    return SOURCE_INFO.get(name, SourceInfo(name))


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
    close = difflib.get_close_matches(name, list(SOURCES), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"dataset.source: unknown source '{name}'{hint} (known: {known}; or 'module:function', "
                      "or a plugin module in `plugins`)")


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


# Built-in sources register themselves on import: every module of this package.
import pkgutil  # noqa: E402

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["SOURCES", "SOURCE_INFO", "SourceInfo", "load_source", "register", "source_info", "RawFrames"]
