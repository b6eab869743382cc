"""Read and write the canonical prepared format (see docs/data_format.md).

A prepared dataset is a directory, written atomically (temp dir + rename):

    interactions.parquet   user:int64, item:int64, split:string (train|valid|test)
    social.parquet         user:int64, friend:int64   (both directions; only if present)
    item_category.parquet  item:int64, category:int64 (only if present)
    coview.parquet         item:int64, other:int64    (both directions; only if present)
    user_map.parquet       id:int64, raw_id:string
    item_map.parquet       id:int64, raw_id:string
    category_map.parquet   id:int64, raw_id:string    (empty when no categories)
    stats.json / stats.csv the statistics (one row in the CSV)
    meta.json              format, version, sizes, SHA-256 of every file above
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pmtrec.data.fetch import sha256_file
from pmtrec.data.frames import Prepared
from pmtrec.errors import DataError

FORMAT = "pmtrec-prepared"
VERSION = 1
SPLITS = ("train", "valid", "test")
RELATIONS = {"social": ("user", "friend"), "item_category": ("item", "category"), "coview": ("item", "other")}
MAPS = {"user_map": "user_raw", "item_map": "item_raw", "category_map": "category_raw"}


def _pairs_table(arr: np.ndarray, cols: tuple[str, str]) -> pa.Table:
    arr = np.asarray(arr, dtype=np.int64).reshape(-1, 2)
    return pa.table({cols[0]: pa.array(arr[:, 0]), cols[1]: pa.array(arr[:, 1])})


def _map_table(raw: np.ndarray) -> pa.Table:
    raw = np.asarray(raw, dtype=object)
    return pa.table({"id": pa.array(np.arange(len(raw), dtype=np.int64)),
                     "raw_id": pa.array([str(x) for x in raw], type=pa.string())})


def _stats_csv(stats: dict[str, Any]) -> str:
    flat = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(flat))
    writer.writerow(list(flat.values()))
    return buf.getvalue()


def write_prepared(p: Prepared, out_dir: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write ``p`` to ``out_dir`` atomically (an existing directory is replaced)."""
    from pmtrec import __version__
    from pmtrec.io import _json_default, atomic_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the usual directory mode
        parts = [p.train, p.valid, p.test]
        users = np.concatenate([np.asarray(a, dtype=np.int64).reshape(-1, 2)[:, 0] for a in parts])
        items = np.concatenate([np.asarray(a, dtype=np.int64).reshape(-1, 2)[:, 1] for a in parts])
        labels = np.repeat(np.arange(3, dtype=np.int8), [len(a) for a in parts])
        split = pa.DictionaryArray.from_arrays(pa.array(labels), pa.array(list(SPLITS))).cast(pa.string())
        pq.write_table(pa.table({"user": users, "item": items, "split": split}), tmp / "interactions.parquet")
        for rel, cols in RELATIONS.items():
            arr = getattr(p, rel)
            if arr is not None:
                pq.write_table(_pairs_table(arr, cols), tmp / f"{rel}.parquet")
        for fname, attr in MAPS.items():
            pq.write_table(_map_table(getattr(p, attr)), tmp / f"{fname}.parquet")
        (tmp / "stats.json").write_text(json.dumps(p.stats, indent=2, default=_json_default) + "\n")
        (tmp / "stats.csv").write_text(_stats_csv(p.stats))
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        meta = {
            "format": FORMAT, "version": VERSION, "pmtrec_version": __version__, "name": p.name,
            "n_users": int(p.n_users), "n_items": int(p.n_items), "n_categories": int(p.n_categories),
            "relations": [rel for rel in RELATIONS if getattr(p, rel) is not None],
            "files": files, **(extra_meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    return out_dir


def read_meta(in_dir: str | os.PathLike) -> dict[str, Any]:
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise DataError(f"{in_dir}: prepared dataset directory not found")
    path = in_dir / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: missing (not a prepared dataset directory)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: corrupt JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} meta file")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: format version {meta.get('version')!r} is not supported (expected {VERSION}); "
                        "prepare the dataset again")
    for key in ("name", "n_users", "n_items", "n_categories", "files"):
        if key not in meta:
            raise DataError(f"{path}: lacks key '{key}'")
    return meta


def _read_table(path: Path, cols: tuple[str, ...]) -> pa.Table:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError on junk
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt parquet file ({msg})") from None
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: lacks column(s) {', '.join(missing)}")
    return table


def _ids(table: pa.Table, col: str, n: int, path: Path) -> np.ndarray:
    arr = table.column(col).to_numpy().astype(np.int64, copy=False)
    if len(arr) and (arr.min() < 0 or arr.max() >= n):
        raise DataError(f"{path}: column {col} has ids outside [0, {n})")
    return arr


def read_prepared(in_dir: str | os.PathLike, verify: bool = True) -> Prepared:
    """Load a prepared dataset; missing, corrupt or inconsistent files are DataErrors."""
    in_dir = Path(in_dir)
    meta = read_meta(in_dir)
    files: dict[str, str] = meta["files"]
    required = ["interactions.parquet", *(f"{m}.parquet" for m in MAPS), "stats.json"]
    for name in required + [f"{rel}.parquet" for rel in meta.get("relations", [])]:
        if name not in files:
            raise DataError(f"{in_dir / 'meta.json'}: does not list {name}")
    for name, digest in files.items():
        path = in_dir / name
        if not path.is_file():
            raise DataError(f"{path}: missing from prepared dataset")
        if verify and sha256_file(path) != digest:
            raise DataError(f"{path}: SHA-256 differs from meta.json (file corrupt or modified)")
    n_users, n_items, n_cat = int(meta["n_users"]), int(meta["n_items"]), int(meta["n_categories"])

    maps = {}
    for fname, attr in MAPS.items():
        path = in_dir / f"{fname}.parquet"
        table = _read_table(path, ("id", "raw_id"))
        ids = table.column("id").to_numpy()
        expected = {"user_map": n_users, "item_map": n_items, "category_map": n_cat}[fname]
        if len(ids) != expected or not np.array_equal(ids, np.arange(expected)):
            raise DataError(f"{path}: ids must be 0..{expected - 1} in order (meta.json says {expected})")
        maps[attr] = np.asarray(table.column("raw_id").to_pylist(), dtype=object)

    path = in_dir / "interactions.parquet"
    table = _read_table(path, ("user", "item", "split"))
    users = _ids(table, "user", n_users, path)
    items = _ids(table, "item", n_items, path)
    split_col = table.column("split")
    parts = {}
    known = np.zeros(len(users), dtype=bool)
    for name in SPLITS:
        mask = pc.fill_null(pc.equal(pc.cast(split_col, pa.string()), name), False).to_numpy(zero_copy_only=False)
        known |= mask
        parts[name] = np.stack([users[mask], items[mask]], axis=1)
    if not known.all():
        raise DataError(f"{path}: column split has values other than train/valid/test")

    rels: dict[str, np.ndarray | None] = {}
    for rel, cols in RELATIONS.items():
        if rel not in meta.get("relations", []):
            rels[rel] = None
            continue
        path = in_dir / f"{rel}.parquet"
        table = _read_table(path, cols)
        n_a = n_users if cols[0] == "user" else n_items
        n_b = {"friend": n_users, "category": n_cat, "other": n_items}[cols[1]]
        rels[rel] = np.stack([_ids(table, cols[0], n_a, path), _ids(table, cols[1], n_b, path)], axis=1)

    try:
        stats = json.loads((in_dir / "stats.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{in_dir / 'stats.json'}: corrupt JSON ({exc})") from None
    return Prepared(
        name=str(meta["name"]), n_users=n_users, n_items=n_items, n_categories=n_cat,
        train=parts["train"], valid=parts["valid"], test=parts["test"],
        social=rels["social"], item_category=rels["item_category"], coview=rels["coview"],
        user_raw=maps["user_raw"], item_raw=maps["item_raw"], category_raw=maps["category_raw"],
        stats=stats,
    )


# Keys that only locate raw files: a run may differ from its prepared folder in these.
LOCATION_KEYS = ("dataset.mirror", "dataset.cache", "dataset.manifest")


def adopt_prepared_config(cfg: dict[str, Any], in_dir: str | os.PathLike, explicit: set[str]
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run config with the ``dataset`` and ``preprocess`` sections the folder was prepared
    with (meta.json), and the folder's identity for the result (path, config hash, files hash).

    A key the caller set explicitly (``explicit``: dotted keys of --config and --set) that
    differs from the folder's is a one-line DataError: the run would record one dataset and
    train on another.
    """
    import copy
    import hashlib

    in_dir = Path(in_dir)
    meta = read_meta(in_dir)
    files_hash = hashlib.sha256(json.dumps(meta["files"], sort_keys=True).encode()).hexdigest()[:16]
    info = {"path": str(in_dir), "config_hash": meta.get("config_hash"), "files_hash": files_hash}
    prepared = meta.get("config")
    if not isinstance(prepared, dict):  # written without its config: nothing to adopt
        return cfg, info
    from pmtrec.config import flatten_keys

    ours = flatten_keys({k: cfg.get(k) or {} for k in ("dataset", "preprocess")})
    theirs = flatten_keys({k: prepared.get(k) or {} for k in ("dataset", "preprocess")})
    for key in sorted(explicit):
        if key in theirs and key not in LOCATION_KEYS and ours.get(key) != theirs[key]:
            raise DataError(f"{key}: {ours.get(key)!r} conflicts with {in_dir / 'meta.json'}, prepared with "
                            f"{theirs[key]!r} (drop the key: the run takes the folder's dataset and preprocess "
                            "settings; or prepare again)")
    def merged(base: Any, update: Any) -> Any:  # the folder's values win, keys it lacks stay
        if isinstance(base, dict) and isinstance(update, dict):
            return {**base, **{k: merged(base.get(k), v) for k, v in update.items()}}
        return copy.deepcopy(update)

    out = copy.deepcopy(cfg)
    for section in ("dataset", "preprocess"):
        out[section] = merged(out.get(section) or {}, prepared.get(section) or {})
    for key in LOCATION_KEYS:  # where the raw files are is the run's own business
        section, leaf = key.split(".")
        if leaf in (cfg.get(section) or {}):
            out[section][leaf] = cfg[section][leaf]
    return out, info


def read_stats(in_dir: str | os.PathLike) -> dict[str, Any]:
    """The statistics of a prepared folder (stats.json)."""
    path = Path(in_dir) / "stats.json"
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dataset statistics ({exc})") from None
    if not isinstance(stats, dict):
        raise DataError(f"{path}: not a statistics mapping")
    return stats


def read_degrees(in_dir: str | os.PathLike, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """User and item degrees (number of interactions, of one split or all) of a prepared folder."""
    path = Path(in_dir) / "interactions.parquet"
    if not path.is_file():
        raise DataError(f"{path}: prepared interactions missing (run: snakemake --cores 1 prepare)")
    try:
        table = pq.read_table(path, columns=["user", "item", "split"])
    except Exception as exc:  # pyarrow raises several types; one line is what matters
        raise DataError(f"{path}: cannot read prepared interactions ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    if table.num_rows == 0:
        raise DataError(f"{path}: no interactions")
    users = table["user"].to_numpy()
    items = table["item"].to_numpy()
    return np.bincount(users), np.bincount(items)
