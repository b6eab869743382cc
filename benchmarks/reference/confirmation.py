"""Issue 19's confirmation on the reported seeds, read from the reference study's finished runs.

    .venv/bin/python -m benchmarks.reference.confirmation --workdir /work/ref [--out DIR]

The second round kept PMTRec's default, so the confirmation is the reference study's own main
runs: per dataset, PMTRec, EW, the best tuned baseline (the workflow's rule,
``pmtrec.study.statistics.best_baselines``: the highest mean validation NDCG@20 over the main
runs), the control ``static-schedule`` (a main run) and the ablation ``pmtrec-shuffled``;
validation and test NDCG@20 and Recall@20, mean over the seeds with a 95% t-interval, and the
number of seeds finished (``n``; the study reports 5). And which way PMTRec's per-user weights
lean: the auxiliary row weight of the least vs the most active user group at each run's last
epoch (``pmtrec.aggregate.personalisation_flags``, claim 3's reading).

Writes ``reference_confirmation.csv`` and ``reference_confirmation_weights.csv`` into ``--out``
(default benchmarks/results). It decides nothing and can run while the study is still running: a
dataset whose rows have ``n`` < 5 is not finished. The study's report holds the same numbers once
it is complete (summary.csv, claims.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pmtrec.aggregate import curves_tables, entries_from_results, personalisation_flags, runs_table, write_tables
from pmtrec.study.compare import confidence_bounds
from pmtrec.study.statistics import best_baselines, summary_table

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("ndcg@20", "recall@20")
CONTROLS = (("main", "static-schedule"), ("ablation", "pmtrec-shuffled"))
COLUMNS = ["dataset", "role", "kind", "method", "split", "metric", "n", "mean", "ci_low", "ci_high"]


def finished_results(workdir: Path) -> list[Path]:
    """The main runs' and the shuffled control's result JSONs (written last by `pmtrec train`)."""
    results = workdir / "results"
    return sorted(results.glob("runs/*/*/seed*.json")) + sorted(results.glob("ablation/*/pmtrec-shuffled/seed*.json"))


def confirmation(runs: list[tuple[dict, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table of the module doc and PMTRec's per-group lean, from (entry, result) pairs."""
    runs_df = runs_table(runs)
    summary = summary_table(runs_df)
    best = best_baselines(runs_df)
    rows = []
    for dataset in dict.fromkeys(runs_df["dataset"]):
        roles = [("PMTRec", "main", "pmtrec"), ("EW", "main", "ew")]
        if dataset in best:
            roles.append(("best tuned baseline", "main", best[dataset]))
        roles += [("control", kind, method) for kind, method in CONTROLS]
        for role, kind, method in roles:
            s = summary[(summary["dataset"] == dataset) & (summary["kind"] == kind) & (summary["method"] == method)
                        & (summary["variant"] == "") & summary["metric"].isin(METRICS)]
            for r in s.to_dict("records"):
                low, high = (float(x) for x in confidence_bounds(r["mean"], r["std"], r["n"]))
                rows.append({"dataset": dataset, "role": role, "kind": kind, "method": method, "split": r["split"],
                             "metric": r["metric"], "n": int(r["n"]), "mean": float(r["mean"]), "ci_low": low,
                             "ci_high": high})
    table = pd.DataFrame(rows, columns=COLUMNS)
    _, row_weights, _ = curves_tables(runs)
    lean = personalisation_flags(row_weights, dict.fromkeys(runs_df["dataset"]))
    return table, lean


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference.confirmation",
                                description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="the reference study's folder")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    paths = finished_results(args.workdir)
    if not paths:
        raise SystemExit(f"confirmation: no finished main run under {args.workdir / 'results' / 'runs'}")
    results: dict = {}
    entries = entries_from_results(paths, results)
    table, lean = confirmation([(e, results[e["path"]]) for e in entries])
    write_tables({"reference_confirmation": table, "reference_confirmation_weights": lean}, args.out)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table[table["metric"] == "ndcg@20"].to_string(index=False))
        print(lean.to_string(index=False))
    print(f"written {args.out / 'reference_confirmation.csv'} and reference_confirmation_weights.csv "
          f"({len(paths)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
