"""Validation cadence (``train.eval_every``) on real data: what a sparser cadence changes, and saves.

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.cadence [--methods ew pmtrec] [--seeds 0 1 2]

Validation draws no randomness, so the training trajectory is the same at every cadence
(tests/test_cadence.py). One run per method and seed therefore measures every cadence exactly:
it trains ``--epochs`` epochs on Ciao, validating *and testing* after each, and then replays
early stopping at cadence c (validated epochs c, 2c, ... and the last; patience in evaluations)
to find the epoch each cadence would select and that epoch's test metrics. Writes
``benchmarks/results/cadence_ciao_epochs.csv`` (per epoch: train/valid/test times and metrics)
and ``cadence_ciao.csv`` (per method, seed, patience and cadence: selected epoch, its test metrics and their change
against cadence 1, the epochs run, and the wall time that run would take: its epochs' training
plus its validations, also as a share of cadence 1's). Patience is given in epochs and replayed
as ``max(1, P // c)`` evaluations, so every cadence waits about as long.
Runs already in the epochs file are reused (delete it to start over).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("ndcg@20", "recall@20")


def trace(method: str, seed: int, epochs: int, threads: int) -> pd.DataFrame:
    """Every epoch's train time, validation and test metrics and times of one Ciao run."""
    import torch

    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.train import Trainer

    cfg = load_config(overrides=["dataset.source=ciao", f"train.method={method}", f"train.seed={seed}",
                                 f"train.epochs={epochs}", "train.progress=false", f"train.threads={threads}",
                                 "train.device=cpu"])
    torch.set_num_threads(threads)
    trainer = Trainer(cfg, prepare_in_memory(cfg))
    rows = []
    while trainer.epoch < epochs:
        entry = trainer.run_epoch(validate=True)
        trainer.epoch += 1
        t0 = time.perf_counter()
        test = trainer.evaluate("test").metrics
        rows.append({"method": method, "seed": seed, "epoch": trainer.epoch, "train_s": entry["train_time_s"],
                     "valid_s": entry["eval_time_s"], "test_s": time.perf_counter() - t0,
                     **{f"valid_{m}": entry["valid"][m] for m in METRICS},
                     **{f"test_{m}": test[m] for m in METRICS}})
        print(f"{method} seed {seed} epoch {trainer.epoch}: valid ndcg@20 {entry['valid']['ndcg@20']:.4f} "
              f"({entry['train_time_s']:.2f}s + {entry['eval_time_s']:.2f}s)", flush=True)
    return pd.DataFrame(rows)


def replay(run: pd.DataFrame, cadence: int, patience: int) -> dict:
    """The epoch early stopping selects at ``cadence`` (patience in evaluations), as the trainer does."""
    last = int(run["epoch"].max())
    best, best_score, bad, stop = None, float("-inf"), 0, last
    for e in range(1, last + 1):
        if not (e % cadence == 0 or e == last):
            continue
        score = float(run.loc[run.epoch == e, "valid_ndcg@20"].item())
        if score > best_score:
            best, best_score, bad = e, score, 0
        else:
            bad += 1
        if bad >= patience:
            stop = e
            break
    done = run[run.epoch <= stop]
    n_valid = sum(1 for e in range(1, stop + 1) if e % cadence == 0 or e == last)
    chosen = run[run.epoch == best].iloc[0]
    return {"cadence": cadence, "patience": patience, "best_epoch": best, "epochs_run": stop,
            "evaluations": n_valid, **{f"test_{m}": float(chosen[f"test_{m}"]) for m in METRICS},
            "train_s": float(done["train_s"].sum()), "valid_s": float(done["valid_s"].mean() * n_valid),
            "wall_s": float(done["train_s"].sum() + done["valid_s"].mean() * n_valid)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cadence", description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["ew"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--cadences", nargs="+", type=int, default=[1, 2, 5, 10])
    p.add_argument("--patience", type=int, nargs="+", default=[10, 20],
                   help="in epochs: cadence c replays with patience max(1, P // c) evaluations")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("PMTREC_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    epochs_csv, summary_csv = args.out / "cadence_ciao_epochs.csv", args.out / "cadence_ciao.csv"
    have = pd.read_csv(epochs_csv) if epochs_csv.exists() else pd.DataFrame(columns=["method", "seed", "epoch"])
    for method in args.methods:
        for seed in args.seeds:
            done = have[(have.method == method) & (have.seed == seed)]
            if len(done) >= args.epochs:
                continue
            have = pd.concat([have[~((have.method == method) & (have.seed == seed))],
                              trace(method, seed, args.epochs, args.threads)], ignore_index=True)
            have.to_csv(epochs_csv, index=False)  # after every run: a killed sweep keeps what it finished
    rows = []
    for (method, seed), run in have.groupby(["method", "seed"]):
        for patience in args.patience:
            every = replay(run, 1, patience)
            for cadence in args.cadences:
                r = replay(run, cadence, max(1, patience // cadence))
                rows.append({"method": method, "seed": int(seed), "patience_epochs": patience, **r,
                             "test_ndcg@20_change": r["test_ndcg@20"] - every["test_ndcg@20"],
                             "wall_share": r["wall_s"] / every["wall_s"]})
    summary = pd.DataFrame(rows)
    summary.to_csv(summary_csv, index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(summary.to_string(index=False))
    print(f"written {epochs_csv} and {summary_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
