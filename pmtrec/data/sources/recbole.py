"""``recbole``: a dataset in RecBole's atomic files (``.inter``, ``.item``, ``.net``).

An atomic file is tab-separated (RecBole's ``field_separator``) with one header row of
``name:type`` fields, type ``token``, ``token_seq``, ``float`` or ``float_seq``; a ``token_seq``
value is a list split on ``seq_separator`` (a space). Config ``dataset.recbole``:

* ``inter`` (required): the ``.inter`` file: fields ``user_field``, ``item_field`` (default
  ``user_id``, ``item_id``) and, when present, ``rating_field`` (``rating``) and ``time_field``
  (``timestamp``: a number in any unit, or a date string); other fields are ignored;
* ``item`` (optional): the ``.item`` file: ``item_field`` plus the category field
  ``category_field`` (default: the first of ``CATEGORY_NAMES`` the file has, the names RecBole's
  own datasets use: ml-100k ``class``, Amazon and Yelp ``categories``; not merely its first
  token field, which is often a title); a ``token_seq`` field gives several categories per
  item. Categories keep their names;
* ``net`` (optional): the ``.net`` file: ``source_field``, ``target_field`` (``source_id``,
  ``target_id``) -> social links;
* ``name``: the dataset name (default: the ``.inter`` file's stem).

pandas reads the files (as RecBole itself does); implicit feedback, duplicates, k-core and the
split are preprocessing's (``preprocess``), as for every source. Errors are one-line
DataErrors naming the file and its line (1-based; line 1 is the header).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pmtrec.data.fetch import resolve_path_or_url
from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.data.sources.text import parse_timestamps
from pmtrec.errors import ConfigError, DataError

SOURCE = "recbole"
TYPES = ("token", "token_seq", "float", "float_seq")
CATEGORY_NAMES = ("categories", "category", "class", "genre", "genres")
FIELD_KEYS = {"user_field": "user_id", "item_field": "item_id", "rating_field": "rating",
              "time_field": "timestamp", "source_field": "source_id", "target_field": "target_id"}


def _line(r: int) -> str:
    return f"line {r + 2}"  # data row r (0-based) is file line r + 2: line 1 is the header


def read_atomic(path: Path, sep: str = "\t") -> tuple[pd.DataFrame, dict[str, str]]:
    """The file's columns as stripped strings, named without their type, and name -> type."""
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=3, engine="c")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (expected a header row of name:type fields)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot parse as a RecBole atomic file ({msg})") from None
    header = [str(c).strip() for c in df.columns]
    if sep == "\t" and len(header) == 1 and "," in header[0]:
        raise DataError(f"{path}: the header {header[0]!r} is comma-separated but RecBole atomic files are "
                        "tab-separated; convert the file, or set dataset.recbole.field_separator: ','")
    types: dict[str, str] = {}
    for field in header:
        name, _, kind = field.rpartition(":")
        if not name or kind not in TYPES:
            raise DataError(f"{path}: header field {field!r} must be name:type with type one of {', '.join(TYPES)}")
        if name in types:
            raise DataError(f"{path}: header field {name!r} appears twice")
        types[name] = kind
    df.columns = list(types)
    for col in df.columns:
        df[col] = df[col].str.strip()
    return df, types


def _field(types: dict[str, str], name: str, key: str, path: Path) -> str:
    if name not in types:
        raise DataError(f"{path}: no field {name!r} (fields: {', '.join(types)}); set dataset.{SOURCE}.{key}")
    return name


def _ids(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    empty = (df[col] == "").to_numpy()
    if empty.any():
        raise DataError(f"{path}: empty {col} at {_line(int(np.flatnonzero(empty)[0]))}")
    return df[col]


def read_inter(path: Path, opts: dict[str, Any]) -> pd.DataFrame:
    df, types = read_atomic(path, opts["field_separator"])
    if len(df) == 0:
        raise DataError(f"{path}: no data rows (only the header)")
    user = _field(types, opts["user_field"], "user_field", path)
    item = _field(types, opts["item_field"], "item_field", path)
    out = pd.DataFrame({"user": _ids(df, user, path), "item": _ids(df, item, path)})
    rating = opts["rating_field"]
    if rating in types:
        values = pd.to_numeric(df[rating], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: {rating} {df[rating].iloc[r]!r} at {_line(r)} is not a number")
        out["rating"] = values.astype("float64")
    if opts["time_field"] in types:
        out["timestamp"] = parse_timestamps(df[opts["time_field"]], path, _line)
    return out


def read_item_category(path: Path, opts: dict[str, Any]) -> pd.DataFrame:
    """``item, category`` rows; a token_seq field gives one row per listed category."""
    df, types = read_atomic(path, opts["field_separator"])
    item = _field(types, opts["item_field"], "item_field", path)
    field = opts["category_field"]
    if field is None:
        field = next((n for n in CATEGORY_NAMES if n in types), None)
        if field is None:
            raise DataError(f"{path}: no category field ({', '.join(CATEGORY_NAMES)}) among {', '.join(types)}; "
                            f"set dataset.{SOURCE}.category_field")
    _field(types, field, "category_field", path)
    if types[field] not in ("token", "token_seq"):
        raise DataError(f"{path}: category field {field!r} is {types[field]}, not token or token_seq")
    cats = df[field]
    if types[field] == "token_seq":
        cats = cats.str.split(opts["seq_separator"]).explode().str.strip()
    out = pd.DataFrame({"item": _ids(df, item, path).loc[cats.index].to_numpy(), "category": cats.to_numpy()})
    return out[out["category"] != ""].drop_duplicates().reset_index(drop=True)  # an empty value: no category


def read_net(path: Path, opts: dict[str, Any]) -> pd.DataFrame:
    df, types = read_atomic(path, opts["field_separator"])
    source = _field(types, opts["source_field"], "source_field", path)
    target = _field(types, opts["target_field"], "target_field", path)
    return pd.DataFrame({"user": _ids(df, source, path), "friend": _ids(df, target, path)})


def options(scfg: dict[str, Any]) -> dict[str, Any]:
    """``dataset.recbole`` checked (a one-line ConfigError naming the key)."""
    opts: dict[str, Any] = {}
    for key, default in {**FIELD_KEYS, "field_separator": "\t", "seq_separator": " "}.items():
        value = scfg.get(key) if scfg.get(key) is not None else default
        if not isinstance(value, str) or not value:
            raise ConfigError(f"dataset.{SOURCE}.{key}: expected a non-empty string, got {value!r}")
        opts[key] = value
    category = scfg.get("category_field")
    if category is not None and (not isinstance(category, str) or not category):
        raise ConfigError(f"dataset.{SOURCE}.category_field: expected a field name or null, got {category!r}")
    opts["category_field"] = category
    return opts


@register(SOURCE, raw_files=True, path_keys=("inter", "item", "net"), required_keys=("inter",),
          relations=("social", "category"), relation_keys={"social": "net", "category": "item"})
def load(cfg: dict[str, Any]) -> RawFrames:
    scfg = cfg.get("dataset", {}).get(SOURCE) or {}
    if not scfg.get("inter"):
        raise DataError(f"dataset.{SOURCE}.inter is not set (path to the dataset's .inter file)")
    opts = options(scfg)
    paths = {key: resolve_path_or_url(cfg, SOURCE, str(scfg[key]), key)
             for key in ("inter", "item", "net") if scfg.get(key)}
    interactions = read_inter(paths["inter"], opts)
    item_category = read_item_category(paths["item"], opts) if "item" in paths else None
    social = read_net(paths["net"], opts) if "net" in paths else None
    files = {"interactions": str(paths["inter"])}  # frames in file row order (exploded categories are not)
    if social is not None:
        files["social"] = str(paths["net"])
    name = scfg.get("name") or Path(str(scfg["inter"])).name.split(".")[0]
    return RawFrames(name=str(name), interactions=interactions, social=social,
                     item_category=item_category if item_category is not None and len(item_category) else None,
                     files=files)
