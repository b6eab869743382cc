"""The tuning protocol's selection: the setting with the best mean validation metric, as a config."""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pmtrec.config import nest_key
from pmtrec.training.results import ResultError, load_result


def select_setting(points: Mapping[str, Mapping[str, Any]], metric: str = "ndcg@20",
                   results: Mapping[str, dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """The setting with the highest mean validation ``metric`` over its tuning seeds.

    ``points`` maps a tuning result file to its setting's values (one file per setting and tuning
    seed: files with equal values are one setting). Ties go to the setting whose first file comes
    first in sorted file order. Returns the chosen values and a table of every file's score, its
    setting's mean and whether that setting was selected.
    """
    rows = []
    for path in sorted(points):
        result = results[path] if results is not None else load_result(path)
        score = result["valid"]["overall"].get(metric)
        if score is None:
            raise ResultError(f"{path}: validation metric '{metric}' missing")
        rows.append({"path": path, "values": dict(points[path]), "score": float(score),
                     "key": json.dumps(points[path], sort_keys=True)})
    if not rows:
        raise ResultError("select_setting: no tuning results")
    frame = pd.DataFrame(rows)
    means = frame.groupby("key", sort=False)["score"].mean()  # first-seen order: sorted file order
    best = means.index[int(np.argmax(means.to_numpy()))]  # argmax: the first of equal means
    chosen = next(r["values"] for r in rows if r["key"] == best)
    table = pd.DataFrame([{"path": r["path"], **r["values"], metric: r["score"], "mean": means[r["key"]],
                           "selected": r["key"] == best} for r in rows])
    return chosen, table


def setting_config(fixed: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict:
    """Run-config fragment of a selected setting: the full ``train.method_params`` (fixed plain
    keys updated by the chosen ones) and the chosen run-config (dotted) keys."""
    params = {k: v for k, v in fixed.items() if "." not in k}
    params.update({k: v for k, v in chosen.items() if "." not in k})
    out: dict[str, Any] = {"train": {"method_params": params}}
    for dotted, value in chosen.items():
        if "." in dotted:
            nest_key(dotted, value, out)
    return out


PROTOCOL_COLUMNS = ["dataset", "method", "item", "value"]


def _distinct(values: list) -> list:
    """The distinct values (lists too: a static weight vector), numbers in numeric order."""
    seen = {json.dumps(v, sort_keys=True, default=str): v for v in values}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen.values())
    return sorted(seen.values()) if numeric else [seen[k] for k in sorted(seen)]


def protocol_table(tuning: pd.DataFrame, declared: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """What the report lists of the tuning protocol, long: one (dataset, method, item, value) row
    per fact, values as JSON.

    From the tuning runs (always): per dataset and method the number of settings run, the tuning
    seeds and every tuned knob's values (``run:<knob>``). From ``declared``, the study plan's
    :meth:`~pmtrec.study.plan.Study.tuning_protocol` (the workflow passes it; ``pmtrec report`` on
    a results folder has none): the budget, seeds, metric, sampler and split protocol (dataset and
    method ""), each method's declared space (``space:<knob>``) and the disclosed
    development-time tuning (``development``)."""
    rows = []
    params = [c for c in tuning.columns if c.startswith("param:")]
    for (dataset, method), t in tuning.groupby(["dataset", "method"], sort=False):
        rows.append((dataset, method, "settings", t["variant"].nunique()))
        rows.append((dataset, method, "seeds", sorted(int(s) for s in t["seed"].unique())))
        for col in params:
            seen = t[col].dropna()
            if len(seen):
                rows.append((dataset, method, "run:" + col[len("param:"):], _distinct(seen.tolist())))
    d = dict(declared or {})
    for item in ("budget", "seeds", "metric", "sampler", "sampler_seed", "draws", "split_seed"):
        if item in d:
            rows.append(("", "", item, d[item]))
    for method, space in (d.get("spaces") or {}).items():
        for knob, values in space.items():
            rows.append(("", method, f"space:{knob}", values))
    for dev in d.get("development") or []:
        rows.append((dev.get("dataset", ""), dev.get("method", ""), "development", dev.get("note", "")))
    return pd.DataFrame([(a, b, c, json.dumps(v, default=str)) for a, b, c, v in rows], columns=PROTOCOL_COLUMNS)
