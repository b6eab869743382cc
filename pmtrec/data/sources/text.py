"""Reader of the delimited integer tables that public recommendation datasets ship as ``.dat``.

Used by the ``amazon-hin`` and ``lastfm`` sources. Every error is a one-line DataError naming
the file and, where there is one, the line (1-based, counting a header line).
"""

from __future__ import annotations

from pathlib import Path

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
