"""RawFrames -> Prepared: validate, implicit feedback, k-core, re-index, split.

Rules (all vectorised; documented in docs/data_format.md):

1. Validation. Ids must be present (no NaN/empty). Numeric id columns must hold
   non-negative integers. ``rating`` and ``timestamp`` must not be NaN. Any
   violation is a DataError naming the frame, column, value and row; when the frame
   came straight from a file (``RawFrames.files``) it names that file and the 1-based
   data row, otherwise the dataset and the 0-based frame row.
2. Duplicate (user, item) rows are merged, keeping the latest one: the row with the
   largest timestamp, or the last row in file order when there is no timestamp
   (ties on the timestamp also go to the later row). The count is in the stats.
3. Implicit feedback: with ``implicit_threshold`` null every interaction is a
   positive; otherwise only rows with ``rating >= implicit_threshold``.
4. Iterative k-core: drop users with < ``user_core`` and items with < ``item_core``
   interactions, repeatedly, until both hold for every kept user and item.
5. New ids are contiguous and 0-based, in sorted raw-id order (numeric order for
   numeric raw ids, lexicographic for strings); ``*_raw`` arrays map back.
6. Side relations keep only links whose endpoints survived; social and co-view are
   made undirected (both directions stored), de-duplicated, without self-loops.
   Categories are re-indexed over the categories of kept items only.
7. Per-user split with ratios (train, valid, test). For a user with ``n`` items:
   ``valid = round(n * r_valid)``, ``test = round(n * r_test)`` (half up), each at
   least 1 when its ratio is > 0, then capped so that train keeps >= 1 item, valid
   before test. Hence n=1 -> all train; n=2 -> 1 train + 1 valid; n=3 -> 1/1/1;
   n=5 -> 3/1/1; n=10 -> 8/1/1; n=20 -> 16/2/2.
   ``random``: items are assigned in a seeded random order. ``temporal``: in time
   order (earliest to train, latest to test; ties broken by the seeded order).
   The result depends only on the set of rows (not their order) and ``seed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pmtrec.data.frames import Prepared, RawFrames
from pmtrec.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- options
def _options(pcfg: dict[str, Any]) -> dict[str, Any]:
    from pmtrec.config import defaults

    pcfg = {**defaults()["preprocess"], **(pcfg or {})}  # one set of defaults: pmtrec/defaults.yaml
    thr = pcfg.get("implicit_threshold")
    if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr)):
        raise ConfigError(f"preprocess.implicit_threshold: expected null or a number, got {thr!r}")
    cores = {}
    for key in ("user_core", "item_core"):
        value = pcfg[key]
        if value is None:
            value = 1
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"preprocess.{key}: expected a non-negative integer, got {value!r}")
        cores[key] = max(1, value)
    split = pcfg["split"]
    if split not in ("random", "temporal"):
        raise ConfigError(f"preprocess.split: expected random or temporal, got {split!r}")
    ratios = pcfg["ratios"]
    ok = isinstance(ratios, (list, tuple)) and len(ratios) == 3 and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r >= 0 for r in ratios)
    if not ok or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
        raise ConfigError(f"preprocess.ratios: expected [train, valid, test] >= 0 summing to 1 with train > 0, "
                          f"got {ratios!r}")
    seed = pcfg["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"preprocess.seed: expected an integer, got {seed!r}")
    return {"implicit_threshold": thr, **cores, "split": split, "ratios": [float(r) for r in ratios],
            "seed": seed}


# ----------------------------------------------------------------------------- validation
def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


class _Places:
    """Where an error is: the frame's file and 1-based data row when it was read straight from
    a file (``RawFrames.files``), else the dataset name and the 0-based frame row."""

    def __init__(self, dataset: str, files: dict[str, str] | None = None):
        self.dataset, self.files = dataset, dict(files or {})

    def src(self, frame: str) -> str:
        return str(self.files.get(frame.split(".")[0], self.dataset))

    def row(self, frame: str, r: int) -> str:
        return f"data row {r + 1}" if frame.split(".")[0] in self.files else f"row {r}"


def _canon_ids(columns: list[tuple[str, pd.Series]], dataset: str | _Places) -> list[np.ndarray]:
    """One id namespace (e.g. users across interactions and social): int64 when every
    column is numeric (validated: integral, >= 0), otherwise str."""
    at = dataset if isinstance(dataset, _Places) else _Places(dataset)
    for where, col in columns:
        na = col.isna().to_numpy()
        if na.any():
            raise DataError(f"{at.src(where)}: {where} has a missing id at {at.row(where, _first_row(na))}")
    numeric = all(_is_numeric(col) for _, col in columns)
    out = []
    for where, col in columns:
        if numeric:
            values = col.to_numpy()
            if values.dtype.kind == "f":
                bad = ~np.isfinite(values) | (values != np.floor(values))
                if bad.any():
                    r = _first_row(bad)
                    raise DataError(f"{at.src(where)}: {where} has non-integer id {values[r].item()!r} "
                                    f"at {at.row(where, r)}")
            if values.dtype.kind in "iuf":
                neg = values < 0
                if neg.any():
                    r = _first_row(neg)
                    raise DataError(f"{at.src(where)}: {where} has negative id {values[r].item()!r} "
                                    f"at {at.row(where, r)}")
            out.append(values.astype(np.int64))
        else:
            out.append(col.astype(str).to_numpy(dtype=object))
    return out


def _check_column(df: pd.DataFrame, col: str, at: _Places) -> np.ndarray:
    where = f"interactions.{col}"
    num = pd.to_numeric(df[col], errors="coerce")
    bad = (num.isna() & df[col].notna()).to_numpy()
    if bad.any():
        r = _first_row(bad)
        raise DataError(f"{at.src(where)}: {where} is not numeric: {df[col].iloc[r]!r} at {at.row(where, r)}")
    values = num.to_numpy(dtype=np.float64)
    na = np.isnan(values)
    if na.any():
        kind = "NaN rating" if col == "rating" else "missing timestamp"
        raise DataError(f"{at.src(where)}: {where} has {int(na.sum())} {kind}(s), first at "
                        f"{at.row(where, _first_row(na))}")
    return values


def _require(df: pd.DataFrame | None, cols: tuple[str, ...], what: str, at: _Places) -> None:
    if df is None:
        return
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{at.src(what)}: {what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{at.src(what)}: {what} lacks column(s) {', '.join(missing)} "
                        f"(has {', '.join(map(str, df.columns))})")


# ----------------------------------------------------------------------------- helpers
def _map(values: np.ndarray, uniques: pd.Index, new_of_code: np.ndarray) -> np.ndarray:
    """Raw values -> new ids (-1 where unknown or dropped)."""
    codes = uniques.get_indexer(values)
    return np.where(codes >= 0, new_of_code[np.maximum(codes, 0)], -1)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    if len(x) == 0:
        return x
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def undirected(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Both directions of every link, de-duplicated, no self-loops, sorted: (m, 2) int64."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    keep = (a != b) & (a >= 0) & (b >= 0)
    a, b = a[keep], b[keep]
    key = _sorted_unique(np.concatenate([a * n + b, b * n + a]))
    return np.stack([key // n, key % n], axis=1).astype(np.int64)


def split_counts(counts: np.ndarray, ratios: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user (train, valid, test) sizes; see rule 7 of the module doc."""
    counts = np.asarray(counts, dtype=np.int64)
    _, rv, rt = ratios
    v = np.floor(counts * rv + 0.5).astype(np.int64)
    t = np.floor(counts * rt + 0.5).astype(np.int64)
    if rv > 0:
        v = np.maximum(v, 1)
    if rt > 0:
        t = np.maximum(t, 1)
    v = np.clip(np.minimum(v, counts - 1), 0, None)
    t = np.clip(np.minimum(t, counts - 1 - v), 0, None)
    return counts - v - t, v, t


def split_labels(users: np.ndarray, n_users: int, ratios: list[float], seed: int,
                 timestamps: np.ndarray | None = None) -> np.ndarray:
    """Split label (0 train, 1 valid, 2 test) per row; rows must be sorted by (user, item)."""
    n = len(users)
    rng = np.random.default_rng(seed)
    if timestamps is None:
        key = rng.random(n)  # users are integers and key in [0, 1): one float sort suffices
        order = np.argsort(users.astype(np.float64) + key, kind="stable")
    else:  # by user, then timestamp, ties in random order
        perm = rng.permutation(n)
        by_time = perm[np.argsort(timestamps[perm], kind="stable")]
        time_rank = np.empty(n, dtype=np.int64)
        time_rank[by_time] = np.arange(n)
        order = np.argsort(users.astype(np.int64) * n + time_rank)
    u_sorted = users[order]
    counts = np.bincount(users, minlength=n_users)
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - starts[u_sorted]
    n_train, n_valid, _ = split_counts(counts, ratios)
    lab_sorted = np.where(rank < n_train[u_sorted], 0,
                          np.where(rank < (n_train + n_valid)[u_sorted], 1, 2)).astype(np.int8)
    labels = np.empty(n, dtype=np.int8)
    labels[order] = lab_sorted
    return labels


def kcore(u: np.ndarray, i: np.ndarray, user_core: int, item_core: int) -> tuple[np.ndarray, int]:
    """Boolean mask of rows kept by the iterative (user_core, item_core)-core, and the rounds."""
    keep_idx = np.arange(len(u))
    nu = int(u.max()) + 1 if len(u) else 0
    ni = int(i.max()) + 1 if len(i) else 0
    cu, ci = u, i
    rounds = 0
    while len(keep_idx):
        du = np.bincount(cu, minlength=nu)
        di = np.bincount(ci, minlength=ni)
        ok = (du[cu] >= user_core) & (di[ci] >= item_core)
        if ok.all():
            break
        rounds += 1
        keep_idx, cu, ci = keep_idx[ok], cu[ok], ci[ok]
    mask = np.zeros(len(u), dtype=bool)
    mask[keep_idx] = True
    return mask, rounds


def _category_names(cats: pd.Index, names: dict[Any, str] | None) -> np.ndarray:
    """The category_map labels: the source's name of each raw category where it gives one
    (ids keep their order: the names only label them), else the raw value as a string."""
    labels = pd.Series(cats.astype(str), index=cats)
    if names:
        named = pd.Series(names, dtype=object)
        if cats.dtype.kind in "iu":  # raw ids are int64 here; the name list may key them as ints or strs
            named.index = pd.to_numeric(named.index.astype(str), errors="coerce")
        hit = named.reindex(cats)
        labels = hit.where(hit.notna(), labels).astype(str)
    return labels.to_numpy(dtype=object)


# ----------------------------------------------------------------------------- main
def preprocess(raw: RawFrames, pcfg: dict[str, Any]) -> Prepared:
    opts = _options(pcfg)
    name = str(raw.name)
    at = _Places(name, raw.files)
    src = at.src("interactions")  # errors about the interactions as a whole name their file
    inter = raw.interactions
    _require(inter, ("user", "item"), "interactions", at)
    _require(raw.social, ("user", "friend"), "social", at)
    _require(raw.item_category, ("item", "category"), "item_category", at)
    _require(raw.coview, ("item", "other"), "coview", at)
    if inter is None or len(inter) == 0:
        raise DataError(f"{src}: interactions are empty")

    social, icat, coview = raw.social, raw.item_category, raw.coview
    user_cols = [("interactions.user", inter["user"])]
    if social is not None:
        user_cols += [("social.user", social["user"]), ("social.friend", social["friend"])]
    item_cols = [("interactions.item", inter["item"])]
    if icat is not None:
        item_cols += [("item_category.item", icat["item"])]
    if coview is not None:
        item_cols += [("coview.item", coview["item"]), ("coview.other", coview["other"])]
    users_all = _canon_ids(user_cols, at)
    items_all = _canon_ids(item_cols, at)
    rating = _check_column(inter, "rating", at) if "rating" in inter.columns else None
    ts = _check_column(inter, "timestamp", at) if "timestamp" in inter.columns else None
    if opts["split"] == "temporal" and ts is None:
        raise DataError(f"{src}: preprocess.split=temporal needs a timestamp column; interactions have none")
    if opts["implicit_threshold"] is not None and rating is None:
        raise DataError(f"{src}: preprocess.implicit_threshold={opts['implicit_threshold']} needs a rating "
                        "column; interactions have none")

    ucode, uuniq = pd.factorize(users_all[0], sort=True)
    icode, iuniq = pd.factorize(items_all[0], sort=True)
    ucode = ucode.astype(np.int64)
    icode = icode.astype(np.int64)
    n_raw = len(ucode)

    # 2. duplicates: keep the latest (largest timestamp, then last row)
    pair = ucode * len(iuniq) + icode
    keep = np.ones(n_raw, dtype=bool)
    repeated = np.flatnonzero(pd.Series(pair).duplicated(keep=False).to_numpy())
    if len(repeated):
        if ts is not None:  # ties keep file order
            repeated = repeated[np.argsort(ts[repeated], kind="stable")]
        keep[repeated[pd.Series(pair[repeated]).duplicated(keep="last").to_numpy()]] = False
    rows = np.flatnonzero(keep)
    duplicates = n_raw - len(rows)

    # 3. implicit conversion
    if opts["implicit_threshold"] is not None:
        rows = rows[rating[rows] >= opts["implicit_threshold"]]
        if len(rows) == 0:
            raise DataError(f"{src}: no interactions with rating >= implicit_threshold="
                            f"{opts['implicit_threshold']} (empty after filtering)")
    n_implicit = len(rows)

    # 4. k-core
    mask, rounds = kcore(ucode[rows], icode[rows], opts["user_core"], opts["item_core"])
    rows = rows[mask]
    if len(rows) == 0:
        raise DataError(f"{src}: empty after filtering (user_core={opts['user_core']}, "
                        f"item_core={opts['item_core']}, {n_implicit} interactions before k-core)")

    # 5. contiguous ids in sorted raw order
    u_c, i_c = ucode[rows], icode[rows]
    kept_u = np.flatnonzero(np.bincount(u_c, minlength=len(uuniq)))
    kept_i = np.flatnonzero(np.bincount(i_c, minlength=len(iuniq)))
    new_u = np.full(len(uuniq), -1, dtype=np.int64)
    new_u[kept_u] = np.arange(len(kept_u))
    new_i = np.full(len(iuniq), -1, dtype=np.int64)
    new_i[kept_i] = np.arange(len(kept_i))
    n_users, n_items = len(kept_u), len(kept_i)
    u, i = new_u[u_c], new_i[i_c]
    t = ts[rows] if ts is not None else None
    order = np.argsort(u * max(n_items, 1) + i)
    u, i = u[order], i[order]
    t = t[order] if t is not None else None
    user_raw = pd.Index(uuniq).take(kept_u).astype(str).to_numpy(dtype=object)
    item_raw = pd.Index(iuniq).take(kept_i).astype(str).to_numpy(dtype=object)
    uindex, iindex = pd.Index(uuniq), pd.Index(iuniq)

    # 6. side relations
    social_arr = coview_arr = icat_arr = None
    n_categories = 0
    category_raw = np.array([], dtype=object)
    if social is not None:
        a = _map(users_all[1], uindex, new_u)
        b = _map(users_all[2], uindex, new_u)
        social_arr = undirected(a, b, n_users)
        if len(social_arr) == 0:
            social_arr = None
    if coview is not None:
        k = 2 if icat is not None else 1
        a = _map(items_all[k], iindex, new_i)
        b = _map(items_all[k + 1], iindex, new_i)
        coview_arr = undirected(a, b, n_items)
        if len(coview_arr) == 0:
            coview_arr = None
    if icat is not None:
        it = _map(items_all[1], iindex, new_i)
        keep = it >= 0
        if keep.any():
            cats = _canon_ids([("item_category.category", icat["category"])], at)[0][keep]
            ccode, cuniq = pd.factorize(cats, sort=True)
            n_categories = len(cuniq)
            key = _sorted_unique(it[keep] * n_categories + ccode.astype(np.int64))
            icat_arr = np.stack([key // n_categories, key % n_categories], axis=1).astype(np.int64)
            category_raw = _category_names(pd.Index(cuniq), raw.category_names)

    # 7. split
    labels = split_labels(u, n_users, opts["ratios"], opts["seed"],
                          t if opts["split"] == "temporal" else None)
    pairs = np.stack([u, i], axis=1).astype(np.int64)
    prepared = Prepared(
        name=name, n_users=n_users, n_items=n_items, n_categories=n_categories,
        train=pairs[labels == 0], valid=pairs[labels == 1], test=pairs[labels == 2],
        social=social_arr, item_category=icat_arr, coview=coview_arr,
        user_raw=user_raw, item_raw=item_raw, category_raw=category_raw,
    )
    from pmtrec.data.stats import dataset_stats

    prepared.stats = {
        **dataset_stats(prepared),
        "raw_interactions": int(n_raw),
        "raw_users": int(len(uuniq)),
        "raw_items": int(len(iuniq)),
        "duplicates_removed": int(duplicates),
        "implicit_interactions": int(n_implicit),
        "kcore_rounds": int(rounds),
    }
    return prepared
