"""The reference study's three Epinions baselines, by the rule of docs/protocol.md section 7.

    .venv/bin/python -m benchmarks.reference.pick_epinions --workdir /work/ref [--write]

Reads the tuning runs of the candidate baselines on Ciao, amazon-hin and lastfm in ``--workdir``
(a workflow folder of config/reference.yaml: results/tune/...), scores each candidate per dataset
by its selected setting's mean validation NDCG@20 (pmtrec.study.tuning.select_setting, as the
workflow selects it), ranks them per dataset and orders them by mean rank, ties by mean score.
No reported seed and no test metric is read. Writes benchmarks/results/reference_epinions_pick.csv;
``--write`` also puts the first three into config/reference.yaml's Epinions `methods`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

from pmtrec.study import load_study
from pmtrec.study.tuning import select_setting
from pmtrec.training.results import load_result

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "reference.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
OUT = ROOT / "benchmarks" / "results" / "reference_epinions_pick.csv"
CANDIDATES = ["static", "uw", "dwa", "gradnorm", "rlw", "famo", "dbmtl", "mgda", "pcgrad", "gradvac", "cagrad",
              "imtl", "nashmtl", "alignedmtl", "upgrad", "metabalance"]
SOURCES = ["ciao", "amazon-hin", "lastfm"]
PICK = 3


def scores(workdir: Path, config: Path = CONFIG, datasets=SOURCES, candidates=CANDIDATES) -> pd.DataFrame:
    """One row per (dataset, candidate): the selected setting's mean validation metric."""
    study = load_study(yaml.safe_load(config.read_text()), SCHEMA)
    metric = study.cfg["tune"]["metric"]
    rows = []
    for d in datasets:
        for m in candidates:
            points = study.tune_points(d, m)
            missing = [p for p in points if not (workdir / p).is_file()]
            if missing:
                raise SystemExit(f"pick_epinions: {workdir / missing[0]}: tuning run not finished "
                                 f"({len(missing)} of {len(points)} for {m} on {d})")
            results = {p: load_result(workdir / p) for p in points}
            chosen, table = select_setting(points, metric, results)
            rows.append({"dataset": d, "method": m, "score": float(table.loc[table["selected"], "mean"].iloc[0]),
                         "chosen": str(chosen)})
    return pd.DataFrame(rows)


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-dataset rank (1 = best), mean rank and mean score per method, best first."""
    frame = frame.copy()
    frame["rank"] = frame.groupby("dataset")["score"].rank(ascending=False, method="average")
    wide = frame.pivot(index="method", columns="dataset", values="rank").add_prefix("rank:")
    wide["mean_rank"] = frame.groupby("method")["rank"].mean()
    wide["mean_score"] = frame.groupby("method")["score"].mean()
    wide = wide.sort_values(["mean_rank", "mean_score"], ascending=[True, False]).reset_index()
    wide["picked"] = wide.index < PICK
    return wide


def write_config(picked: list[str], config: Path = CONFIG) -> None:
    """Put the picked baselines into the Epinions `methods` line (comments kept)."""
    text = config.read_text()
    pattern = re.compile(r"(  epinions:\n    source: epinions\n    methods: )\[[^\]]*\]")
    if not pattern.search(text):
        raise SystemExit(f"pick_epinions: {config}: no 'epinions: ... methods: [...]' entry to fill")
    methods = ["mostpop", "single", "ew", *picked, "pmtrec", "static-schedule"]
    config.write_text(pattern.sub(lambda m: m.group(1) + "[" + ", ".join(methods) + "]", text, count=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="the reference study's workflow folder")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--write", action="store_true", help="fill config/reference.yaml's Epinions methods")
    args = p.parse_args(argv)
    frame = scores(args.workdir, args.config)
    table = rank(frame)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    table.merge(frame.pivot(index="method", columns="dataset", values="score").add_prefix("score:").reset_index(),
                on="method").to_csv(tmp, index=False)
    tmp.replace(args.out)
    print(table.to_string(index=False))
    picked = table.loc[table["picked"], "method"].tolist()
    print(f"picked for Epinions: {', '.join(picked)}")
    if args.write:
        write_config(picked, args.config)
        print(f"wrote {args.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
