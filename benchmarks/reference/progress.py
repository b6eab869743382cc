"""Where the reference study stands: its planned jobs per dataset and stage, and how many are saved.

    .venv/bin/python -m benchmarks.reference.progress [--workdir /work/ref]

Counts the result files of config/reference.yaml's plan (tuning, main runs, their probes, ablations,
sensitivity) that the parts of reports/reference/runs hold (``--workdir``: or that exist there,
finished or saved). Prints a table; ``--markdown`` prints it as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from benchmarks.reference.snapshot import PARTS, finished_files, saved_files
from benchmarks.study_cost import load_plan
from pmtrec.errors import PmtrecError

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
    print(markdown(table) if args.markdown else table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
