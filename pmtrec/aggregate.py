"""Tidy tables of a study: result JSONs (+ benchmark files, dataset statistics) -> CSV files.

The workflow's ``aggregate`` rule calls :func:`aggregate` with one *entry* per result file,
saying what the run is (the result JSON itself says which method and seed it ran, but not
which workflow dataset name, stage or hyperparameter setting it belongs to)::

    {"kind": "main" | "tune" | "ablation" | "sensitivity", "dataset": "ciao", "method": "pmtrec",
     "seed": 0, "setting": "" | "focus_max=0.5+tau=1.0", "values": {...grid values...},
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
methods.csv         the catalogue entry of every method in the study (pmtrec.methods): method, kind,
                    family, label, colour, order, base (so the report needs no plugin imports)
comparisons.csv     per dataset, other method and test metric: the reference against it (main runs;
                    ablation variants against the full model): the seed interval of the difference,
                    the paired tests over users (each run's ``*.per_user.npz``), Holm, TOST, verdict
                    (:func:`pmtrec.study.comparisons.comparison_table`; docs/statistics.md)
claims.csv          the verdict on each claim of the paper per dataset (and metric), generated from
                    comparisons, row_weights and efficiency (:func:`claims`)
convergence.csv     per kind, dataset and method: runs, the share stopped by the epoch cap and the
                    share whose best epoch was the last, flagged above 10%
                    (:func:`pmtrec.study.diagnostics.convergence_table`)
headroom.csv        per dataset, test metric and user-activity group: the best method there, and the
                    per-group oracle (group "all") against the best method overall, among the
                    main methods but the reference, its variants, the controls and ``exclude``
                    (:func:`pmtrec.study.diagnostics.headroom_table`)
tuning_protocol.csv the tuning protocol: settings, seeds and knob values run per dataset and method,
                    and (``protocol`` given) the declared budget, spaces and development-time tuning
                    (:func:`pmtrec.study.tuning.protocol_table`)
==================  ===========================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from pmtrec.data.store import read_stats
from pmtrec.errors import DataError, PmtrecError
from pmtrec.io import atomic_path
from pmtrec.training.results import ResultError, load_result, validate_result  # noqa: F401
from pmtrec.study.tuning import protocol_table, select_setting, setting_config  # noqa: F401
from pmtrec.study.diagnostics import convergence_table, headroom_table
from pmtrec.study import comparisons as cmp
from pmtrec.training.per_user import per_user_frame, per_user_path
from pmtrec.study.statistics import (_frame, _num, _sort_metrics, _summarise, ablation_table,  # noqa: F401
                                     CONTROLS, baseline_models,
                                     best_baselines, metric_key, significance_table, summary_table)

__all__ = [
    "AggregateError", "load_result", "validate_result", "select_setting", "setting_config",
    "aggregate", "entries_from_results", "write_tables", "TABLES",
]

TABLES = ("runs", "summary", "significance", "groups", "curves", "row_weights", "cosines", "efficiency",
          "sensitivity", "ablation", "dataset_stats", "tuning", "probes", "embedding_maps", "methods",
          "comparisons", "claims", "convergence", "headroom", "tuning_protocol")
KINDS = ("main", "tune", "ablation", "sensitivity")
SPLITS = ("valid", "test")
CURVE_METRICS = ("ndcg@20", "recall@20")
RUN_KEYS = ["kind", "dataset", "method", "variant", "seed"]


AggregateError = ResultError  # the name callers catch


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


def _run_id(entry: Mapping[str, Any]) -> dict:
    return {"kind": entry["kind"], "dataset": entry["dataset"], "method": entry["method"],
            "variant": entry.get("setting") or "", "seed": int(entry["seed"])}


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
                     "stopped_by": result.get("stopped_by", "none"), "epoch_time_s": result["epoch_time_s"], "wall_time_s": result["wall_time_s"],
                     "skipped_batches": int(result.get("skipped_batches", 0)),
                     "host_peak_rss_mb": _num(mem.get("host_peak_rss_mb")),
                     "device_peak_mb": _num(mem.get("device_peak_mb")),
                     **{"bench_s": float("nan"), "bench_max_rss_mb": float("nan"),
                        "bench_cpu_time_s": float("nan"), "bench_mean_load": float("nan")},
                     **read_benchmark(entry.get("benchmark"))})
    return _frame(rows, RUN_KEYS + ["device", "tasks", "epochs_run", "best_epoch", "stopped_by", "epoch_time_s",
                                    "wall_time_s",
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


def dataset_stats_table(datasets: Mapping[str, str | Path]) -> pd.DataFrame:
    rows = []
    for name, folder in datasets.items():
        try:
            stats = read_stats(folder)
        except DataError as exc:
            raise AggregateError(str(exc)) from None
        flat = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
        source_name = flat.pop("dataset", None)
        rows.append({"dataset": name, "name": source_name, **flat})
    return _frame(rows, ["dataset", "name"])


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


def methods_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """The catalogue's entry of each method with runs (display order)."""
    from pmtrec.methods import entry

    cols = ["method", "kind", "family", "label", "colour", "order", "base"]
    names = list(dict.fromkeys(runs_df["method"])) if len(runs_df) else []
    rows = [{"method": e.name, "kind": e.kind, "family": e.family, "label": e.label, "colour": e.colour,
             "order": e.order, "base": e.base or ""} for e in sorted(map(entry, names), key=lambda e: (e.order, e.name))]
    return _frame(rows, cols)


# ------------------------------------------------------------------- comparisons and claims
COMPARED_KINDS = ("main", "ablation")


def _compared_runs(runs: list[tuple[dict, dict]], runs_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The test values and per-user metrics of the main and ablation runs (main setting), one row
    per (dataset, method, seed[, metric | user]): a method run as both keeps its main runs.

    A run without a per-user file (older results) simply has none: its comparisons get the note
    "no per-user metrics: no test" instead of an error."""
    t = runs_df[runs_df["kind"].isin(COMPARED_KINDS) & (runs_df["split"] == "test") & (runs_df["variant"] == "")]
    t = t.sort_values("kind", key=lambda k: k.map(COMPARED_KINDS.index), kind="stable")
    values = t.drop_duplicates(["dataset", "method", "seed", "metric"])[["dataset", "method", "seed", "metric",
                                                                         "value"]]
    frames, seen = [], set()
    for entry, _ in sorted(runs, key=lambda r: COMPARED_KINDS.index(r[0]["kind"])
                           if r[0]["kind"] in COMPARED_KINDS else len(COMPARED_KINDS)):
        key = (entry["dataset"], entry["method"], int(entry["seed"]))
        if entry["kind"] not in COMPARED_KINDS or (entry.get("setting") or "") or key in seen:
            continue
        seen.add(key)
        path = per_user_path(entry["path"])
        if path.is_file():
            try:
                frames.append(per_user_frame(path, *key))
            except DataError as exc:
                raise AggregateError(str(exc)) from None
    return values.reset_index(drop=True), (pd.concat(frames, ignore_index=True) if frames else None)


def claim_methods(methods: Iterable[str], reference: str = "pmtrec") -> tuple[list[str], list[str]]:
    """(claim 1's existing multi-task methods, claim 2's ablation variants) among ``methods``, from
    the catalogue: trained methods on every task (not ``single``, ``task_set == "main"``; not the
    baseline models), and the reference's variants; the controls in neither."""
    from pmtrec.methods import entry

    baselines, variants = [], []
    for name in dict.fromkeys(methods):
        e = entry(name)
        if name == reference or name in CONTROLS:
            continue
        if e.base == reference:
            variants.append(name)
        elif e.kind == "method" and e.trains and e.task_set != "main":
            baselines.append(name)
    return baselines, variants


def personalisation_flags(row_weights: pd.DataFrame, datasets: Iterable[str], reference: str = "pmtrec",
                          margin: float = 0.01) -> pd.DataFrame:
    """Claim 3's input per dataset (docs/statistics.md, "Claims"): the reference's main runs, user
    activity groups, last epoch of each run, auxiliary weight = the summed row weight of every task
    but the main one. Per seed, ``diff`` = least (group "0") - most active group; over seeds its
    mean and 95% t interval (:func:`pmtrec.study.comparisons.seed_interval`).

    ``flag``: True when the mean weights' spread across the groups exceeds ``margin`` x their mean
    and the interval of ``diff`` lies above 0 (the least active lean more on the auxiliary tasks, on
    every reading of the seeds); False when the weights do not differ or the interval lies below 0;
    None (inconclusive) when the interval contains 0 or there is one seed; None without row weights."""
    from pmtrec.tasks import RecTask

    cols = ["dataset", "flag", "aux_least", "aux_most", "diff", "ci_low", "ci_high", "spread_rel", "n_seeds", "note"]
    rw = row_weights[(row_weights["kind"] == "main") & (row_weights["method"] == reference)
                     & (row_weights["table"] == "user") & (row_weights["variant"] == "")]
    rw = rw[rw["epoch"] == rw.groupby(["dataset", "seed"])["epoch"].transform("max")]
    per_seed = rw[rw["task"] != RecTask.name].groupby(["dataset", "seed", "group"])["weight"].sum().reset_index()
    per_seed["g"] = pd.to_numeric(per_seed["group"], errors="coerce")
    per_seed = per_seed.dropna(subset=["g", "weight"])
    rows = []
    for ds in dict.fromkeys(datasets):
        a = per_seed[per_seed["dataset"] == ds]
        means = a.groupby("g")["weight"].mean().sort_index()
        if len(means) < 2:
            rows.append({"dataset": ds, "flag": None, "n_seeds": 0, "note": "no row weights of the reference"})
            continue
        wide = a.pivot(index="seed", columns="g", values="weight")
        d = (wide[means.index[0]] - wide[means.index[-1]]).dropna()
        iv = cmp.seed_interval(d, pd.Series(0.0, index=d.index))
        least, most, mean = float(means.iloc[0]), float(means.iloc[-1]), float(means.mean())
        spread = (float(means.max()) - float(means.min())) / mean if mean else float("nan")
        differs = bool(spread > margin)
        if not differs or iv["ci_high"] < 0:
            flag, why = False, ("" if differs else f"spread across groups within {margin:.0%}: not personalised")
        elif iv["ci_low"] > 0:
            flag, why = True, ""
        else:
            flag = None
            why = "one seed: no interval" if iv["n"] < 2 else "the seed interval of the difference contains 0"
        note = f"aux. row weight, least vs most active users (last epoch, {iv['n']} seed(s))" + (f"; {why}" if why else "")
        rows.append({"dataset": ds, "flag": flag, "aux_least": least, "aux_most": most, "diff": iv["diff"],
                     "ci_low": iv["ci_low"], "ci_high": iv["ci_high"], "spread_rel": spread, "n_seeds": iv["n"],
                     "note": note})
    return pd.DataFrame(rows, columns=cols)


def overhead_ratios(efficiency: pd.DataFrame, datasets: Iterable[str], reference: str = "pmtrec",
                    against: str = "ew") -> dict[str, float]:
    """Claim 4's input: per dataset, the reference's median epoch time over its main runs / EW's
    (NaN when either has none)."""
    e = efficiency[(efficiency["kind"] == "main") & (efficiency["variant"] == "")]
    med = e.groupby(["dataset", "method"])["epoch_time_s"].median()
    out = {}
    for ds in dict.fromkeys(datasets):
        ref, base = med.get((ds, reference), float("nan")), med.get((ds, against), float("nan"))
        out[ds] = float(ref) / float(base) if base and not pd.isna(base) and not pd.isna(ref) else float("nan")
    return out


def claims(comparisons: pd.DataFrame, methods: Iterable[str], row_weights: pd.DataFrame, efficiency: pd.DataFrame,
           datasets: Iterable[str], reference: str = "pmtrec", margin: float = 0.01,
           overhead_threshold: float = 1.5) -> pd.DataFrame:
    """The claims table (:func:`pmtrec.study.comparisons.claims_table`) with claim 3's effect
    (auxiliary weight, least - most active users) filled in."""
    baselines, variants = claim_methods(methods, reference)
    flags = personalisation_flags(row_weights, datasets, reference, margin)
    table = cmp.claims_table(comparisons, baselines, variants,
                             personalisation=dict(zip(flags["dataset"], flags["flag"])),
                             overhead=overhead_ratios(efficiency, datasets, reference),
                             overhead_threshold=overhead_threshold)
    c3 = table["claim"] == 3
    by = flags.set_index("dataset")
    for col in ("diff", "ci_low", "ci_high"):
        table.loc[c3, col] = table.loc[c3, "dataset"].map(by[col]).astype(float)
    table.loc[c3, "n_seeds"] = table.loc[c3, "dataset"].map(by["n_seeds"])
    table.loc[c3, "against"] = "activity groups"
    table.loc[c3, "note"] = table.loc[c3, "dataset"].map(by["note"])
    return table


# ---------------------------------------------------------------------------------------- main
def entries_from_results(paths: Sequence[str | Path], results: dict | None = None) -> list[dict]:
    """The entry of each result file from its own ``labels`` (``pmtrec train --label``; the workflow
    sets ``dataset``, ``stage``, ``setting``, ``benchmark`` and, for grid points, ``values`` and
    ``sweep``). ``results``, when given, is filled with path -> result (for :func:`aggregate`)."""
    entries = []
    for path in paths:
        result = load_result(path)
        if results is not None:
            results[str(path)] = result
        labels = result.get("labels") or {}
        missing = [k for k in ("dataset", "stage") if k not in labels]
        if missing:
            raise AggregateError(f"{path}: result has no label {', '.join(missing)} (written by `pmtrec train "
                                 "--label stage=... --label dataset=...`, as the workflow does)")
        if "seed" in labels and int(labels["seed"]) != int(result["seed"]):
            raise AggregateError(f"{path}: seed {result['seed']} in the file, label seed {labels['seed']}")
        entry = {"kind": labels["stage"], "dataset": str(labels["dataset"]), "method": result["method"],
                 "seed": int(result["seed"]), "setting": str(labels.get("setting") or ""), "path": str(path)}
        for key in ("values", "sweep", "benchmark"):
            if key in labels:
                entry[key] = labels[key]
        entries.append(entry)
    return entries


def check_significance(min_seeds: Any, equivalence_margin: Any, n_resamples: Any) -> None:
    """Refuse a bad ``significance`` setting before any work (one line naming the key)."""
    def integer(x):
        return isinstance(x, int) and not isinstance(x, bool)

    if not integer(min_seeds) or min_seeds < 2:
        raise AggregateError(f"significance.min_seeds must be an integer of at least 2, got {min_seeds!r}")
    if isinstance(equivalence_margin, bool) or not isinstance(equivalence_margin, (int, float)) \
            or not 0 < equivalence_margin < 1:
        raise AggregateError(f"significance.equivalence_margin must lie in (0, 1), got {equivalence_margin!r}")
    if not integer(n_resamples) or n_resamples < 1:
        raise AggregateError(f"significance.n_resamples must be a positive integer, got {n_resamples!r}")


def aggregate(entries: Sequence[Mapping[str, Any]], datasets: Mapping[str, str | Path] | None = None, *,
              reference: str = "pmtrec", exclude: Iterable[str] | None = None, select_metric: str = "ndcg@20",
              wilcoxon_min_n: int = 6, tune_metric: str = "ndcg@20",
              results: Mapping[str, dict] | None = None, probes: Sequence[str | Path | Mapping] = (),
              maps: Mapping[str, str | Path] | None = None, min_seeds: int = 5,
              equivalence_margin: float = 0.01, n_resamples: int = 9999,
              overhead_threshold: float = 1.5, protocol: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """Build every table (see the module docstring). ``results`` (path -> dict) skips the reading;
    ``probes`` (probe JSONs, or entries labelling them) and ``maps`` (dataset -> map CSV) are the
    embedding analysis's files (:mod:`pmtrec.analysis.tables`); ``min_seeds``,
    ``equivalence_margin`` and ``n_resamples`` are the comparisons' ``significance`` settings;
    ``protocol`` is the study plan's declared tuning protocol (``Study.tuning_protocol()``)."""
    from pmtrec.analysis.tables import maps_table, probes_table

    check_significance(min_seeds, equivalence_margin, n_resamples)
    exclude = None if exclude is None else list(exclude)
    # the headroom's race: the non-personalised methods (not the reference, its variants, controls, exclude)
    out_of_race = set(baseline_models() if exclude is None else exclude) | set(CONTROLS) | {reference}
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
    efficiency = efficiency_table(runs)
    values, per_user = _compared_runs(runs, runs_df)
    groups = groups_table(runs)
    tuning = tuning_table(runs, tune_metric)
    try:
        comparisons = cmp.comparison_table(values, per_user, reference, min_seeds=min_seeds,
                                           margin=equivalence_margin, n_resamples=n_resamples)
        claims_df = claims(comparisons, values["method"], row_weights, efficiency,
                           dict.fromkeys(values["dataset"]), reference, equivalence_margin, overhead_threshold)
    except PmtrecError as exc:
        raise AggregateError(str(exc)) from None
    return {
        "runs": runs_df,
        "summary": summary_table(runs_df),
        "significance": significance_table(runs_df, reference, exclude, select_metric, wilcoxon_min_n),
        "groups": groups,
        "curves": curves,
        "row_weights": row_weights,
        "cosines": cosines,
        "efficiency": efficiency,
        "sensitivity": sensitivity_table(runs, runs_df),
        "ablation": ablation_table(runs_df, reference),
        "dataset_stats": dataset_stats_table(datasets or {}),
        "tuning": tuning,
        "probes": probes_table(probes),
        "embedding_maps": maps_table(maps or {}),
        "methods": methods_table(runs_df),
        "comparisons": comparisons,
        "claims": claims_df,
        "convergence": convergence_table(efficiency),
        "headroom": headroom_table(groups, [m for m in dict.fromkeys(groups["method"])
                                            if m not in out_of_race and not m.startswith(reference + "-")]),
        "tuning_protocol": protocol_table(tuning, protocol),
    }


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<name>.csv`` for every table, each atomically (``atomic_path``: usual permissions)."""
    out_dir = Path(out_dir)
    written = []
    for name, df in tables.items():
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        written.append(path)
    return written
