"""The study's cost as a benchmark: measured CPU-seconds per stage, dataset and method, and the paper study's.

    .venv/bin/python -m benchmarks.study_cost --tables results/tables --config config/paper.yaml [--cores 2]
    .venv/bin/python -m benchmarks.study_cost --measured benchmarks/results/study_cost.csv --config C --out DIR

Reads a finished study's ``efficiency.csv`` (one row per training job, with its Snakemake benchmark)
and ``dataset_stats.csv``, and the ``prepare`` jobs' benchmark files (``--bench-runs``, default the
study's ``benchmarks/runs`` beside its ``results/``). Writes to ``--out`` (default benchmarks/results):

* ``study_cost.csv``: the measured cost per stage, dataset, method and hardware (pmtrec.study.cost.cost_table);
* ``study_cost_projection.csv``: the ``--config`` study's jobs per stage, dataset and method with their
  projected CPU-seconds on this kind of machine (and one-GPU seconds when GPU runs were measured), each
  borrowed measurement named in ``projected_from`` (pmtrec.study.cost.project);
* ``study_cost_totals.csv``: per stage and in total, CPU hours and the wall-clock estimate at
  ``--parallel`` one-thread jobs on ``--cores`` cores, and GPU hours (pmtrec.study.cost.ASSUMPTIONS).

Datasets the config plans but the study did not run are scaled by size; their statistics come from the
study's dataset_stats.csv and ``--stats`` (default benchmarks/results/real_datasets_stats.csv, the four
paper datasets). ``--epochs``: epochs of a planned training job (default: the config's ``train.epochs``
cap, so runs that stop early cost less: an upper bound; ``measured`` keeps the measured epochs).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

from pmtrec.errors import DataError, PmtrecError
from pmtrec.io import atomic_path
from pmtrec.study import cost

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
NAMES = ("study_cost.csv", "study_cost_projection.csv", "study_cost_totals.csv")


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def prepare_rows(bench_runs: Path, datasets: set[str]) -> pd.DataFrame:
    """The prepare jobs' Snakemake benchmarks (``prepare/<dataset>[.split<N>].tsv``) as efficiency rows."""
    from pmtrec.aggregate import read_benchmark

    rows = []
    for tsv in sorted((bench_runs / "prepare").glob("*.tsv")):
        dataset = re.sub(r"\.split\d+$", "", tsv.stem)
        bench = read_benchmark(tsv)
        if dataset in datasets and bench:  # another study's leftovers are not this one's cost
            rows.append({"kind": "prepare", "dataset": dataset, "method": "", "device": "cpu", "epochs_run": 0,
                         "epoch_time_s": float("nan"), "wall_time_s": float("nan"),
                         "bench_s": bench.get("bench_s", float("nan")),
                         "bench_cpu_time_s": bench.get("bench_cpu_time_s", float("nan"))})
    return pd.DataFrame(rows, columns=cost.EFFICIENCY_COLUMNS)


def load_plan(config: Path):
    from pmtrec.study import load_study

    if not config.is_file():
        raise DataError(f"{config}: config file not found")
    try:
        cfg = yaml.safe_load(config.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{config}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{config}: not a workflow config (a mapping of keys)")
    return load_study(cfg, SCHEMA)


def planned_epochs(study, arg: str | None) -> float | None:
    if arg == "measured":
        return None
    if arg is not None:
        try:
            value = float(arg)
        except ValueError:
            value = -1.0
        if value <= 0:
            raise PmtrecError(f"--epochs: '{arg}' is not a positive number or 'measured'")
        return value
    from pmtrec.config import load_config

    train = (study.cfg.get("run") or {}).get("train") or {}
    return float(train.get("epochs", load_config()["train"]["epochs"]))


def run(args: argparse.Namespace) -> tuple[dict[str, pd.DataFrame], list[str]]:
    extra = [read_csv(Path(p)) for p in args.stats]
    study = load_plan(Path(args.config))
    notes = []
    plan = cost.plan_counts(study)
    if args.measured:  # an earlier run's study_cost.csv: project another config without its tables
        measured = read_csv(Path(args.measured))
        for col in ("method", "source", "job_source"):  # text columns: an empty cell is "", as cost_table writes it
            if col in measured:
                measured[col] = measured[col].fillna("").astype(str)
        own = []
        if not (measured["stage"] == "prepare").any():
            plan = plan[plan["stage"] != "prepare"]
            notes.append(f"no prepare rows in {args.measured}: prepare jobs left out of the projection")
    else:
        tables = Path(args.tables)
        eff = read_csv(tables / "efficiency.csv")
        own = [(read_csv(tables / "dataset_stats.csv"), tables / "dataset_stats.csv")]
        bench_runs = Path(args.bench_runs) if args.bench_runs else tables.resolve().parents[1] / "benchmarks" / "runs"
        prep = prepare_rows(bench_runs, set(eff["dataset"].astype(str)))
        measured = cost.cost_table(pd.concat([prep, eff], ignore_index=True) if len(prep) else eff,
                                   str(tables / "efficiency.csv"))
        if prep.empty:
            plan = plan[plan["stage"] != "prepare"]
            notes.append(f"no prepare benchmarks under {bench_runs}/prepare for this study's datasets: prepare "
                         "jobs left out of the projection")
    size = pd.concat([cost.dataset_size(s, str(n)) for s, n in [*own, *zip(extra, args.stats)]])
    size = size[~size.index.duplicated()]  # the study's own statistics first
    epochs = planned_epochs(study, args.epochs)
    projection = cost.project(measured, plan, size, epochs=epochs)
    tot = cost.totals(projection, cores=args.cores, parallel=args.parallel)
    if not (measured["hardware"] == "gpu").any():
        notes.append("no efficiency rows with device cuda: no GPU projection (gpu_* columns empty)")
    if not (measured["hardware"] == "cpu").any():
        notes.append("no efficiency rows run on the CPU: no CPU projection of the training jobs (cpu_s empty)")
    notes.append(f"planned epochs per trained job: {'as measured' if epochs is None else f'{epochs:g}'}; "
                 f"measured mean epochs: {measured.loc[measured['epochs_mean'] > 0, 'epochs_mean'].mean():.1f}")
    notes.append(cost.ASSUMPTIONS)
    return dict(zip(NAMES, (measured, projection, tot))), notes


def summary(frames: dict[str, pd.DataFrame], notes: list[str], args) -> str:
    measured, tot = frames[NAMES[0]], frames[NAMES[2]]
    lines = [f"measured: {int(measured['jobs'].sum())} jobs, {measured['cpu_s'].sum():,.0f} CPU-s "
             f"({', '.join(f'{s} {v:,.0f}' for s, v in measured.groupby('stage', sort=False)['cpu_s'].sum().items())})",
             f"projected ({args.config}, {min(args.parallel or args.cores, args.cores)} jobs at once on "
             f"{args.cores} cores):"]
    for _, r in tot.iterrows():
        gpu = f", {r['gpu_h']:.1f} GPU h" if pd.notna(r["gpu_h"]) else ""
        lines.append(f"  {r['stage']:<12} {int(r['jobs']):>5} jobs ({int(r['projected_jobs'])} borrowed): "
                     f"{r['cpu_h']:,.1f} CPU h, {r['wall_h']:,.1f} h wall{gpu}")
    return "\n".join(lines + [f"note: {n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study_cost", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tables", help="results/tables of a finished study (efficiency.csv ...)")
    src.add_argument("--measured", help="or the measured study_cost.csv of an earlier run (e.g. "
                                        "benchmarks/results/study_cost.csv): projects --config without its tables")
    p.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"), help="the study to project")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores of the machine (default: this one's)")
    p.add_argument("--parallel", type=int, default=None, help="jobs at once (default: --cores)")
    p.add_argument("--epochs", default=None, help="epochs of a planned training job, or 'measured' "
                                                  "(default: the config's train.epochs)")
    p.add_argument("--stats", nargs="*", default=[str(RESULTS / "real_datasets_stats.csv")],
                   help="more dataset statistics CSVs (dataset, interactions, ...) for unmeasured datasets")
    p.add_argument("--bench-runs", default=None, help="the study's benchmarks/runs (prepare jobs)")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results)")
    args = p.parse_args(argv)
    try:
        frames, notes = run(args)
    except PmtrecError as exc:
        print(f"study_cost: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    for name, frame in frames.items():  # each file written then renamed; all computed before the first
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    print(summary(frames, notes, args))
    print(f"wrote {', '.join(str(out / n) for n in NAMES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
