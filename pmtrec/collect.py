"""``pmtrec collect``: tidy tables from result JSONs made anywhere (by hand, a script, a workflow).

Each result becomes rows of ``runs.csv``'s shape (kind, dataset, method, variant, seed, split,
metric, value) plus the run's ``path``, ``config_hash``, ``best_epoch``, ``stopped_by`` and every
other label it carries (``pmtrec train --label KEY=VALUE``) as a column of its own. A result
without labels is a main run of the dataset it names. Two runs that would be the same row but
ran different configs are refused (summarising them over seeds would mix settings silently), and
so is the same run twice (it would count twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from pmtrec.study.statistics import _sort_metrics, summary_table
from pmtrec.training.results import ResultError, find_results, load_result

ID = ["kind", "dataset", "method", "variant", "seed"]
RUN_COLUMNS = ["path", "config_hash", "best_epoch", "epochs_run", "stopped_by"]
USED_LABELS = {"stage", "dataset", "setting", "seed", "values", "sweep", "benchmark"}


def _run(path: Path, result: dict) -> dict:
    labels = result.get("labels") or {}
    return {"kind": str(labels.get("stage", "main")), "dataset": str(labels.get("dataset", result["dataset"])),
            "method": result["method"], "variant": str(labels.get("setting") or ""), "seed": int(result["seed"]),
            "path": str(path), "config_hash": result.get("config_hash", ""), "best_epoch": result.get("best_epoch"),
            "epochs_run": result.get("epochs_run"), "stopped_by": result.get("stopped_by", ""),
            **{k: v for k, v in labels.items() if k not in USED_LABELS and k not in ID + RUN_COLUMNS}}


def collect(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """The tidy runs table of the result files and folders in ``inputs`` (see the module doc)."""
    runs, seen = [], {}
    for path in find_results(inputs):
        result = load_result(path)
        run = _run(path, result)
        key = tuple(run[k] for k in ID)
        other = seen.setdefault(key, run)
        if other is not run:
            same = other["config_hash"] == run["config_hash"]
            raise ResultError(f"{other['path']} and {path}: " + (
                "the same run twice (a copy or a rerun; collect one of them)" if same else
                "one kind/dataset/method/variant/seed with different configs (tell them apart with "
                "`pmtrec train --label setting=...`)"))
        for split in ("valid", "test"):
            for metric, value in result[split]["overall"].items():
                runs.append({**run, "split": split, "metric": metric,
                             "value": float("nan") if value is None else float(value)})
    df = pd.DataFrame(runs)
    extra = [c for c in df.columns if c not in ID + RUN_COLUMNS + ["split", "metric", "value"]]
    df = df[ID + RUN_COLUMNS + sorted(extra) + ["split", "metric", "value"]]
    return _sort_metrics(df, ID + ["split", "metric"]).reset_index(drop=True)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds of each run's metrics (``summary.csv``'s shape)."""
    return summary_table(runs[ID + ["split", "metric", "value"]])
