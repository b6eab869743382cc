"""Statistics over seeds, done once for the whole study: summaries, the best baseline, paired tests.

Every table that aggregates over seeds (summary, significance, ablation) is built here; the
report's sections only present what these tables hold.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
_FAMILY_ORDER = {"recall": 0, "ndcg": 1, "precision": 2, "hit": 3, "mrr": 4, "map": 5}


# The controls (pmtrec.methods.controls) test how PMTRec works: no baseline, no existing method and
# no PMTRec module. The catalogue has no flag for them, hence the names.
CONTROLS = ("static-schedule", "pmtrec-shuffled")


def baseline_models() -> tuple[str, ...]:
    """Names never counted as "the best baseline" by default: the catalogue's baseline models."""
    from pmtrec.methods import available

    return tuple(available("model"))


_METRIC = re.compile(r"^(recall|ndcg|precision|hit|mrr|map)@(\d+)$")


# ------------------------------------------------------------------------------------ helpers
def metric_key(metric: str) -> tuple:
    m = _METRIC.match(metric)
    return (_FAMILY_ORDER[m.group(1)], int(m.group(2))) if m else (99, metric)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    return df[list(columns) + [c for c in df.columns if c not in columns]]


def _stats(values: pd.Series) -> pd.Series:
    v = values.dropna().to_numpy(dtype=float)
    n = len(v)
    return pd.Series({"mean": float(v.mean()) if n else float("nan"),
                      "std": float(v.std(ddof=1)) if n > 1 else float("nan"), "n": n})


def _summarise(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    out = df.groupby(keys, sort=False, dropna=False)["value"].apply(_stats).unstack().reset_index()
    out["n"] = out["n"].astype(int)
    return out


def _sort_metrics(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if df.empty or "metric" not in df.columns:
        return df
    order = df["metric"].map(metric_key)
    df = df.assign(_m=order.map(lambda k: k[0] * 10000 + (k[1] if isinstance(k[1], int) else 0)))
    return df.sort_values(keys[:-1] + ["_m"], kind="stable").drop(columns="_m").reset_index(drop=True)


def summary_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    keys = ["kind", "dataset", "method", "variant", "split", "metric"]
    return _sort_metrics(_summarise(runs_df, keys), keys)


def _paired(ref: pd.Series, base: pd.Series, wilcoxon_min_n: int) -> dict:
    """Paired tests over the seeds both series have."""
    from scipy import stats

    both = pd.concat([ref.rename("ref"), base.rename("base")], axis=1, join="inner").dropna()
    n = len(both)
    out = {"n": n, "t_stat": float("nan"), "t_pvalue": float("nan"),
           "wilcoxon_stat": float("nan"), "wilcoxon_pvalue": float("nan")}
    if n >= 2:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            t = stats.ttest_rel(both["ref"], both["base"])
            out["t_stat"], out["t_pvalue"] = float(t.statistic), float(t.pvalue)
            if n >= wilcoxon_min_n:
                diff = both["ref"] - both["base"]
                if (diff != 0).any():
                    w = stats.wilcoxon(both["ref"], both["base"])
                    out["wilcoxon_stat"], out["wilcoxon_pvalue"] = float(w.statistic), float(w.pvalue)
    return out


def best_baselines(runs_df: pd.DataFrame, reference: str = "pmtrec", exclude: Iterable[str] | None = None,
                   select_metric: str = "ndcg@20") -> dict[str, str]:
    """Per dataset: the baseline with the highest mean validation ``select_metric`` (main runs;
    never the reference, its variants, ``exclude`` or a control)."""
    excluded = set(baseline_models() if exclude is None else exclude) | {reference} | set(CONTROLS)
    main = runs_df[(runs_df["kind"] == "main") & (runs_df["split"] == "valid")
                   & (runs_df["metric"] == select_metric)]
    main = main[~main["method"].isin(excluded) & ~main["method"].str.startswith(reference + "-")]
    out = {}
    for dataset, df in main.groupby("dataset", sort=False):
        means = df.groupby("method", sort=True)["value"].mean().dropna()
        if len(means):
            out[dataset] = str(means.idxmax())  # ties: alphabetical first
    return out


def significance_table(runs_df: pd.DataFrame, reference: str = "pmtrec", exclude: Iterable[str] | None = None,
                       select_metric: str = "ndcg@20", wilcoxon_min_n: int = 6, alpha: float = 0.05) -> pd.DataFrame:
    cols = ["dataset", "metric", "reference", "baseline", "select_metric", "n", "mean_reference", "mean_baseline",
            "diff", "rel_improvement", "t_stat", "t_pvalue", "wilcoxon_stat", "wilcoxon_pvalue", "significant"]
    best = best_baselines(runs_df, reference, exclude, select_metric)
    test = runs_df[(runs_df["kind"] == "main") & (runs_df["split"] == "test")]
    rows = []
    for dataset, baseline in best.items():
        d = test[test["dataset"] == dataset]
        ref_d = d[d["method"] == reference]
        if ref_d.empty:
            continue
        for metric in sorted(ref_d["metric"].unique(), key=metric_key):
            ref = ref_d[ref_d["metric"] == metric].set_index("seed")["value"]
            base = d[(d["method"] == baseline) & (d["metric"] == metric)].set_index("seed")["value"]
            tests = _paired(ref, base, wilcoxon_min_n)
            seeds = ref.index.intersection(base.index)
            m_ref, m_base = float(ref[seeds].mean()), float(base[seeds].mean())
            rel = (m_ref - m_base) / m_base if m_base else float("nan")
            p = tests["wilcoxon_pvalue"] if not math.isnan(tests["wilcoxon_pvalue"]) else tests["t_pvalue"]
            rows.append({"dataset": dataset, "metric": metric, "reference": reference, "baseline": baseline,
                         "select_metric": select_metric, "mean_reference": m_ref, "mean_baseline": m_base,
                         "diff": m_ref - m_base, "rel_improvement": rel, **tests,
                         "significant": bool(p < alpha) if not math.isnan(p) else False})
    return _frame(rows, cols)[cols]


def ablation_table(runs_df: pd.DataFrame, reference: str = "pmtrec") -> pd.DataFrame:
    keys = ["dataset", "method", "split", "metric"]
    cols = keys + ["mean", "std", "n", "delta", "rel_delta"]
    abl = runs_df[runs_df["kind"] == "ablation"]
    if abl.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for dataset, d in abl.groupby("dataset", sort=False):
        seeds = set(d["seed"])
        full = runs_df[(runs_df["kind"] == "main") & (runs_df["dataset"] == dataset)
                       & (runs_df["method"] == reference)]
        if not full[full["seed"].isin(seeds)].empty:
            full = full[full["seed"].isin(seeds)]
        parts.append(pd.concat([full, d]))
    out = _summarise(pd.concat(parts), keys)
    ref = out[out["method"] == reference].set_index(["dataset", "split", "metric"])["mean"]
    idx = pd.MultiIndex.from_frame(out[["dataset", "split", "metric"]])
    ref_mean = ref.reindex(idx).to_numpy(dtype=float)
    out["delta"] = out["mean"].to_numpy(dtype=float) - ref_mean
    with np.errstate(all="ignore"):
        out["rel_delta"] = np.where(ref_mean != 0, out["delta"] / ref_mean, np.nan)
    return _sort_metrics(out[cols], keys)
