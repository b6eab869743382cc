"""Checks a reviewer asks of a comparison: did the runs converge, and how much could per-user
choice gain at all (docs/statistics.md, "Convergence" and "Headroom").

* :func:`convergence_table`: per stage, dataset and method, the share of runs the epoch cap
  stopped (``stopped_by == "cap"``: patience never ran out) and of runs whose best epoch was the
  last one; a share above ``threshold`` (10%) is flagged, since such a method may be undertrained.
* :func:`headroom_table`: per dataset and test metric, per user-activity group the best method in
  that group, and an oracle that picks the best method per group, against the best single method
  overall. If even the oracle gains little over the best method, per-user weighting has little to
  gain at this preprocessing. The oracle picks on test metrics by construction: it is an upper
  bound for analysis, never a selection.
"""

from __future__ import annotations

import pandas as pd

CAP_THRESHOLD = 0.10
CONVERGENCE_COLUMNS = ["kind", "dataset", "method", "runs", "cap_stopped", "cap_share", "best_at_last",
                       "best_at_last_share", "flagged"]
HEADROOM_COLUMNS = ["dataset", "metric", "group", "n_users", "best_method", "best_value", "overall_method",
                    "overall_value", "gain", "gain_pct"]


def convergence_table(efficiency: pd.DataFrame, threshold: float = CAP_THRESHOLD) -> pd.DataFrame:
    """Cap-bound share per (kind, dataset, method) from the efficiency table's ``stopped_by``,
    ``best_epoch`` and ``epochs_run`` (runs that did not train, e.g. MostPop, are left out)."""
    e = efficiency[efficiency["stopped_by"].isin(["cap", "patience"])] if len(efficiency) else efficiency
    if not len(e):
        return pd.DataFrame(columns=CONVERGENCE_COLUMNS)
    e = e.assign(cap=(e["stopped_by"] == "cap").astype(int),
                 last=(pd.to_numeric(e["best_epoch"]) == pd.to_numeric(e["epochs_run"])).astype(int))
    out = (e.groupby(["kind", "dataset", "method"], sort=False)
           .agg(runs=("cap", "size"), cap_stopped=("cap", "sum"), best_at_last=("last", "sum")).reset_index())
    out["cap_share"] = out["cap_stopped"] / out["runs"]
    out["best_at_last_share"] = out["best_at_last"] / out["runs"]
    out["flagged"] = out["cap_share"] > threshold
    return out[CONVERGENCE_COLUMNS]


def headroom_table(groups: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """Best method per activity group and the per-group oracle against the best method overall.

    ``groups`` is the aggregate's groups table (main runs' per-group test metrics, one row per
    run, group and metric); means are over seeds, and the overall value of a method is its
    per-group means weighted by the groups' users (so the oracle and the best method are on the
    same footing). One row per group and a row ``group == "all"`` whose ``best_value`` is the
    oracle's. ``methods``: the methods in the race (default every method in ``groups``)."""
    g = groups[(groups["kind"] == "main") & (groups["variant"] == "")] if len(groups) else groups
    if methods is not None and len(g):
        g = g[g["method"].isin(methods)]
    if not len(g):
        return pd.DataFrame(columns=HEADROOM_COLUMNS)
    g = g[g["n_users"] > 0]  # an empty activity group has no metric
    means = (g.groupby(["dataset", "metric", "group", "method"], sort=False)
             .agg(value=("value", "mean"), n_users=("n_users", "max")).reset_index())
    rows = []
    for (dataset, metric), d in means.groupby(["dataset", "metric"], sort=False):
        wide = d.pivot(index="group", columns="method", values="value").dropna(axis=1)  # methods in every group
        if wide.empty:
            continue
        n = d.groupby("group")["n_users"].max().reindex(wide.index).astype(float)
        overall = wide.mul(n, axis=0).sum() / n.sum()
        best = str(overall.idxmax())
        for group, row in wide.sort_index(key=lambda s: s.astype(int)).iterrows():
            top = str(row.idxmax())
            rows.append({"dataset": dataset, "metric": metric, "group": str(group), "n_users": int(n[group]),
                         "best_method": top, "best_value": float(row[top]), "overall_method": best,
                         "overall_value": float(row[best])})
        oracle = float((wide.max(axis=1) * n).sum() / n.sum())
        rows.append({"dataset": dataset, "metric": metric, "group": "all", "n_users": int(n.sum()),
                     "best_method": "oracle", "best_value": oracle, "overall_method": best,
                     "overall_value": float(overall[best])})
    out = pd.DataFrame(rows, columns=HEADROOM_COLUMNS[:-2])
    out["gain"] = out["best_value"] - out["overall_value"]
    out["gain_pct"] = 100 * out["gain"] / out["overall_value"].where(out["overall_value"] != 0)
    return out[HEADROOM_COLUMNS]
