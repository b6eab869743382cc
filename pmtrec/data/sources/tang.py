"""Shared parser for the Tang et al. trust datasets (Ciao, Epinions) in MATLAB format.

``rating.mat`` holds variable ``rating``: one row per rating, columns
[user, item, category, rating, (helpfulness)] (Ciao has 5 columns, Epinions 4).
``trustnetwork.mat`` holds variable ``trustnetwork``: [truster, trustee].
Ids are 1-based integers and kept as raw ids. These files carry no timestamps.

Each item gets one category: the most frequent category among its rating rows
(ties -> the smallest category id). ``category.txt`` (lines ``<id> <name>``, CRLF, latin-1)
names the categories: the ids stay the raw ids (their numeric order gives the prepared ids),
and the names become the prepared ``category_map``'s labels; an id the file does not name is
labelled ``#<id>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pmtrec.data.fetch import resolve_files
from pmtrec.data.frames import RawFrames
from pmtrec.errors import DataError

RATING_FILE = "rating.mat"
TRUST_FILE = "trustnetwork.mat"
CATEGORY_FILE = "category.txt"


def read_mat_matrix(path: str | Path, variable: str, min_cols: int) -> np.ndarray:
    """Read a 2-D numeric matrix ``variable`` from a MATLAB v4/v5 file."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = scipy.io.loadmat(str(path), variable_names=None)
    except NotImplementedError as exc:  # v7.3 (HDF5) files
        raise DataError(f"{path}: unsupported MATLAB file ({exc})") from None
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError/OSError on junk
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable MATLAB file ({msg})") from None
    if variable not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DataError(f"{path}: MATLAB variable '{variable}' not found (found: {', '.join(found) or 'none'})")
    mat = data[variable]
    if hasattr(mat, "toarray"):
        mat = mat.toarray()
    mat = np.asarray(mat)
    if mat.ndim != 2 or mat.shape[1] < min_cols or mat.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: variable '{variable}' must be a numeric matrix with >= {min_cols} columns, "
            f"got shape {mat.shape} dtype {mat.dtype}"
        )
    return mat


def _columns(mat: np.ndarray, path: Path, variable: str, names: list[str]) -> dict[str, np.ndarray]:
    """Id columns as int64 (non-integral ids are DataErrors naming the column); ratings as float64."""
    out = {}
    for j, name in enumerate(names):
        col = mat[:, j]
        if name == "rating":
            out[name] = col.astype(np.float64)
            continue
        if col.dtype.kind == "f":
            bad = ~np.isfinite(col) | (col != np.round(col))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{path}: {variable} column {j + 1} ({name}) has non-integer id {col[row].item()!r} at row {row + 1}"
                )
        out[name] = col.astype(np.int64)
    return out


def item_majority_category(items: np.ndarray, cats: np.ndarray) -> pd.DataFrame:
    """One category per item: the most frequent one (ties -> smallest category)."""
    counts = pd.DataFrame({"item": items, "category": cats}).value_counts(sort=False).reset_index(name="n")
    counts = counts.sort_values(["item", "n", "category"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("item", keep="first")[["item", "category"]].reset_index(drop=True)


def read_category_names(path: str | Path) -> dict[int, str]:
    """Category id -> name from ``category.txt`` (one ``<id> <name>`` per line)."""
    path = Path(path)
    try:  # one whole line per row ("\x01" never occurs): the split is the regex below
        lines = pd.read_csv(path, sep="\x01", header=None, names=["line"], dtype=str, encoding="latin-1",
                            keep_default_na=False, quoting=3, skip_blank_lines=False)["line"]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read ({msg})") from None
    lines = lines.str.strip()
    lines = lines[lines != ""]
    parts = lines.str.extract(r"^(\d+)\s+(\S.*)$")
    bad = parts[0].isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {lines.index[r] + 1} must be '<id> <name>', got {lines.iloc[r]!r}")
    ids = parts[0].astype("int64")
    if ids.duplicated().any():
        raise DataError(f"{path}: category id {int(ids[ids.duplicated()].iloc[0])} is listed twice")
    return dict(zip(ids.tolist(), parts[1].tolist()))


def load_tang(cfg: dict[str, Any], source: str) -> RawFrames:
    paths = resolve_files(cfg, source)
    rating_path = paths.get(RATING_FILE)
    trust_path = paths.get(TRUST_FILE)
    if rating_path is None:
        raise DataError(f"dataset.{source}.files must list {RATING_FILE}")
    mat = read_mat_matrix(rating_path, "rating", 4)
    cols = _columns(mat[:, :4], rating_path, "rating", ["user", "item", "category", "rating"])
    interactions = pd.DataFrame({"user": cols["user"], "item": cols["item"], "rating": cols["rating"]})
    item_category = item_majority_category(cols["item"], cols["category"])
    social = None
    if trust_path is not None:
        tmat = read_mat_matrix(trust_path, "trustnetwork", 2)
        tcols = _columns(tmat[:, :2], trust_path, "trustnetwork", ["user", "friend"])
        social = pd.DataFrame(tcols)
    names = None
    if paths.get(CATEGORY_FILE) is not None:
        names = read_category_names(paths[CATEGORY_FILE])
        unnamed = np.setdiff1d(item_category["category"].unique(), np.fromiter(names, dtype=np.int64))
        names.update({int(c): f"#{int(c)}" for c in unnamed})
    return RawFrames(name=source, interactions=interactions, social=social,
                     item_category=item_category, coview=None, category_names=names)
