"""Per-user test metrics of a run: a compact ``.npz`` beside its result JSON, its writer and reader.

The file holds ``format`` (``"pmtrec.per_user/1"``), ``user`` (int64 user ids, ascending, unique)
and one float64 array per metric (``ndcg@20``, ``recall@20`` by default), aligned with ``user``;
it is compressed and written atomically (a reader never sees half a file). The paired user-level
tests of :mod:`pmtrec.study.comparisons` read it through :func:`per_user_frame`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pmtrec.errors import DataError, PmtrecError
from pmtrec.io import atomic_path

FORMAT = "pmtrec.per_user/1"
METRICS = ("ndcg@20", "recall@20")


def per_user_path(result_path: str | Path) -> Path:
    """Where the per-user file of a result JSON lives: ``run.json`` -> ``run.per_user.npz``."""
    return Path(result_path).with_suffix(".per_user.npz")


def write_per_user(path: str | Path, result, metrics: Sequence[str] = METRICS) -> Path:
    """Write ``metrics`` of an :class:`pmtrec.evaluate.EvalResult` (``users``, ``per_user``) to ``path``."""
    missing = [m for m in metrics if m not in result.per_user]
    if missing:
        raise PmtrecError(f"{path}: metric {missing[0]!r} was not evaluated (evaluated: "
                          f"{', '.join(sorted(result.per_user))})")
    users = np.asarray(result.users, dtype=np.int64)
    arrays = {"format": np.array(FORMAT), "user": users}
    for m in metrics:
        arrays[m] = np.asarray(result.per_user[m], dtype=np.float64)
        if arrays[m].shape != users.shape:
            raise PmtrecError(f"{path}: {m} has {arrays[m].size} values for {users.size} users")
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: savez adds no suffix
        np.savez_compressed(fh, **arrays)
    return path


def read_per_user(path: str | Path) -> pd.DataFrame:
    """The file as a frame: ``user`` then one column per metric; refuses a malformed file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no per-user metrics file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a per-user metrics file ({exc})") from None
    fmt = arrays.pop("format", None)
    if fmt is None or fmt.shape != () or str(fmt) != FORMAT:
        raise DataError(f"{path}: format is {None if fmt is None else str(fmt)!r}, expected {FORMAT!r}")
    users = arrays.pop("user", None)
    if users is None or users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise DataError(f"{path}: 'user' must be a 1-D integer array")
    if len(users) and (np.diff(users) <= 0).any():
        raise DataError(f"{path}: 'user' must be ascending and unique")
    if not arrays:
        raise DataError(f"{path}: no metric arrays")
    for key, v in arrays.items():
        if v.shape != users.shape or not np.issubdtype(v.dtype, np.floating):
            raise DataError(f"{path}: {key!r} must be {len(users)} floats (one per user), got {v.dtype} {v.shape}")
        bad = ~((v >= 0) & (v <= 1))  # every ranking metric lies in [0, 1]; also catches NaN
        if bad.any():
            raise DataError(f"{path}: {key!r} holds {v[bad][0]} for user {int(users[bad][0])} (outside [0, 1])")
    return pd.DataFrame({"user": users, **arrays})


def per_user_frame(path: str | Path, dataset: str, method: str, seed: int) -> pd.DataFrame:
    """:func:`read_per_user` with the run's keys in front (the ``per_user`` input of the comparisons)."""
    df = read_per_user(path)
    df.insert(0, "seed", int(seed))
    df.insert(0, "method", method)
    df.insert(0, "dataset", dataset)
    return df
