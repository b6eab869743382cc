"""The tuning protocol's selection: the grid point with the best validation metric, as a config."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from pmtrec.config import nest_key
from pmtrec.training.results import ResultError, load_result


def select_setting(points: Mapping[str, Mapping[str, Any]], metric: str = "ndcg@20",
                   results: Mapping[str, dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """The grid point with the highest validation ``metric``.

    ``points`` maps a tuning result file to its grid values. Ties go to the first point in
    sorted file order. Returns the chosen values and a table of every point's score.
    """
    rows = []
    for path in sorted(points):
        result = results[path] if results is not None else load_result(path)
        score = result["valid"]["overall"].get(metric)
        if score is None:
            raise ResultError(f"{path}: validation metric '{metric}' missing")
        rows.append({"path": path, "values": dict(points[path]), "score": float(score)})
    if not rows:
        raise ResultError("select_setting: no tuning results")
    best = max(rows, key=lambda r: (r["score"], -rows.index(r)))
    table = pd.DataFrame([{"path": r["path"], **r["values"], metric: r["score"], "selected": r is best}
                          for r in rows])
    return best["values"], table


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
