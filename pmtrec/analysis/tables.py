"""Tidy tables of the embedding analysis, for ``results/tables/`` (pmtrec.aggregate)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from pmtrec.analysis.runs import read_probes

PROBE_COLUMNS = ["dataset", "method", "seed", "probe", "baseline", "metric", "group", "fold", "value"]
MAP_COLUMNS = ["dataset", "method", "kind", "item", "x", "y", "category"]


def probes_table(entries: Sequence[str | Path | Mapping]) -> pd.DataFrame:
    """One row per probe value of every run (``group`` is ``all`` or an activity group).

    An entry is a probes JSON path, labelled by the run's own dataset name, method and seed, or a
    mapping ``{"path", "dataset", "method", "seed"}`` whose labels win (the workflow's dataset key).
    """
    frames = []
    for entry in entries:
        labels = dict(entry) if isinstance(entry, Mapping) else {"path": entry}
        record = read_probes(labels.pop("path"))
        df = pd.DataFrame(record["rows"])
        if df.empty:
            continue
        labels = {"dataset": record["dataset"], "method": record["method"], "seed": record["seed"], **labels}
        frames.append(df.assign(dataset=str(labels["dataset"]), method=str(labels["method"]), seed=int(labels["seed"])))
    if not frames:
        return pd.DataFrame(columns=PROBE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[PROBE_COLUMNS]


def maps_table(paths: Mapping[str, str | Path]) -> pd.DataFrame:
    """The item maps of every dataset (dataset -> the CSV of ``pmtrec embedding-map``)."""
    frames = [pd.read_csv(path, dtype={"category": str}).assign(dataset=d) for d, path in paths.items()]
    if not frames:
        return pd.DataFrame(columns=MAP_COLUMNS)
    return pd.concat(frames, ignore_index=True)[MAP_COLUMNS]
