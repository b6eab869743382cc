"""The workflow configuration: its schema (with defaults filled in) and every check the schema cannot say.

Everything here runs when the workflow is parsed (a dry run included), so a wrong key, type,
method name, method parameter or grid value fails before any job starts, with one line naming
the key: ``config key 'tune.grids.pmtrec.tua': ...``. No Snakemake needed (tests call it directly).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

from pmtrec.errors import ConfigError

# Run-config keys the workflow sets itself; anything else under `run` is passed through.
WORKFLOW_KEYS = {
    "dataset.source": "set by datasets.<name>.source",
    "dataset.mirror": "set by the top-level `mirror` key",
    "plugins": "set by the top-level `plugins` key",
    "train.method": "set by `methods` / `ablation.variants` / `sensitivity`",
    "train.seed": "set by `seeds`",
    "train.method_params": "set by the top-level `method_params` key",
    "train.device": "the workflow always passes --device auto",
    "train.threads": "set by resources.train.threads",
    "train.progress": "the workflow runs without progress bars (per-epoch lines go to the job log)",
}


class StudyConfigError(ConfigError):
    """A workflow configuration error; the message names the key at fault."""


def config_error(key: str, message: str):
    raise StudyConfigError(f"config key '{key}': {message}")


def _key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def validate_schema(cfg: dict, schema_path: str | Path) -> dict:
    """Validate ``cfg`` in place against the YAML JSON-schema, filling in its defaults (as
    Snakemake's ``validate`` does); the first error as one line naming the key."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    base = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(base, {"properties": set_defaults})
    errors = sorted(filling(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if not errors:
        return cfg
    best = jsonschema.exceptions.best_match(errors)
    path, message = list(best.absolute_path), best.message
    if best.validator == "additionalProperties":
        names = re.findall(r"'([^']+)' (?:was|were) unexpected", message) or re.findall(r"'([^']+)'", message)
        if names:
            allowed = sorted(best.schema.get("properties", {}))
            close = difflib.get_close_matches(names[0], allowed, n=1)
            path = path + [names[0]]
            message = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "") \
                + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    elif best.validator == "enum":
        message = f"{best.instance!r} is not one of: {', '.join(map(str, best.validator_value))}"
    config_error(_key_path(path), message)
    return cfg


# ---- helpers shared with the planner ------------------------------------------------------------
def flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """{"a": {"b": 1}} -> [("a.b", 1)] (pmtrec.config.flatten_keys, as pairs)."""
    from pmtrec.config import flatten_keys

    return list(flatten_keys(tree, prefix).items())


def split_params(params: dict) -> tuple[dict, dict]:
    """Method hyperparameters (plain keys) and run-config keys (dotted keys)."""
    return ({k: v for k, v in params.items() if "." not in k}, {k: v for k, v in params.items() if "." in k})


def _forbidden(dotted: str, where: str) -> None:
    for key, why in WORKFLOW_KEYS.items():
        if dotted == key or dotted.startswith(key + "."):
            config_error(f"{where}.{key}", why)


def check_run_fragment(fragment: dict, where: str) -> dict:
    """A `run` section: known run-config keys of the right types; returns it merged over the defaults."""
    from pmtrec.config import defaults, merge

    for dotted, _ in flatten(fragment):
        _forbidden(dotted, where)
    try:
        merged = merge(defaults(), fragment)
    except ConfigError as exc:
        unknown = re.match(r"unknown config key '([^']+)'", str(exc))
        if unknown:
            config_error(f"{where}.{unknown.group(1)}", "unknown key (not a pmtrec run-config key; "
                                                        "see pmtrec/defaults.yaml and config/README.md)")
        config_error(where, str(exc))
    check_run_types(merged, where)
    return merged


def check_run_types(merged: dict, where: str) -> None:
    from pmtrec.config import check_run_config

    try:  # the types `pmtrec train` itself checks, now rather than in a job
        check_run_config(merged)
    except ConfigError as exc:
        bad = re.match(r"([\w.-]+): (.*)", str(exc))
        if bad:
            config_error(f"{where}.{bad.group(1)}", bad.group(2))
        config_error(where, str(exc))


def check_dotted(key: str, value: Any, where: str) -> None:
    """A run-config key given in method_params or a grid: known, not the workflow's, of the right type."""
    from pmtrec.config import check_run_config, defaults, merge, nest_key

    _forbidden(key, where)
    try:
        merged = merge(defaults(), nest_key(key, value))
    except ConfigError:
        config_error(f"{where}.{key}", "unknown run-config key (see pmtrec/defaults.yaml and config/README.md)")
    try:
        check_run_config(merged)
    except ConfigError as exc:
        bad = re.match(r"([\w.-]+): (.*)", str(exc))
        config_error(f"{where}.{key}", bad.group(2) if bad else str(exc))


def check_method_name(name: str, where: str) -> None:
    from pmtrec.methods import available

    if name not in available():
        close = difflib.get_close_matches(name, available(), n=1)
        config_error(where, f"unknown method '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                     + " (see `pmtrec methods`; a plugin's methods need its module in `plugins`)")


def check_method_params(method: str, params: dict, where: str,
                        task_names: tuple[str, ...] = ("rec", "social", "category", "coview")) -> None:
    """Plain keys: parameters of the method with values its constructor accepts (for these tasks)."""
    from pmtrec.methods import check_params

    try:
        check_params(method, params, where, task_names)
    except ConfigError as exc:
        text = str(exc)
        bad = re.match(rf"{re.escape(where)}\.(\w+): (.*)", text)
        if bad:
            config_error(f"{where}.{bad.group(1)}", bad.group(2))
        config_error(where, text.replace(f"{where} for '{method}': ", "").replace(f"{where}: ", ""))


def check_local_files(cfg: dict) -> None:
    """Local files and folders the study reads must exist now, not hours into a run."""
    from pmtrec.data.sources import source_info

    datasets = cfg["datasets"]
    mirror = cfg["mirror"]
    needs_files = any(source_info(e["source"]).raw_files for e in datasets.values())
    if mirror is not None and not Path(mirror).expanduser().is_dir():
        config_error("mirror", f"folder not found: {mirror}")
    env_mirror = os.environ.get("PMTREC_MIRROR")
    if mirror is None and env_mirror and needs_files and not Path(env_mirror).expanduser().is_dir():
        raise StudyConfigError(f"environment variable PMTREC_MIRROR: folder not found: {env_mirror} "
                               "(unset it or set the `mirror` config key)")
    for name, entry in datasets.items():
        info = source_info(entry["source"])
        run = entry.get("run") or {}
        section = {**((cfg["run"].get("dataset") or {}).get(info.name) or {}),
                   **((run.get("dataset") or {}).get(info.name) or {})}
        for key in info.path_keys:
            value = section.get(key)
            if isinstance(value, str) and value and "://" not in value and not Path(value).expanduser().is_file():
                config_error(f"datasets.{name}.run.dataset.{info.name}.{key}", f"file not found: {value}")
        for key in info.required_keys:
            if not section.get(key):
                config_error(f"datasets.{name}.run.dataset.{info.name}.{key}",
                             f"required for a {info.name} dataset")
