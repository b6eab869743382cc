"""Shared readers of delimited text tables.

``read_int_table``: the integer tables that public recommendation datasets ship as ``.dat``
(the ``amazon-hin`` and ``lastfm`` sources). ``parse_timestamps``: a timestamp column of
numbers or date strings (``custom``, ``recbole``). Every error is a one-line DataError naming
the file and, where there is one, the row or line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pmtrec.errors import DataError


def read_int_table(path: Path, columns: tuple[str, ...], *, sep: str, header: tuple[str, ...] | None = None,
                   encoding: str = "utf-8") -> pd.DataFrame:
    """A table of integer columns named ``columns``.

    ``header``: the exact column names of the file's header row (None: the file has no header).
    Extra columns beyond ``len(columns)`` are an error: a file with other columns is another format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    sep_name = "tab" if sep == "\t" else repr(sep)
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, encoding=encoding,
                         keep_default_na=False, engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot parse as {sep_name}-separated values ({msg})") from None
    first = 2 if header else 1  # file line of data row 0
    if header:
        found = tuple(str(c).strip() for c in df.columns)
        if found != tuple(header):
            raise DataError(f"{path}: header must be {sep.join(header)!r} ({sep_name}-separated); "
                            f"found {sep.join(found)!r}")
    elif df.shape[1] != len(columns):
        raise DataError(f"{path}: expected {len(columns)} {sep_name}-separated columns "
                        f"({', '.join(columns)}), found {df.shape[1]} on line 1")
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    out = {}
    for j, name in enumerate(columns):
        raw = df.iloc[:, j].str.strip()
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna().to_numpy() | (values.to_numpy() != np.floor(values.to_numpy()))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: line {row + first}: {name} must be an integer, got {raw.iloc[row]!r}")
        out[name] = values.to_numpy().astype(np.int64)
    return pd.DataFrame(out)


def parse_timestamps(col: pd.Series, path: Path, where: Callable[[int], str]) -> pd.Series:
    """Numbers (any unit; int64 when all integral) or date/time strings (Unix seconds, UTC).

    ``where(row)``: how an error names the 0-based frame row (e.g. ``data row 3``, ``line 4``).
    The column is numbers or dates, whichever most values are; the first value that is not
    (a date among numbers, a number among dates: no unit to convert by) is the error.
    """
    text = col.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy()
    if missing.any():
        raise DataError(f"{path}: missing timestamp at {where(int(np.flatnonzero(missing)[0]))}")
    num = pd.to_numeric(text, errors="coerce")
    is_num = num.notna().to_numpy()
    if is_num.all():
        return num.astype("float64") if (num != np.floor(num)).any() else num.astype("int64")
    dates = pd.to_datetime(text.astype(object), utc=True, format="mixed", errors="coerce")
    is_date = dates.notna().to_numpy() & ~is_num
    numeric = is_num.sum() >= is_date.sum()
    bad = ~is_num if numeric else ~is_date  # not all numbers: with `numeric`, some row is bad
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        what = ("a date among numbers" if numeric and is_date[r] else "a number among dates" if is_num[r]
                else "neither a number nor a date")
        raise DataError(f"{path}: timestamp {text.iloc[r]!r} at {where(r)} is {what}")
    return pd.Series((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), index=col.index).astype("int64")
