"""Run configuration: packaged defaults, deep-merged with a user's YAML and overrides."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pmtrec.errors import ConfigError

# Sections whose keys are free-form (checked by their owner, not here).
_OPEN_KEYS = {("train", "method_params")}


def defaults() -> dict[str, Any]:
    """The packaged defaults, plus the option sections of plugin dataset sources loaded so far."""
    from pmtrec.plugins import SOURCE_OPTIONS

    text = resources.files("pmtrec").joinpath("defaults.yaml").read_text()
    cfg = yaml_load(text)
    for name, options in SOURCE_OPTIONS.items():
        cfg["dataset"].setdefault(name, copy.deepcopy(options))
    return cfg


class _Loader(yaml.SafeLoader):
    """YAML as ML configs are written: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``, else a string)."""


# YAML 1.2's float pattern, which accepts 1e-3, 5E+2 and .5e1 as well as PyYAML's forms.
_FLOAT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that reads scientific notation (``1e-3``) as floats."""
    return yaml.load(text, Loader=_Loader)


def as_floats(node: Any) -> Any:
    """Strings that are scientific-notation numbers ("1e-3", as a YAML 1.1 loader leaves them) as floats,
    recursively (for configs read by others: Snakemake's configfile and --config)."""
    if isinstance(node, dict):
        return {k: as_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_floats(v) for v in node]
    if isinstance(node, str) and _SCIENTIFIC.match(node):
        return float(node)
    return node


_SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where} ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], update: dict[str, Any], _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``; unknown keys are errors outside free-form sections."""
    out = copy.deepcopy(base)
    is_open = any(_path[:len(p)] == p for p in _OPEN_KEYS)
    for key, value in update.items():
        path = (*_path, str(key))
        if key not in out and not is_open:
            import difflib

            close = difflib.get_close_matches(str(key), [str(k) for k in out], n=1)
            hint = f"; did you mean '{'.'.join((*_path, close[0]))}'?" if close else ""
            raise ConfigError(f"unknown config key '{'.'.join(path)}'{hint}")
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten_keys(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: dotted keys of the leaves (an empty mapping is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nest_key(dotted: str, value: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """"a.b", 1 -> {"a": {"b": 1}} (set into ``into`` when given); the inverse of :func:`flatten_keys`."""
    out: dict[str, Any] = {} if into is None else into
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml_load(raw)
    except yaml.YAMLError:
        value = raw
    return nest_key(key, value)


def load_config(path: str | Path | list | tuple | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Defaults, then the file, then the overrides; checked (one-line ConfigError naming the key).

    The ``plugins`` of the file and the overrides are imported first, so that the options of a
    plugin's dataset source are known keys when the rest is merged.
    """
    from pmtrec.plugins import load_plugins

    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    files = [load_yaml(p) for p in paths]  # several --config files merge in order
    parsed = [parse_override(item) for item in overrides]
    plugins = None
    for update in [*files, *parsed]:
        plugins = update.get("plugins", plugins)
    load_plugins(plugins or [], "plugins")
    cfg = defaults()
    for data in files:
        cfg = merge(cfg, data)
    for update in parsed:
        cfg = merge(cfg, update)
    check_run_config(cfg)
    return cfg


# Keys that change nothing a run computes: not part of its hash (a checkpoint resumes across them).
HASH_IGNORED_KEYS = (("train", "threads"), ("train", "progress"))


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable short hash of a resolved config (key order and HASH_IGNORED_KEYS do not matter)."""
    cfg = copy.deepcopy(cfg)
    for section, key in HASH_IGNORED_KEYS:
        if isinstance(cfg.get(section), dict):
            cfg[section].pop(key, None)
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- value types -----------------------------------------------------------------------------
def _int(lo: int | None = None, null: bool = False):
    def check(v: Any) -> str | None:
        if v is None and null:
            return None
        ok = isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)
        return None if ok else ("an integer" if lo is None else "a non-negative integer" if lo == 0
                                else f"an integer >= {lo}") + (" or null" if null else "")
    return check


def _num(positive: bool = False):
    def check(v: Any) -> str | None:
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and (v > 0 if positive else v >= 0))
        return None if ok else ("a positive number" if positive else "a non-negative number")
    return check


def _str(null: bool = False):
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) or (null and v is None) else "a string" + (" or null" if null else "")
    return check


def _choice(*options: str):
    def check(v: Any) -> str | None:
        return None if v in options else f"one of {', '.join(options)}"
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _ks(v: Any) -> str | None:
    ok = (isinstance(v, list) and v and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v)
          and 20 in v)
    return None if ok else "a non-empty list of positive integers that includes 20 (early stopping uses NDCG@20)"


def _modules(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(m, str) and m for m in v)
    return None if ok else "a list of module names"


def _files(v: Any) -> str | None:
    ok = isinstance(v, dict) and v and all(d is None or isinstance(d, str) for d in v.values())
    return None if ok else "a mapping file name -> SHA-256 (or null)"


# Leaf keys with a fixed type; other keys are checked where they are used (sources, preprocess,
# tasks, methods) and all of those raise one-line ConfigErrors too.
RUN_CONFIG_TYPES = {
    "plugins": _modules,
    "dataset.source": _str(), "dataset.mirror": _str(null=True), "dataset.cache": _str(null=True),
    "dataset.manifest": _str(null=True),
    "dataset.synthetic.seed": _int(), "dataset.download.retries": _int(0),
    "dataset.download.backoff_s": _num(), "dataset.download.timeout_s": _num(positive=True),
    "dataset.ciao.url": _str(null=True), "dataset.epinions.url": _str(null=True),
    "dataset.ciao.files": _files, "dataset.epinions.files": _files,
    "dataset.amazon-hin.url": _str(null=True), "dataset.amazon-hin.files": _files,
    "dataset.amazon-hin.category": _str(), "dataset.amazon-hin.min_items": _int(1),
    "dataset.amazon-hin.max_category_share": _num(positive=True),
    "dataset.lastfm.url": _str(null=True), "dataset.lastfm.files": _files,
    "dataset.lastfm.min_tag_artists": _int(1), "dataset.lastfm.tags_per_artist": _int(1),
    "model.dim": _int(1), "model.init_std": _num(),
    "train.method": _str(), "train.epochs": _int(0), "train.batch_size": _int(1),
    "train.aux_batch_size": _int(1, null=True), "train.aux_sampling": _choice("independent", "anchored"),
    "train.lr": _num(), "train.l2": _num(),
    "train.optimizer": _choice("lazy_adam", "adam"), "train.patience": _int(1), "train.eval_every": _int(1), "train.seed": _int(), "train.device": _str(),
    "train.threads": _int(1, null=True), "train.progress": _bool, "train.on_nonfinite": _choice("stop", "skip"),
    "eval.ks": _ks, "eval.batch_size": _int(1), "eval.groups": _int(1),
}


def check_run_config(cfg: dict) -> None:
    """One-line ConfigError for a section that is not a mapping or a key of the wrong type."""
    def sections(node: dict, path: tuple[str, ...]):
        for key, value in node.items():
            if isinstance(value, dict) and value and not (path + (key,) == ("train", "method_params")):
                yield path + (key,)
                yield from sections(value, path + (key,))

    for path in sections(defaults(), ()):
        node: Any = cfg
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: expected a mapping of keys, got {node!r}")
    for dotted, check in RUN_CONFIG_TYPES.items():
        node = cfg
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        problem = check(node)
        if problem:
            raise ConfigError(f"{dotted}: expected {problem}, got {node!r}")
    if not isinstance(cfg["train"].get("method_params"), dict):
        raise ConfigError(f"train.method_params: expected a mapping, got {cfg['train'].get('method_params')!r}")
