"""``pmtrec compare``: does a rerun reproduce a reference study's ``summary.csv`` within its intervals?

Per (kind, dataset, method, variant, split, metric) row of the reference, the rerun's mean must lie
within the reference mean's two-sided ``level`` Student-t interval over seeds, ``mean +- t_{(1+level)/2,
n-1} * std / sqrt(n)``, widened on both sides by ``atol``. A row with n = 1 (no std) or std = 0 has a
zero-width interval, so it compares within ``atol``: a deterministic rerun must match bitwise, up to
the CSV's rounding. ``ref_low`` and ``ref_high`` are the t interval itself, without ``atol``.

Statuses: ``ok``; ``outside`` (the new mean is outside the widened interval, or is NaN where the
reference's is not); ``missing`` (the row is not in the new tables); ``extra`` (a row only in the new
tables, under the same filters: listed, never a failure). Two NaN means (e.g. a metric no seed
produced) are ``ok``: the rerun reproduced the same outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pmtrec.errors import ConfigError, PmtrecError

KEYS = ["kind", "dataset", "method", "variant", "split", "metric"]
COLUMNS = KEYS + ["mean", "std", "n"]
OUTPUT = KEYS + ["ref_mean", "ref_low", "ref_high", "ref_n", "new_mean", "new_n", "status"]
STATUSES = ("ok", "outside", "missing", "extra")
_NAN_TEXT = ("", "nan", "NaN", "NA")  # what pandas writes for NaN (""), and the usual spellings


def summary_path(path: str | Path) -> Path:
    """``path`` itself (a summary.csv), ``path/summary.csv`` (a tables folder) or
    ``path/tables/summary.csv`` (a results folder), whichever exists first."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / "summary.csv", path / "tables" / "summary.csv"):
        if candidate.is_file():
            return candidate
    where = "does not exist" if not path.exists() else "has neither summary.csv nor tables/summary.csv"
    raise PmtrecError(f"{path}: no summary table ({where}; expected a tables or results folder)")


def read_summary(path: str | Path) -> pd.DataFrame:
    """The summary table under ``path`` (see :func:`summary_path`): key columns as text, ``variant``
    "" for main runs, mean and std as floats (NaN where empty) and n as an integer."""
    file = summary_path(path)
    try:
        # every column as text first: an empty variant stays "", and a bad number is found below
        df = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # EmptyDataError and ParserError are ValueErrors
        raise PmtrecError(f"{file}: cannot read it as CSV ({' '.join(str(exc).split())})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise PmtrecError(f"{file}: no column {', '.join(missing)} (a summary.csv has {', '.join(COLUMNS)})")
    df = df[COLUMNS].copy()
    for col in ("mean", "std", "n"):
        text = df[col].str.strip()
        value = pd.to_numeric(text.mask(text.isin(_NAN_TEXT)), errors="coerce")
        bad = value.isna() & ~text.isin(_NAN_TEXT)
        if col == "n":
            bad |= value.isna() | (value < 0) | (value != value.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PmtrecError(f"{file}: line {row + 2}: {col} {df[col].iloc[row]!r} is not "
                              + ("a count" if col == "n" else "a number"))
        df[col] = value.astype(int) if col == "n" else value.astype(float)
    duplicated = df.duplicated(KEYS)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        key = "/".join(df[KEYS].iloc[row])
        raise PmtrecError(f"{file}: line {row + 2}: {key} appears twice (one row per kind/dataset/method/"
                          "variant/split/metric)")
    return df


def _select(df: pd.DataFrame, filters: dict[str, tuple[str, ...] | None]) -> pd.DataFrame:
    keep = np.ones(len(df), dtype=bool)
    for col, values in filters.items():
        if values is not None:
            keep &= df[col].isin(values).to_numpy()
    return df[keep]


def _filters(metrics, splits, kinds) -> dict[str, tuple[str, ...] | None]:
    return {col: None if values is None else tuple(str(v) for v in values)
            for col, values in (("metric", metrics), ("split", splits), ("kind", kinds))}


def confidence_bounds(mean, std, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided ``level`` Student-t interval of a mean over n seeds (zero width where n <= 1)."""
    from scipy import stats

    mean, std, n = (np.asarray(x, dtype=float) for x in (mean, std, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf((1 + level) / 2, np.where(n > 1, n - 1, np.nan))
        half = np.where(n > 1, t * std / np.sqrt(n), 0.0)
    return mean - half, mean + half


def compare_tables(reference: str | Path, new: str | Path, metrics: Iterable[str] | None = ("ndcg@20", "recall@20"),
                   splits: Iterable[str] | None = ("test",), kinds: Iterable[str] | None = None,
                   level: float = 0.95, atol: float = 1e-6) -> pd.DataFrame:
    """One row per reference row (filtered to ``metrics``, ``splits`` and ``kinds``; None: all) with
    its interval, the new mean and a status, then the ``extra`` rows (see the module doc).

    A filter value the reference does not have is a :class:`ConfigError` (a typo would otherwise
    compare nothing and pass), and so is a ``level`` outside (0, 1) or a negative ``atol``.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level: expected a number between 0 and 1 (exclusive), got {level}")
    if not atol >= 0:
        raise ConfigError(f"atol: expected a number >= 0, got {atol}")
    ref_file = summary_path(reference)
    filters = _filters(metrics, splits, kinds)
    ref_all = read_summary(ref_file)
    for col, values in filters.items():
        unknown = [v for v in values or () if v not in set(ref_all[col])]
        if unknown:
            has = ", ".join(sorted(set(ref_all[col]))) or "none"
            raise ConfigError(f"{col} {', '.join(unknown)}: not in {ref_file} (it has: {has})")
    ref = _select(ref_all, filters).rename(columns={"mean": "ref_mean", "std": "ref_std", "n": "ref_n"})
    fresh = _select(read_summary(new), filters).rename(columns={"mean": "new_mean", "n": "new_n"})
    fresh = fresh.drop(columns="std")

    # a left merge keeps the reference's row order; the anti-join gives the rows only the rerun has
    rows = ref.merge(fresh, on=KEYS, how="left", indicator="_in")
    extra = fresh.merge(ref[KEYS], on=KEYS, how="left", indicator="_in")
    extra = extra[extra["_in"] == "left_only"]
    low, high = confidence_bounds(rows["ref_mean"], rows["ref_std"], rows["ref_n"], level)
    new_mean, ref_mean = rows["new_mean"].to_numpy(float), rows["ref_mean"].to_numpy(float)
    within = (new_mean >= low - atol) & (new_mean <= high + atol)
    same_nan = np.isnan(new_mean) & np.isnan(ref_mean)
    rows = rows.assign(ref_low=low, ref_high=high,
                       status=np.select([rows["_in"].to_numpy() == "left_only", within | same_nan],
                                        ["missing", "ok"], "outside"))
    extra = extra.assign(ref_mean=np.nan, ref_low=np.nan, ref_high=np.nan, ref_n=pd.NA, status="extra")
    out = pd.concat([rows[OUTPUT], extra[OUTPUT]], ignore_index=True)
    return out.astype({"ref_n": "Int64", "new_n": "Int64"})


def counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows of each status (every status, 0 where none)."""
    found = table["status"].value_counts()
    return {s: int(found.get(s, 0)) for s in STATUSES}


def summary_line(table: pd.DataFrame, level: float = 0.95) -> str:
    """E.g. ``compare: 117 of 120 rows within the reference's 95% intervals, 2 outside, 1 missing``."""
    c = counts(table)
    compared = c["ok"] + c["outside"] + c["missing"]
    text = f"compare: {c['ok']} of {compared} rows within the reference's {level * 100:g}% intervals"
    text += "".join(f", {c[s]} {s}" for s in ("outside", "missing") if c[s])
    if c["extra"]:
        text += f" ({c['extra']} extra row{'s' * (c['extra'] != 1)} only in the new tables, not compared)"
    return text


def failures_text(table: pd.DataFrame, limit: int = 40, full: str | Path | None = None) -> str:
    """The rows that are not ``ok`` as a plain-text table ("" when none): at most ``limit``, then a
    line saying how many more there are (and that ``full``, the whole table's file, has them)."""
    shown = table[table["status"] != "ok"]
    if shown.empty:
        return ""
    # blanks, not NaN or <NA>, where a side has no row; 6 significant digits (the CSV has them all)
    view = shown.head(limit).astype(object)
    for col in ("ref_mean", "ref_low", "ref_high", "new_mean"):
        view[col] = [f"{x:.6g}" if pd.notna(x) else "" for x in shown[col].head(limit)]
    view = view.where(view.notna(), "")
    more = len(shown) - limit
    return view.to_string(index=False) + (f"\n... and {more} more rows" + (f" (all in {full})" if full else "")
                                          if more > 0 else "")
