"""Tidy tables of a study: result JSONs (+ benchmark files, dataset statistics) -> CSV files.

The workflow's ``aggregate`` rule calls :func:`aggregate` with one *entry* per result file,
saying what the run is (the result JSON itself says which method and seed it ran, but not
which workflow dataset name, stage or hyperparameter setting it belongs to)::

    {"kind": "main" | "tune" | "ablation" | "sensitivity", "dataset": "ciao", "method": "pmtrec",
     "seed": 0, "setting": "" | "focus_max=0.5,tau=1.0", "values": {...grid values...},
     "sweep": "grid" | "dim" (sensitivity only), "path": "results/...json",
     "benchmark": "benchmarks/runs/...tsv" (optional)}

Every result is validated against ``pmtrec/schemas/result.schema.json``; a malformed one is
refused with a one-line :class:`AggregateError` naming the file.

Tables (all long/"tidy"; ``variant`` is the run's hyperparameter setting: "" for the main
setting, the grid point for tuning and sensitivity runs; ablation variants are methods):

==================  ===========================================================================
runs.csv            kind, dataset, method, variant, seed, split, metric, value
summary.csv         kind, dataset, method, variant, split, metric, mean, std, n (over seeds)
significance.csv    per dataset and test metric: the reference method (PMTRec) against the best
                    baseline (highest mean validation NDCG@20 among the main runs, excluding the
                    reference, its ablation variants and ``exclude``): means, relative
                    improvement, paired t-test (scipy.stats.ttest_rel) and, from
                    ``wilcoxon_min_n`` paired seeds on, the Wilcoxon signed-rank test
groups.csv          per-user-activity-group test metrics of every run (group "0" = least active)
curves.csv          per epoch: valid ndcg@20 / recall@20, loss and weight per task, epoch times
row_weights.csv     per epoch and user/item activity group: mean row weight per task (PMTRec)
cosines.csv         per epoch: mean cosine between the task gradients, per task pair
efficiency.csv      per run: epochs, epoch time, wall time, peak host/device memory, device, and
                    the Snakemake benchmark (s, max_rss MB, cpu_time)
sensitivity.csv     sensitivity runs: sweep, setting, its parameter values, split, metric, mean,
                    std, n
ablation.csv        PMTRec and its variants: split, metric, mean, std, n, delta and relative
                    delta against the full model (the main ``pmtrec`` runs on the same seeds)
dataset_stats.csv   one row per dataset: the prepared dataset's statistics (stats.json)
tuning.csv          tuning runs: dataset, method, setting, values, the selection metric, selected
probes.csv          linear probes of the main runs' embeddings (pmtrec.analysis): dataset, method,
                    seed, probe, baseline (embeddings | permuted), metric, group, fold, value
embedding_maps.csv  2-D item maps per dataset: dataset, method, kind (pca | tsne), item, x, y,
                    category
==================  ===========================================================================
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError
from pmtrec.io import atomic_path

__all__ = [
    "AggregateError", "load_result", "validate_result", "select_setting", "setting_config",
    "aggregate", "write_tables", "TABLES",
]

TABLES = ("runs", "summary", "significance", "groups", "curves", "row_weights", "cosines", "efficiency",
          "sensitivity", "ablation", "dataset_stats", "tuning", "probes", "embedding_maps")
KINDS = ("main", "tune", "ablation", "sensitivity")
SPLITS = ("valid", "test")
_METRIC = re.compile(r"^(recall|ndcg|precision|hit)@(\d+)$")
_FAMILY_ORDER = {"recall": 0, "ndcg": 1, "precision": 2, "hit": 3}
CURVE_METRICS = ("ndcg@20", "recall@20")
RUN_KEYS = ["kind", "dataset", "method", "variant", "seed"]


class AggregateError(PmtrecError):
    """A result file is missing, unreadable or does not match the result schema."""


# ------------------------------------------------------------------------------------ loading
@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(resources.files("pmtrec").joinpath("schemas/result.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_result(result: Any, name: str = "<result>") -> dict:
    """Check ``result`` against the result schema; raise a one-line AggregateError naming ``name``."""
    import jsonschema

    errors = list(_validator().iter_errors(result))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
        msg = err.message if len(err.message) < 200 else err.message[:200] + "..."
        raise AggregateError(f"{name}: malformed result ({where or 'top level'}: {msg})")
    return result


def load_result(path: str | Path) -> dict:
    """Read and validate one result JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise AggregateError(f"{path}: cannot read result ({exc.strerror or exc})") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AggregateError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return validate_result(result, str(path))


def read_benchmark(path: str | Path | None) -> dict[str, float]:
    """Snakemake's benchmark TSV (first row): s, max_rss (MB), cpu_time; {} when absent."""
    if not path or not Path(path).is_file():
        return {}
    try:
        df = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {}
    if df.empty:
        return {}
    row = df.iloc[0]
    out = {}
    for src, dst in (("s", "bench_s"), ("max_rss", "bench_max_rss_mb"), ("cpu_time", "bench_cpu_time_s"),
                     ("mean_load", "bench_mean_load")):
        if src in df.columns:
            out[dst] = pd.to_numeric(row[src], errors="coerce")
    return out


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


def _run_id(entry: Mapping[str, Any]) -> dict:
    return {"kind": entry["kind"], "dataset": entry["dataset"], "method": entry["method"],
            "variant": entry.get("setting") or "", "seed": int(entry["seed"])}


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


# ------------------------------------------------------------------------------------- tables
def runs_table(runs: list[tuple[dict, dict]]) -> pd.DataFrame:
    rows = []
    for entry, result in runs:
        rid = _run_id(entry)
        for split in SPLITS:
            for metric, value in result[split]["overall"].items():
                rows.append({**rid, "split": split, "metric": metric, "value": _num(value)})
    df = _frame(rows, RUN_KEYS + ["split", "metric", "value"])
    return _sort_metrics(df, ["kind", "dataset", "method", "variant", "seed", "split", "metric"])


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


def best_baselines(runs_df: pd.DataFrame, reference: str = "pmtrec", exclude: Iterable[str] = ("mostpop",),
                   select_metric: str = "ndcg@20") -> dict[str, str]:
    """Per dataset: the baseline with the highest mean validation ``select_metric`` (main runs)."""
    excluded = set(exclude) | {reference}
    main = runs_df[(runs_df["kind"] == "main") & (runs_df["split"] == "valid")
                   & (runs_df["metric"] == select_metric)]
    main = main[~main["method"].isin(excluded) & ~main["method"].str.startswith(reference + "-")]
    out = {}
    for dataset, df in main.groupby("dataset", sort=False):
        means = df.groupby("method", sort=True)["value"].mean().dropna()
        if len(means):
            out[dataset] = str(means.idxmax())  # ties: alphabetical first
    return out


def significance_table(runs_df: pd.DataFrame, reference: str = "pmtrec", exclude: Iterable[str] = ("mostpop",),
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


def groups_table(runs: list[tuple[dict, dict]]) -> pd.DataFrame:
    rows = []
    for entry, result in runs:
        rid = _run_id(entry)
        for label, metrics in result["test"]["groups"].items():
            n_users = int(metrics.get("n_users", 0))
            for metric, value in metrics.items():
                if metric != "n_users":
                    rows.append({**rid, "split": "test", "group": str(label), "n_users": n_users,
                                 "metric": metric, "value": _num(value)})
    return _frame(rows, RUN_KEYS + ["split", "group", "n_users", "metric", "value"])


def curves_tables(runs: list[tuple[dict, dict]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    curves, row_w, cosines = [], [], []
    for entry, result in runs:
        rid = _run_id(entry)
        for ep in result["curves"]:
            e = int(ep["epoch"])
            base = {**rid, "epoch": e}
            for metric in CURVE_METRICS:
                if metric in ep["valid"]:
                    curves.append({**base, "series": "valid", "key": metric, "value": _num(ep["valid"][metric])})
            for series in ("loss", "weight"):
                for task, value in ep[series].items():
                    curves.append({**base, "series": series, "key": task, "value": _num(value)})
            for key in ("train_time_s", "eval_time_s"):
                curves.append({**base, "series": "time", "key": key, "value": _num(ep[key])})
            for pair, value in (ep.get("grad_cosine") or {}).items():
                a, b = pair.split("|", 1)
                cosines.append({**base, "pair": pair, "task_a": a, "task_b": b, "cosine": _num(value)})
            for table in ("user", "item"):
                for group, weights in (ep.get(f"row_weight_by_{table}_group") or {}).items():
                    for task, w in weights.items():
                        row_w.append({**base, "table": table, "group": str(group), "task": task,
                                      "weight": _num(w)})
    return (_frame(curves, RUN_KEYS + ["epoch", "series", "key", "value"]),
            _frame(row_w, RUN_KEYS + ["epoch", "table", "group", "task", "weight"]),
            _frame(cosines, RUN_KEYS + ["epoch", "pair", "task_a", "task_b", "cosine"]))


def efficiency_table(runs: list[tuple[dict, dict]]) -> pd.DataFrame:
    rows = []
    for entry, result in runs:
        mem = result["memory"]
        rows.append({**_run_id(entry), "device": result["device"], "tasks": len(result["tasks"]),
                     "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
                     "epoch_time_s": result["epoch_time_s"], "wall_time_s": result["wall_time_s"],
                     "skipped_batches": int(result.get("skipped_batches", 0)),
                     "host_peak_rss_mb": _num(mem.get("host_peak_rss_mb")),
                     "device_peak_mb": _num(mem.get("device_peak_mb")),
                     **{"bench_s": float("nan"), "bench_max_rss_mb": float("nan"),
                        "bench_cpu_time_s": float("nan"), "bench_mean_load": float("nan")},
                     **read_benchmark(entry.get("benchmark"))})
    return _frame(rows, RUN_KEYS + ["device", "tasks", "epochs_run", "best_epoch", "epoch_time_s", "wall_time_s",
                                    "skipped_batches", "host_peak_rss_mb", "device_peak_mb", "bench_s", "bench_max_rss_mb",
                                    "bench_cpu_time_s", "bench_mean_load"])


def sensitivity_table(runs: list[tuple[dict, dict]], runs_df: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "method", "sweep", "variant", "split", "metric"]
    sens = [(e, r) for e, r in runs if e["kind"] == "sensitivity"]
    if not sens:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    info = {}
    for e, _ in sens:
        info[(e["dataset"], e["method"], e.get("setting") or "")] = (e.get("sweep", ""), dict(e.get("values") or {}))
    df = runs_df[runs_df["kind"] == "sensitivity"].copy()
    df["sweep"] = [info[(d, m, v)][0] for d, m, v in zip(df["dataset"], df["method"], df["variant"])]
    out = _summarise(df, keys)
    params = sorted({k for _, values in info.values() for k in values})
    for p in params:
        out[p] = [info[(d, m, v)][1].get(p) for d, m, v in zip(out["dataset"], out["method"], out["variant"])]
    out = out[keys[:4] + params + keys[4:] + ["mean", "std", "n"]]
    return _sort_metrics(out, keys)


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


def dataset_stats_table(datasets: Mapping[str, str | Path]) -> pd.DataFrame:
    rows = []
    for name, folder in datasets.items():
        path = Path(folder) / "stats.json"
        try:
            stats = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AggregateError(f"{path}: cannot read dataset statistics ({exc})") from None
        flat = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
        source_name = flat.pop("dataset", None)
        rows.append({"dataset": name, "name": source_name, **flat})
    return _frame(rows, ["dataset", "name"])


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
            raise AggregateError(f"{path}: validation metric '{metric}' missing")
        rows.append({"path": path, "values": dict(points[path]), "score": float(score)})
    if not rows:
        raise AggregateError("select_setting: no tuning results")
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
        if "." not in dotted:
            continue
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def tuning_table(runs: list[tuple[dict, dict]], metric: str = "ndcg@20") -> pd.DataFrame:
    cols = ["dataset", "method", "variant", "seed", "metric", "value", "selected"]
    tune = [(e, r) for e, r in runs if e["kind"] == "tune"]
    rows = []
    by_group: dict[tuple[str, str], list] = {}
    for e, r in tune:
        by_group.setdefault((e["dataset"], e["method"]), []).append((e, r))
    for (dataset, method), items in by_group.items():
        points = {e["path"]: e.get("values") or {} for e, _ in items}
        chosen, _ = select_setting(points, metric, {e["path"]: r for e, r in items})
        for e, r in sorted(items, key=lambda x: x[0]["path"]):
            values = dict(e.get("values") or {})
            rows.append({"dataset": dataset, "method": method, "variant": e.get("setting") or "",
                         "seed": int(e["seed"]), "metric": metric, "value": _num(r["valid"]["overall"].get(metric)),
                         "selected": values == chosen, **{f"param:{k}": v for k, v in values.items()}})
    return _frame(rows, cols)


# ---------------------------------------------------------------------------------------- main
def aggregate(entries: Sequence[Mapping[str, Any]], datasets: Mapping[str, str | Path] | None = None, *,
              reference: str = "pmtrec", exclude: Iterable[str] = ("mostpop",), select_metric: str = "ndcg@20",
              wilcoxon_min_n: int = 6, tune_metric: str = "ndcg@20",
              results: Mapping[str, dict] | None = None, probes: Sequence[str | Path | Mapping] = (),
              maps: Mapping[str, str | Path] | None = None) -> dict[str, pd.DataFrame]:
    """Build every table (see the module docstring). ``results`` (path -> dict) skips the reading;
    ``probes`` (probe JSONs, or entries labelling them) and ``maps`` (dataset -> map CSV) are the
    embedding analysis's files (:mod:`pmtrec.analysis.tables`)."""
    from pmtrec.analysis.tables import maps_table, probes_table

    runs = []
    for entry in entries:
        if entry["kind"] not in KINDS:
            raise AggregateError(f"{entry.get('path')}: unknown kind '{entry['kind']}'")
        result = (validate_result(results[entry["path"]], entry["path"]) if results is not None
                  else load_result(entry["path"]))
        if entry["kind"] != "tune" and int(result["seed"]) != int(entry["seed"]):
            raise AggregateError(f"{entry['path']}: seed {result['seed']} in the file, {entry['seed']} expected")
        runs.append((dict(entry), result))
    runs_df = runs_table(runs)
    curves, row_weights, cosines = curves_tables(runs)
    return {
        "runs": runs_df,
        "summary": summary_table(runs_df),
        "significance": significance_table(runs_df, reference, exclude, select_metric, wilcoxon_min_n),
        "groups": groups_table(runs),
        "curves": curves,
        "row_weights": row_weights,
        "cosines": cosines,
        "efficiency": efficiency_table(runs),
        "sensitivity": sensitivity_table(runs, runs_df),
        "ablation": ablation_table(runs_df, reference),
        "dataset_stats": dataset_stats_table(datasets or {}),
        "tuning": tuning_table(runs, tune_metric),
        "probes": probes_table(probes),
        "embedding_maps": maps_table(maps or {}),
    }


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<name>.csv`` for every table, each atomically (mode 0666 & ~umask)."""
    out_dir = Path(out_dir)
    mode = 0o666 & ~_umask()
    written = []
    for name, df in tables.items():
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
            os.chmod(tmp, mode)
        written.append(path)
    return written
