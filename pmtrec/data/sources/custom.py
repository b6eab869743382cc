"""Bring-your-own dataset: CSV/TSV files with a header row (see docs/data_format.md).

``dataset.custom.interactions`` (required): columns ``user,item[,rating][,timestamp]``.
``dataset.custom.social`` (optional): ``user,friend``.
``dataset.custom.item_category`` (optional): ``item,category``.
``dataset.custom.coview`` (optional): ``item,other``.
``dataset.custom.name`` (optional): dataset name (default: the interactions file stem).

The separator follows the extension: ``.csv`` -> comma, ``.tsv``/``.tab`` -> tab (also
with a ``.gz``/``.bz2``/``.xz``/``.zip`` suffix). Ids are read as strings (so
``007`` and ``7`` are different users). ``timestamp`` may be numeric (any unit)
or a date/time string (converted to Unix seconds). Errors name the file and the 1-based
data row (the header is not a data row); a comma-separated file named ``.tsv`` is refused
with a hint to rename it.
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
from pmtrec.errors import DataError

SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "interactions": (("user", "item"), ("rating", "timestamp")),
    "social": (("user", "friend"), ()),
    "item_category": (("item", "category"), ()),
    "coview": (("item", "other"), ()),
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip")


def separator(path: Path) -> str:
    name = path.name.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab")):
        return "\t"
    raise DataError(f"{path}: unknown extension (use .csv or .tsv, optionally compressed)")


def _as_csv_name(path: Path) -> str:
    """``x.tsv.gz`` -> ``x.csv.gz``: the name under which a comma-separated file is read as one."""
    name = path.name
    suffix = next((s for s in _COMPRESSION if name.lower().endswith(s)), "")
    stem = name[:len(name) - len(suffix)]
    return stem[:stem.rfind(".")] + ".csv" + suffix


def _data_row(r: int) -> str:
    return f"data row {r + 1}"


def read_table(path: Path, kind: str) -> pd.DataFrame:
    required, optional = SPECS[kind]
    sep = separator(path)
    id_cols = {c: str for c in required + optional if c not in ("rating", "timestamp")}
    try:
        df = pd.read_csv(path, sep=sep, dtype=id_cols, keep_default_na=True, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (expected a header row: {_spec(kind)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot parse as {'CSV' if sep == ',' else 'TSV'} ({msg})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if sep == "\t" and len(df.columns) == 1 and "," in df.columns[0]:  # one "column" a,b,c: it is a CSV
        raise DataError(f"{path}: the header {df.columns[0]!r} is comma-separated but the name says tab-separated; "
                        f"rename the file to {_as_csv_name(path)}")
    allowed = required + optional
    missing = [c for c in required if c not in df.columns]
    unknown = [c for c in df.columns if c not in allowed]
    if missing or unknown or len(set(df.columns)) != len(df.columns):
        raise DataError(f"{path}: {kind} columns must be {_spec(kind)}; found {','.join(df.columns)}")
    if kind == "interactions" and len(df) == 0:
        raise DataError(f"{path}: no data rows (only the header)")
    for col in df.columns:
        if col in id_cols:
            values = df[col]
            bad = values.isna() | (values.str.strip() == "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{path}: empty {col} id at data row {row + 1}")
            df[col] = values.str.strip().astype(object)
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        bad = rating.isna() & df["rating"].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: non-numeric rating {df['rating'].iloc[row]!r} at data row {row + 1}")
        df["rating"] = rating.astype("float64")
    if "timestamp" in df.columns:
        df["timestamp"] = parse_timestamps(df["timestamp"], path, _data_row)
    return df[[c for c in allowed if c in df.columns]].reset_index(drop=True)


def _spec(kind: str) -> str:
    required, optional = SPECS[kind]
    return ",".join(required) + "".join(f"[,{c}]" for c in optional)


@register("custom", raw_files=True, path_keys=("interactions", "social", "item_category", "coview"),
          required_keys=("interactions",), relations=("social", "category", "coview"),
          relation_keys={"social": "social", "category": "item_category", "coview": "coview"})
def load(cfg: dict[str, Any]) -> RawFrames:
    ccfg = cfg.get("dataset", {}).get("custom") or {}
    if not ccfg.get("interactions"):
        raise DataError("dataset.custom.interactions is not set (path to a CSV/TSV with user,item columns)")
    frames: dict[str, pd.DataFrame | None] = {}
    files: dict[str, str] = {}
    for kind in SPECS:
        value = ccfg.get(kind)
        if not value:
            frames[kind] = None
            continue
        path = resolve_path_or_url(cfg, "custom", str(value), kind)
        frames[kind] = read_table(path, kind)
        files[kind] = str(path)  # read_table keeps the file's row order: errors can name its rows
    name = ccfg.get("name") or Path(str(ccfg["interactions"])).name.split(".")[0]
    return RawFrames(name=str(name), interactions=frames["interactions"], social=frames["social"],
                     item_category=frames["item_category"], coview=frames["coview"], files=files)
