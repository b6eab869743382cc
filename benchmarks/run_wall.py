"""Wall time of whole `pmtrec train` jobs on Ciao, at validation cadence 1 (before) and the study's 5 (after).

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.run_wall [--methods ew pmtrec] [--epochs 100]

Each job is the workflow's: a fresh ``pmtrec train --data <prepared Ciao>`` process, timed from
its start to its exit. Early stopping is off (patience above the epoch count), so every job runs
exactly ``--epochs`` epochs and the cadences differ only in how often they validate. From the
result JSON: the training time (sum of the epochs' train times), the validation time (sum of the
validated epochs' eval times, plus the final validation and test at the best epoch), and the
start-up (process wall minus the trainer's own wall time: imports, reading the data, building
the model, tasks and optimizers). Appends one row per job and a ``wall share`` row (cadence c
over cadence 1, same method) to ``benchmarks/results/cpu.csv`` (section ``run``); jobs of the same
(method, cadence) are interleaved so a drift in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PMTREC = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "pmtrec"


def prepare(where: Path) -> Path:
    out = where / "ciao"
    if not out.exists():
        subprocess.run([str(PMTREC), "prepare", "--dataset", "ciao", "--out", str(out), "-q"], check=True)
    return out


def one_job(data: Path, method: str, cadence: int, epochs: int, threads: int, where: Path) -> dict:
    """Run one training job in a fresh process; its wall, training, validation and start-up seconds."""
    out = where / f"{method}-c{cadence}.json"
    cmd = [str(PMTREC), "train", "--data", str(data), "--method", method, "--epochs", str(epochs),
           "--threads", str(threads), "--device", "cpu", "--no-progress", "-q", "--out", str(out),
           "--set", f"train.eval_every={cadence}", "--set", f"train.patience={epochs + 1}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    curves = res["curves"]
    train_s = sum(c["train_time_s"] for c in curves)
    epoch_valid_s = sum(c.get("eval_time_s") or 0.0 for c in curves)
    trainer_s = float(res["wall_time_s"])
    final_s = trainer_s - train_s - epoch_valid_s  # the final validation and test, and the loop's own overhead
    return {"method": method, "cadence": cadence, "epochs": len(curves), "wall_s": wall, "train_s": train_s,
            "valid_s": epoch_valid_s + final_s, "startup_s": wall - trainer_s,
            "evaluations": sum(1 for c in curves if c.get("valid")), "test_ndcg@20": res["test"]["overall"]["ndcg@20"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_wall", description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["ew", "pmtrec"])
    p.add_argument("--cadences", nargs="+", type=int, default=[1, 5])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "cpu.csv")
    args = p.parse_args(argv)
    if 1 not in args.cadences:
        p.error("--cadences must include 1 (the reference of the wall share)")
    os.environ.setdefault("PMTREC_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    import platform

    rows = []
    with tempfile.TemporaryDirectory(prefix="pmtrec-run-wall-") as tmp:
        where = Path(tmp)
        data = prepare(where)
        for rep in range(args.repeats):
            for method in args.methods:
                for cadence in args.cadences:
                    r = one_job(data, method, cadence, args.epochs, args.threads, where)
                    r["repeat"] = rep
                    rows.append(r)
                    print(f"{method} cadence {cadence}: {r['wall_s']:.1f} s (train {r['train_s']:.1f}, validation "
                          f"{r['valid_s']:.1f}, start-up {r['startup_s']:.1f})", flush=True)
    runs = pd.DataFrame(rows)
    mean = runs.groupby(["method", "cadence"], as_index=False).mean(numeric_only=True)
    hw = f"cpu:{platform.machine()}x{os.cpu_count()}({args.threads} threads)"  # the suite's label
    out = []
    for _, r in mean.iterrows():
        base = mean[(mean.method == r.method) & (mean.cadence == 1)].iloc[0]
        item = f"{r.method} {args.epochs} epochs, eval_every {r.cadence}"
        common = {"hardware": hw, "section": "run", "dataset": "ciao"}
        out += [
            {**common, "item": f"{item}: wall", "value": r.wall_s, "unit": "s", "seconds": r.wall_s},
            {**common, "item": f"{item}: validation share", "value": r.valid_s / r.wall_s, "unit": "share",
             "seconds": r.valid_s},
            {**common, "item": f"{item}: start-up share", "value": r.startup_s / r.wall_s, "unit": "share",
             "seconds": r.startup_s},
        ]
        if r.cadence != 1:
            out.append({**common, "item": f"{item}: wall share of eval_every 1", "value": r.wall_s / base.wall_s,
                        "unit": "x eval_every 1", "seconds": r.wall_s, "target": 0.6})
    new = pd.DataFrame(out)
    old = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=new.columns)
    keep = old[~((old.section == "run") & (old.hardware == hw))]
    pd.concat([keep, new], ignore_index=True).to_csv(args.out, index=False)
    with pd.option_context("display.width", 160):
        print(runs.to_string(index=False))
        print(new[["item", "value", "unit", "seconds"]].to_string(index=False))
    print(f"written {args.out} (section run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
