"""The study's cost: measured CPU-seconds per stage, dataset and method, and a projection of a planned study.

Pure functions on DataFrames (``benchmarks/study_cost.py`` and the report's efficiency section
call them):

* :func:`cost_table` — per stage (``kind``), dataset, method and hardware of ``efficiency.csv``: jobs,
  total and mean CPU-seconds (the Snakemake benchmark's ``cpu_time``; else its wall seconds ``s``; else
  the run's own wall time, named in ``source``), job seconds (``s``, else the run's wall time), mean
  epochs run and mean training seconds per epoch.
* :func:`plan_counts` — jobs per stage, dataset and method of a :class:`pmtrec.study.Study` (its result
  entries, untrained baselines included; ``prepare`` jobs from the prepared folders the runs read).
* :func:`project` — a planned study's cost from measured per-job costs. A (stage, dataset, method)
  without a measurement of its own borrows one (same method on another dataset, then the same method in
  another stage, then the mean of the stage's measured methods of its kind, trained or not), scaled by
  the ratio of the two datasets' sizes (:func:`dataset_size`); every such row names its source in
  ``projected_from``. :func:`totals` adds up the projection and its wall-clock estimates (``ASSUMPTIONS``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from pmtrec.errors import DataError, PmtrecError

STAGES = ("prepare", "tune", "main", "ablation", "sensitivity")  # the workflow's order
KEYS = ["stage", "dataset", "method"]
EFFICIENCY_COLUMNS = ["kind", "dataset", "method", "device", "epochs_run", "epoch_time_s", "wall_time_s", "bench_s",
                      "bench_cpu_time_s"]
COST_COLUMNS = KEYS + ["hardware", "jobs", "cpu_s", "cpu_s_mean", "source", "job_s", "job_s_mean", "job_source",
                       "epochs_mean", "epoch_s_mean"]
PROJECTION_COLUMNS = KEYS + ["jobs", "cpu_s_per_job", "cpu_s", "projected_from", "factor",
                             "gpu_s_per_job", "gpu_s", "gpu_projected_from", "gpu_factor"]
TOTAL_COLUMNS = ["stage", "jobs", "cpu_s", "cpu_h", "wall_h", "gpu_h", "projected_jobs"]
# Relations a training job reads besides the interactions; columns of dataset_stats.csv.
SIZE_COLUMNS = ("interactions", "social_links", "coview_links", "category_items")
ASSUMPTIONS = ("CPU: each job keeps one core busy for its measured CPU-seconds and the jobs pack perfectly, so "
               "wall time = total CPU-seconds / min(parallel jobs, cores) (a lower bound: no waiting between "
               "stages, no contention). GPU: the jobs run one at a time on one GPU (jobs_per_gpu 1) for their "
               "measured job seconds; prepare jobs count no GPU time. Unmeasured rows scale a measured job's "
               "cost linearly with dataset size (interactions + social, co-view and category pairs).")


def _require(df: pd.DataFrame, columns, name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)}")


def _first_finite(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first finite value of ``columns`` and the name of the column it came from ('' if none)."""
    vals = [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in columns]
    ok = [np.isfinite(v) for v in vals]
    return np.select(ok, vals, np.nan), np.select(ok, columns, "")


def _stage_order(df: pd.DataFrame) -> pd.DataFrame:
    rank = {s: i for i, s in enumerate(STAGES)}
    order = df["stage"].map(rank).fillna(len(STAGES))
    then = [c for c in ("dataset", "method") if c in df.columns]
    return df.assign(_o=order).sort_values(["_o", *then], kind="stable").drop(columns="_o").reset_index(drop=True)


def cost_table(efficiency: pd.DataFrame, name: str = "efficiency.csv",
               by: list[str] | None = None) -> pd.DataFrame:
    """Measured cost per stage, dataset, method and hardware ('gpu': device cuda*, else 'cpu'), or per
    the columns ``by`` (a subset of those four; means are then over the group's jobs)."""
    _require(efficiency, EFFICIENCY_COLUMNS, name)
    by = list(by or KEYS + ["hardware"])
    columns = by + [c for c in COST_COLUMNS if c not in KEYS + ["hardware"]]
    if efficiency.empty:
        return pd.DataFrame(columns=columns)
    e = efficiency
    cpu, src = _first_finite(e, ["bench_cpu_time_s", "bench_s", "wall_time_s"])
    job, job_src = _first_finite(e, ["bench_s", "wall_time_s"])
    epochs = pd.to_numeric(e["epochs_run"], errors="coerce")
    frame = pd.DataFrame({
        "stage": e["kind"].astype(str).to_numpy(), "dataset": e["dataset"].astype(str).to_numpy(),
        "method": e["method"].astype(str).to_numpy(),
        "hardware": np.where(e["device"].astype(str).str.startswith("cuda"), "gpu", "cpu"),
        "cpu": cpu, "src": src, "job": job, "job_src": job_src, "epochs": epochs.to_numpy(dtype=float),
        # seconds per epoch only of trained runs (an untrained baseline has none)
        "epoch_s": np.where(epochs > 0, pd.to_numeric(e["epoch_time_s"], errors="coerce"), np.nan)})
    g = frame.groupby(by, sort=False)
    out = g.agg(jobs=("cpu", "size"), cpu_s=("cpu", "sum"), cpu_s_mean=("cpu", "mean"), job_s=("job", "sum"),
                job_s_mean=("job", "mean"), epochs_mean=("epochs", "mean"), epoch_s_mean=("epoch_s", "mean"))
    # which columns the group's jobs were read from, e.g. "bench_cpu_time_s+wall_time_s"
    out["source"] = g["src"].agg(lambda s: "+".join(sorted(set(s) - {""})) or "none")
    out["job_source"] = g["job_src"].agg(lambda s: "+".join(sorted(set(s) - {""})) or "none")
    out = out.reset_index()
    return (_stage_order(out) if "stage" in by else out)[columns]


def dataset_size(stats: pd.DataFrame, name: str = "dataset_stats.csv") -> pd.Series:
    """Work units per dataset: interactions + social, co-view and category pairs (absent columns: 0).

    All interactions, not the training split, because the benchmark suite's real-dataset statistics
    have no split; the splits hold alike shares, so the ratio between datasets is the same."""
    _require(stats, ["dataset", "interactions"], name)
    cols = [c for c in SIZE_COLUMNS if c in stats.columns]
    size = stats[cols].apply(pd.to_numeric, errors="coerce").fillna(0).sum(axis=1)
    return pd.Series(size.to_numpy(dtype=float), index=stats["dataset"].astype(str)).groupby(level=0).first()


def plan_counts(study) -> pd.DataFrame:
    """Jobs per (stage, dataset, method) of a Study, plus whether the method trains; ``prepare`` jobs are
    the distinct prepared folders the runs read (one per split seed with ``split_seed: run``)."""
    entries = pd.DataFrame(study.result_entries())
    cols = KEYS + ["jobs", "trains"]
    if entries.empty:
        return pd.DataFrame(columns=cols)
    runs = entries.rename(columns={"kind": "stage"}).groupby(KEYS, sort=False).size().rename("jobs").reset_index()
    folders = pd.DataFrame({"dataset": entries["dataset"],
                            "folder": [study.data_dir(d, s) for d, s in zip(entries["dataset"], entries["seed"])]})
    prep = folders.drop_duplicates().groupby("dataset", sort=False).size().rename("jobs").reset_index()
    prep = prep.assign(stage="prepare", method="")
    out = pd.concat([prep[KEYS + ["jobs"]], runs], ignore_index=True)
    out["trains"] = [m != "" and study.trains(m) for m in out["method"]]
    return _stage_order(out)[cols]


def _borrow(todo: pd.DataFrame, src: pd.DataFrame, on: list[str], size: pd.Series, label) -> pd.DataFrame:
    """For each row of ``todo`` (index: plan row), the source row of ``src`` matching on ``on`` whose
    dataset is the same or nearest in size; columns per_job, factor (size ratio), projected_from."""
    m = todo.reset_index().merge(src, on=on, suffixes=("", "_src"))
    if m.empty:
        return m
    same = m["dataset"] == m["dataset_src"]
    ratio = m["dataset"].map(size) / m["dataset_src"].map(size)
    m["factor"] = np.where(same, 1.0, ratio)
    m = m[same | np.isfinite(m["factor"])]  # another dataset only with both sizes known
    m = m.assign(_d=np.abs(np.log(m["factor"].astype(float))))
    m = m.sort_values(["row", "_d"], kind="stable").drop_duplicates("row")
    m["projected_from"] = label(m)
    return m.set_index("row")[["per_job", "factor", "projected_from", "epochs_src", "dataset_src"]]


def _project_one(plan: pd.DataFrame, measured: pd.DataFrame, value: str, size: pd.Series) -> pd.DataFrame:
    """Per plan row: per-job cost, the size factor and where it came from, for one hardware's rows."""
    src = measured.rename(columns={"dataset": "dataset_src", value: "per_job", "epochs_mean": "epochs_src"})
    src = src.assign(trains=src["epochs_src"] > 0)
    out = pd.DataFrame(index=plan.index, columns=["per_job", "factor", "projected_from", "epochs_src",
                                                  "dataset_src"], dtype=object)
    todo = plan.rename_axis("row")

    def fill(found: pd.DataFrame) -> None:
        nonlocal todo
        if len(found):
            out.loc[found.index] = found.to_numpy()
            todo = todo.drop(index=found.index)

    # 1. its own measurement; 2. the same stage and method on another dataset
    both = src[["stage", "method", "dataset_src", "per_job", "epochs_src"]]
    fill(_borrow(todo, both, ["stage", "method"], size,
                 lambda m: np.where(m["dataset"] == m["dataset_src"], "", m["stage"] + "/" + m["dataset_src"])))
    # 3. the same method in another stage (main first), same dataset or nearest
    pref = src.assign(_p=(src["stage"] != "main").astype(int)).sort_values("_p", kind="stable")
    fill(_borrow(todo, pref[["method", "stage", "dataset_src", "per_job", "epochs_src"]]
                 .rename(columns={"stage": "stage_src"}), ["method"], size,
                 lambda m: m["stage_src"] + "/" + m["method"] + "/" + m["dataset_src"]))
    # 4. the mean of the stage's measured methods of the same kind (trained or not); 5. of any stage
    means = src.groupby(["stage", "trains", "dataset_src"], as_index=False)[["per_job", "epochs_src"]].mean()
    fill(_borrow(todo, means, ["stage", "trains"], size,
                 lambda m: "mean of " + m["stage"] + " methods/" + m["dataset_src"]))
    # (training stages only: a prepare job is no training job)
    runs = src[src["stage"] != "prepare"]
    any_stage = runs.groupby(["trains", "dataset_src"], as_index=False)[["per_job", "epochs_src"]].mean()
    fill(_borrow(todo[todo["stage"] != "prepare"], any_stage, ["trains"], size,
                 lambda m: "mean of all methods/" + m["dataset_src"]))
    return out


def project(measured: pd.DataFrame, plan: pd.DataFrame, scale: Mapping[str, float] | pd.Series | None = None,
            *, epochs: float | None = None) -> pd.DataFrame:
    """The projected cost of the study whose jobs per (stage, dataset, method) are ``plan``.

    ``measured``: :func:`cost_table`'s frame; CPU rows give ``cpu_s`` (CPU-seconds), GPU rows ``gpu_s``
    (job seconds on the GPU); a hardware without rows leaves its columns NaN. ``scale``: a size per
    dataset (e.g. :func:`dataset_size`); a row borrowed from another dataset costs its per-job cost x
    size(target) / size(source) (``factor``). ``epochs``: planned epochs of a trained job; when given, its
    (own or borrowed) cost above the source dataset's untrained (fixed: start-up, loading, test) job cost is
    scaled by epochs / its measured mean epochs. A plan row nothing can be borrowed for is an error."""
    _require(measured, ["stage", "dataset", "method", "hardware", "cpu_s_mean", "job_s_mean", "epochs_mean"],
             "measured cost table")
    _require(plan, KEYS + ["jobs"], "plan counts")
    plan = plan.reset_index(drop=True)
    if "trains" not in plan.columns:
        plan = plan.assign(trains=plan["method"] != "")
    size = pd.Series(dict(scale) if scale is not None else {}, dtype=float)
    out = plan[KEYS + ["jobs"]].copy()
    for hw, value, prefix in (("cpu", "cpu_s_mean", ""), ("gpu", "job_s_mean", "gpu_")):
        rows = measured[measured["hardware"] == hw]
        col = "cpu_s" if hw == "cpu" else "gpu_s"
        out[f"{col}_per_job"], out[f"{prefix}projected_from"], out[f"{prefix}factor"] = np.nan, "", np.nan
        # prepare jobs run on the CPU in a GPU study too: no GPU time
        jobs = plan[plan["stage"] != "prepare"] if hw == "gpu" else plan
        if hw == "gpu" and not rows.empty:
            cpu_only = plan.index.difference(jobs.index)
            out.loc[cpu_only, [f"{col}_per_job", f"{prefix}projected_from", f"{prefix}factor"]] = [0.0, "CPU job",
                                                                                                    1.0]
        if rows.empty or jobs.empty:
            out[col] = out[f"{col}_per_job"] * out["jobs"]
            continue
        got = _project_one(jobs, rows, value, size)
        missing = got["per_job"].isna()
        if missing.any():
            r = jobs[missing].iloc[0]
            known = ", ".join(sorted(set(rows["dataset"])))
            raise PmtrecError(f"cost projection: no measurement to project {r['stage']}/{r['dataset']}/"
                              f"{r['method'] or '-'} from on {hw} (measured datasets: {known}; a dataset "
                              f"without one needs a size in the scale mapping)")
        per_job = got["per_job"].astype(float)
        factor = got["factor"].astype(float)
        if epochs is not None:
            untrained = rows[(rows["epochs_mean"] == 0) & (rows["stage"] != "prepare")]
            fixed = untrained.groupby("dataset")[value].mean()
            base = got["dataset_src"].map(fixed).fillna(0.0).astype(float).clip(upper=per_job)
            ep = got["epochs_src"].astype(float)
            grow = np.where(jobs["trains"].to_numpy(dtype=bool) & (ep > 0).to_numpy(), float(epochs) / ep, 1.0)
            per_job = base + (per_job - base) * grow
        out.loc[jobs.index, f"{col}_per_job"] = per_job * factor
        out.loc[jobs.index, f"{prefix}projected_from"] = got["projected_from"].astype(str)
        out.loc[jobs.index, f"{prefix}factor"] = factor
        out[col] = out[f"{col}_per_job"] * out["jobs"]
    return out[PROJECTION_COLUMNS]


def totals(projection: pd.DataFrame, *, cores: int, parallel: int | None = None) -> pd.DataFrame:
    """Per stage and for the whole study: jobs, CPU-seconds and hours, wall-clock hours at
    ``min(parallel, cores)`` one-thread jobs at once, and one-GPU hours (see ``ASSUMPTIONS``)."""
    if cores < 1 or (parallel is not None and parallel < 1):
        raise PmtrecError(f"cost totals: cores ({cores}) and parallel jobs ({parallel}) must be >= 1")
    _require(projection, ["stage", "jobs", "cpu_s", "gpu_s", "projected_from"], "projection")
    at_once = min(parallel or cores, cores)
    gpu_from = projection.get("gpu_projected_from", pd.Series("", index=projection.index)).astype(str)
    borrowed = (projection["projected_from"].astype(str) != "") | ~gpu_from.isin(["", "CPU job"])
    p = projection.assign(projected_jobs=np.where(borrowed, projection["jobs"], 0))
    # skipna=False: a stage (or study) with an unprojected part has no total, rather than a partial one
    per = p.groupby("stage", sort=False).agg(
        jobs=("jobs", "sum"), cpu_s=("cpu_s", lambda s: s.sum(skipna=False)),
        gpu_s=("gpu_s", lambda s: s.sum(skipna=False)), projected_jobs=("projected_jobs", "sum")).reset_index()
    whole = pd.DataFrame([{"stage": "total", "jobs": per["jobs"].sum(), "cpu_s": per["cpu_s"].sum(skipna=False),
                           "gpu_s": per["gpu_s"].sum(skipna=False), "projected_jobs": per["projected_jobs"].sum()}])
    t = pd.concat([_stage_order(per.assign(dataset="", method="")).drop(columns=["dataset", "method"]), whole],
                  ignore_index=True) if len(per) else whole
    t["cpu_h"] = t["cpu_s"] / 3600
    t["wall_h"] = t["cpu_h"] / at_once
    t["gpu_h"] = t["gpu_s"] / 3600
    return t[TOTAL_COLUMNS]
