"""Probes and maps of saved runs: a result JSON names its embeddings file (beside it) and hash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pmtrec.errors import DataError

PROBES_SCHEMA = "pmtrec.probes/1"


def read_probes(path: str | Path) -> dict:
    """A probes JSON written by ``pmtrec probe`` (:func:`probe_run`)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: probes file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a probes JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("schema") != PROBES_SCHEMA:
        raise DataError(f"{path}: not a {PROBES_SCHEMA} file")
    return record


def run_embeddings(path: str | Path):
    """The embeddings a result JSON points to (its ``embeddings`` entry), checked against their hash."""
    from pmtrec.training.results import load_result  # the one reader of result JSON (schema-checked)
    from pmtrec.embeddings import read_embeddings

    result = load_result(path)
    entry = result.get("embeddings")
    if not entry:
        raise DataError(f"{path}: the run saved no embeddings (train with --embeddings FILE)")
    return result, read_embeddings(Path(path).parent / entry["file"], entry.get("sha256"))


def probe_run(result_path: str | Path, data, *, folds: int = 5, seed: int = 0) -> dict:
    """Every probe of one run (pmtrec.analysis.probes) as a JSON-ready record."""
    from pmtrec.analysis.probes import probe_all

    result, emb = run_embeddings(result_path)
    groups = int((result.get("config") or {}).get("eval", {}).get("groups", 5))
    rows = probe_all(emb.user, emb.item, data, n_groups=groups, folds=folds, seed=seed)
    dataset = (result.get("labels") or {}).get("dataset", result["dataset"])  # the study's name, when labelled
    return {"schema": PROBES_SCHEMA, "dataset": str(dataset), "method": result["method"],
            "seed": result["seed"], "embeddings_sha256": result["embeddings"]["sha256"], "folds": folds,
            "probe_seed": seed, "rows": rows.to_dict(orient="records")}


def map_runs(result_paths: list[str | Path], data, *, size: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Columns method, kind, item, x, y, category: the item maps of several runs on the same items."""
    from pmtrec.analysis.maps import category_labels, item_map, map_items

    items = map_items(data.item_category, data.n_items, size=size, seed=seed)
    labels = category_labels(data.item_category, data.category_raw, items)
    frames = []
    for path in result_paths:
        result, emb = run_embeddings(path)
        if emb.item.shape[0] != data.n_items:
            raise DataError(f"{path}: embeddings have {emb.item.shape[0]} items, dataset '{data.name}' has "
                            f"{data.n_items}: they belong to another dataset")
        frame = item_map(emb.item, items, seed=seed)
        frame.insert(0, "method", result["method"])
        frame["category"] = labels.loc[frame["item"]].to_numpy()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
