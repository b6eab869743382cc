"""Where the reference study stands: its planned jobs per dataset and stage, and how many are saved.

    .venv/bin/python -m benchmarks.reference.progress [--workdir /work/ref]

Counts the result files of config/reference.yaml's plan (tuning, main runs, their probes, ablations,
sensitivity) that the parts of reports/reference/runs hold (``--workdir``: or that exist there,
finished or saved). Prints a table; ``--markdown`` prints it as a Markdown table.

Its last column, ``CPU-h left``, estimates the CPU-hours still to run: each missing job at the mean
measured time (Snakemake benchmark ``s``; the jobs are one-thread) of the finished jobs of its
dataset, stage and method; else of that method on another stage (its tuning); else of the stage's
other jobs (not for main runs, whose untrained baselines finish first); else of the dataset's tuning
jobs; ``?`` when nothing of the dataset is measured. A missing probe costs its main run again when
that run is finished but its embedding tables are gone (they are not saved), else nothing (a probe
takes seconds).
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
from io import StringIO
from pathlib import Path

import pandas as pd
from benchmarks.reference.snapshot import PARTS, finished_files, saved_files
from benchmarks.study_cost import load_plan
from pmtrec.errors import PmtrecError
from pmtrec.study.paths import bench_path, run_path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("tune", "main", "probe", "ablation", "sensitivity")


def _dataset(path: str) -> str:
    parts = path.split("/")
    return parts[3] if parts[1] == "analysis" else parts[2]


def planned(study) -> dict[str, list[str]]:
    """Stage -> the plan's result files."""
    return {"tune": study.tune_runs(), "main": study.main_runs(),
            "probe": [e["path"] for e in study.probe_entries()],
            "ablation": study.ablation_runs(), "sensitivity": study.sensitivity_runs()}


def progress(study, done: set[str]) -> pd.DataFrame:
    """Per dataset and stage: 'done/planned' counts, with a row 'all'."""
    rows = []
    for stage, files in planned(study).items():
        for f in files:
            rows.append({"dataset": _dataset(f), "stage": stage, "done": f in done})
    df = pd.DataFrame(rows, columns=["dataset", "stage", "done"])
    g = df.groupby(["dataset", "stage"], sort=False)["done"].agg(["sum", "count"])
    total = df.groupby("stage", sort=False)["done"].agg(["sum", "count"])
    total.index = pd.MultiIndex.from_product([["all"], total.index])
    g = pd.concat([g, total])
    cell = g["sum"].astype(int).astype(str) + "/" + g["count"].astype(str)
    table = cell.unstack("stage").reindex(columns=[s for s in STAGES if s in set(df["stage"])]).fillna("–")
    order = list(dict.fromkeys(study.datasets)) + ["all"]
    return table.reindex([d for d in order if d in table.index]).rename_axis(index="dataset", columns=None)


def bench_of(result: str) -> str | None:
    """The Snakemake benchmark file of a training job's result file (None for probes)."""
    parts = result.split("/")
    stage = {"runs": "train"}.get(parts[1], parts[1])
    if stage == "analysis":
        return None
    return bench_path(stage, *re.sub(r"\.json$", "", "/".join(parts[2:])).split("/"))


def measured_seconds(parts: Path = PARTS, workdir: Path | None = None) -> dict[str, float]:
    """Benchmark file -> its measured seconds, from the saved parts (and ``workdir``'s files)."""
    out: dict[str, float] = {}
    for tar_path in sorted(parts.glob("part-*.tar.xz")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.endswith(".tsv"):
                    out[m.name] = _seconds(tar.extractfile(m).read().decode())
    if workdir is not None:
        for tsv in (workdir / "benchmarks" / "runs").rglob("*.tsv"):
            out[tsv.relative_to(workdir).as_posix()] = _seconds(tsv.read_text())
    return {k: v for k, v in out.items() if v == v}


def _seconds(text: str) -> float:
    try:
        return float(pd.read_csv(StringIO(text), sep="\t")["s"].iloc[0])
    except (KeyError, IndexError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return float("nan")


def remaining_hours(study, done: set[str], seconds: dict[str, float], tables: set[str] = frozenset()) -> pd.Series:
    """Per dataset (and 'all'): the estimated CPU-hours of the plan's missing jobs (module docstring).
    ``tables``: main runs whose embedding tables exist, so their missing probe costs nothing."""
    plan = planned(study)
    sums: dict[tuple, list[float]] = {}
    for stage, files in plan.items():
        for f in files:
            if f in done and (b := bench_of(f)) in seconds:
                d, m = _dataset(f), f.split("/")[3]
                for key in ((d, stage, m), (d, m), (d, stage), (d,)):
                    sums.setdefault(key, []).append(seconds[b])
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    probe_of = {e["path"]: e for e in study.probe_entries()}

    def job(stage: str, f: str) -> float:
        d, m = _dataset(f), f.split("/")[3]
        # the same method on this stage, else on another stage (its tuning), else the stage's other jobs
        # (not for main runs: their cheapest, untrained baselines finish first), else the tuning jobs
        keys = ((d, stage, m), (d, m)) + (((d, stage),) if stage != "main" else ()) + ((d, "tune"), (d,))
        return next((mean[k] for k in keys if k in mean), float("nan"))  # nothing measured: unknown

    def cost(stage: str, f: str) -> float:
        if stage == "probe":
            e = probe_of[f]
            run = run_path(e["dataset"], e["method"], e["seed"])
            return job("main", run) if run in done and run not in tables else 0.0
        return job(stage, f)

    left: dict[str, float] = {}
    for stage, files in plan.items():
        for f in files:
            if f not in done:
                left[_dataset(f)] = left.get(_dataset(f), 0.0) + cost(stage, f) / 3600
    order = list(dict.fromkeys(study.datasets))
    out = pd.Series({d: left.get(d, 0.0) for d in order}, dtype=float)
    out["all"] = out.sum(skipna=False)
    return out


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown (by hand: pandas' to_markdown needs tabulate, not a dependency of ours)."""
    head = ["dataset", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(table.index, table.values)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "reference.yaml")
    p.add_argument("--parts", type=Path, default=PARTS)
    p.add_argument("--workdir", type=Path, help="also count the finished files of this workflow folder")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    try:
        study = load_plan(args.config)
    except PmtrecError as exc:
        raise SystemExit(f"progress: {exc}") from None
    done = saved_files(args.parts)
    if args.workdir:
        done |= set(finished_files(args.workdir))
    table = progress(study, done)
    tables = set()
    if args.workdir:  # main runs whose embedding tables are still there (their probe needs no retraining)
        tables = {e.as_posix().replace(".emb.npz", ".json").replace(f"{args.workdir.as_posix()}/", "")
                  for e in (args.workdir / "results" / "runs").rglob("*.emb.npz")}
    left = remaining_hours(study, done, measured_seconds(args.parts, args.workdir), tables)
    table["CPU-h left"] = left.reindex(table.index).map(lambda h: "?" if h != h else f"{h:.1f}")
    print(markdown(table) if args.markdown else table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
