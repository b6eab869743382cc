"""Loading the workflow's aggregated tables (pmtrec.aggregate) for the report.

Every problem with an input (a table that is missing, empty, lacks a column or a dataset) is a
:class:`ReportError` with a one-line message naming the file; the notebooks print it as one line
(:func:`pmtrec.report.notebook.setup`) and papermill exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError

__all__ = ["ReportError", "load_table", "load_tables", "pick_datasets", "main_summary", "metrics_of",
           "degrees", "load_benchmark_csvs", "REQUIRED_COLUMNS"]


class ReportError(PmtrecError):
    """A report input is missing, empty or malformed (one line, names the file)."""


# The columns each notebook relies on (pmtrec/aggregate.py writes more).
REQUIRED_COLUMNS = {
    "runs": ["kind", "dataset", "method", "variant", "seed", "split", "metric", "value"],
    "summary": ["kind", "dataset", "method", "variant", "split", "metric", "mean", "std", "n"],
    "significance": ["dataset", "metric", "reference", "baseline", "n", "mean_reference", "mean_baseline",
                     "rel_improvement", "t_pvalue", "wilcoxon_pvalue", "significant"],
    "groups": ["kind", "dataset", "method", "variant", "seed", "split", "group", "n_users", "metric", "value"],
    "curves": ["kind", "dataset", "method", "variant", "seed", "epoch", "series", "key", "value"],
    "row_weights": ["kind", "dataset", "method", "variant", "seed", "epoch", "table", "group", "task", "weight"],
    "cosines": ["kind", "dataset", "method", "variant", "seed", "epoch", "pair", "task_a", "task_b", "cosine"],
    "efficiency": ["kind", "dataset", "method", "variant", "seed", "device", "epochs_run", "epoch_time_s",
                   "wall_time_s", "host_peak_rss_mb", "device_peak_mb", "bench_s", "bench_max_rss_mb"],
    "sensitivity": ["dataset", "method", "sweep", "variant", "split", "metric", "mean", "std", "n"],
    "ablation": ["dataset", "method", "split", "metric", "mean", "std", "n", "delta", "rel_delta"],
    "dataset_stats": ["dataset", "users", "items", "interactions", "density"],
    "tuning": ["dataset", "method", "variant", "seed", "metric", "value", "selected"],
    "methods": ["method", "kind", "family", "label", "colour", "order"],
    "comparisons": ["dataset", "reference", "method", "metric", "n_seeds", "diff", "ci_low", "ci_high", "rel_pct",
                    "p_holm", "p_tost", "verdict", "note"],
    "claims": ["claim", "claim_text", "dataset", "metric", "verdict", "against", "diff", "ci_low", "ci_high",
               "rel_pct", "p_holm", "note"],
    "convergence": ["kind", "dataset", "method", "runs", "cap_stopped", "cap_share", "best_at_last_share", "flagged"],
    "headroom": ["dataset", "metric", "group", "n_users", "best_method", "best_value", "overall_method",
                 "overall_value", "gain", "gain_pct"],
    "tuning_protocol": ["dataset", "method", "item", "value"],
}
_HINT = "run the workflow's aggregate step first: snakemake --cores 1 tables"
_METHODS_SEEN: set[Path] = set()


def use_study_methods(tables_dir: str | Path) -> None:
    """The study's methods table (labels, colours, order; plugin methods included) for the figures."""
    path = Path(tables_dir) / "methods.csv"
    if path in _METHODS_SEEN or not path.is_file() or path.stat().st_size == 0:
        return
    from pmtrec.report import style

    _METHODS_SEEN.add(path)
    try:
        df = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportError(f"{path}: unreadable table ({exc})") from None
    missing = {"method", "label", "colour", "order"} - set(df.columns)
    if missing:
        raise ReportError(f"{path}: column(s) {', '.join(sorted(missing))} missing ({_HINT})")
    style.use_methods_table(df)


def load_table(tables_dir: str | Path, name: str, *, columns: Sequence[str] | None = None,
               allow_empty: bool = False) -> pd.DataFrame:
    """``<tables_dir>/<name>.csv`` as a DataFrame, or a one-line :class:`ReportError`.

    ``columns`` defaults to :data:`REQUIRED_COLUMNS` for the known tables. A table with a header
    but no rows is an error unless ``allow_empty`` (for the optional ones, e.g. cosines).
    """
    path = Path(tables_dir) / f"{name}.csv"
    use_study_methods(Path(tables_dir))
    if not path.is_file():
        raise ReportError(f"{path}: table missing ({_HINT})")
    if path.stat().st_size == 0:
        raise ReportError(f"{path}: table is empty (0 bytes; {_HINT})")
    try:
        df = pd.read_csv(path, keep_default_na=True, na_values=[""], dtype={"variant": str, "group": str})
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: table is empty (no header; {_HINT})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportError(f"{path}: not a readable CSV table ({first})") from None
    wanted = list(columns) if columns is not None else REQUIRED_COLUMNS.get(name, [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if df.empty and not allow_empty:
        raise ReportError(f"{path}: table has no rows (did the workflow run any {name.replace('_', ' ')} jobs?)")
    if "variant" in df.columns:
        df["variant"] = df["variant"].fillna("")
    return df


def load_tables(tables_dir: str | Path, names: Iterable[str], optional: Iterable[str] = ()) -> dict[str, pd.DataFrame]:
    """Several tables at once; those in ``optional`` may be empty."""
    optional = set(optional)
    return {n: load_table(tables_dir, n, allow_empty=n in optional) for n in names}


def pick_datasets(df: pd.DataFrame, datasets: Sequence[str] | None, table: str = "table",
                  skip_missing: bool = False) -> list[str]:
    """The datasets to report: ``datasets`` or, when empty, every dataset of ``df``.

    A requested dataset without rows is an error, or left out with ``skip_missing`` (for the
    ablation and sensitivity studies, which may run on a subset of the datasets).
    """
    have = list(dict.fromkeys(df["dataset"].astype(str)))
    if not datasets:
        return have
    unknown = [d for d in datasets if d not in have]
    if skip_missing:
        return [d for d in datasets if d in have]
    if unknown:
        raise ReportError(f"{table}: no rows for dataset(s) {', '.join(unknown)} (has: {', '.join(have) or 'none'})")
    return list(datasets)


def main_summary(summary: pd.DataFrame, dataset: str, split: str = "test") -> pd.DataFrame:
    """The main-comparison rows of one dataset and split (kind == main, default setting)."""
    s = summary[(summary["kind"] == "main") & (summary["dataset"] == dataset) & (summary["split"] == split)]
    return s[s["variant"] == ""] if (s["variant"] == "").any() else s


def metrics_of(df: pd.DataFrame, families: Sequence[str] = ("recall", "ndcg")) -> list[str]:
    """The ``family@K`` metrics present, ordered by family then K."""
    found = []
    for fam in families:
        ks = sorted({int(m.split("@")[1]) for m in df["metric"].unique() if str(m).startswith(fam + "@")})
        found += [f"{fam}@{k}" for k in ks]
    return found


def degrees(prepared_dir: str | Path, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """User and item degrees (number of interactions) of a prepared dataset (pmtrec.data.store)."""
    from pmtrec.data.store import read_degrees
    from pmtrec.errors import DataError

    try:
        return read_degrees(prepared_dir, split)
    except DataError as exc:
        raise ReportError(str(exc)) from None


def load_benchmark_csvs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The benchmark suite's CSVs (benchmarks/results/*.csv, optional): concatenated, or empty."""
    frames = []
    for p in paths:
        p = Path(p)
        if not p.is_file() or p.stat().st_size == 0:
            continue
        try:
            df = pd.read_csv(p)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            continue
        if {"section", "item", "value"} <= set(df.columns):
            frames.append(df.assign(source=p.name, source_path=str(p)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["hardware", "section", "dataset", "item", "value", "unit", "source", "source_path"])
