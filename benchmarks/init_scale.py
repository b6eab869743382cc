"""The shared initialisation scale (``model.init_std``): how fast each scale converges on Ciao.

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.init_scale [--scales 0.1 0.03 0.01]

The decision rule is written in docs/method.md ("Shared initialisation") before this ran: on the
tuning seeds (held out from every reported seed) and validation only, pick the scale with the
highest mean best-so-far validation NDCG@20 after ``--epochs`` epochs, over ``single`` and ``ew``;
a scale within 1% (relative) of that one and faster to reach 95% of its own best wins the tie.
Test metrics are written beside (the epoch validation selects), never used to choose.

One run per method, seed and scale, validated after every epoch; the best validated epoch's
embeddings are kept and tested at the end. Writes ``benchmarks/results/init_scale_ciao_epochs.csv`` (per epoch) and
``init_scale_ciao.csv`` (per method, seed and scale: validation NDCG@20 after 2, 10 and the last
epoch, the best epoch and value, the epochs to 95% of it, the test metrics at the best epoch) and
prints the choice. Runs already in the epochs file are reused (delete it to start over).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from benchmarks.cadence import METRICS, RESULTS, ROOT

TIE = 0.01  # relative: scales this close to the best count as tied


def trace(method: str, seed: int, epochs: int, threads: int, scale: float) -> pd.DataFrame:
    """Every epoch's validation metrics of one Ciao run (its own split), and the test metrics of
    the best validated epoch (its embeddings kept in memory), on the row of that epoch."""
    import torch

    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.train import Trainer

    cfg = load_config(overrides=["dataset.source=ciao", f"train.method={method}", f"train.seed={seed}",
                                 f"preprocess.seed={seed}", f"model.init_std={scale}", f"train.epochs={epochs}",
                                 "train.progress=false", f"train.threads={threads}", "train.device=cpu"])
    torch.set_num_threads(threads)
    trainer = Trainer(cfg, prepare_in_memory(cfg))
    rows, best, best_state = [], float("-inf"), None
    while trainer.epoch < epochs:
        entry = trainer.run_epoch(validate=True)
        trainer.epoch += 1
        rows.append({"method": method, "seed": seed, "init_std": scale, "epoch": trainer.epoch,
                     "train_s": entry["train_time_s"], "valid_s": entry["eval_time_s"],
                     **{f"valid_{m}": entry["valid"][m] for m in METRICS}})
        if entry["valid"]["ndcg@20"] > best:
            best = entry["valid"]["ndcg@20"]
            best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        print(f"{method} seed {seed} init_std {scale} epoch {trainer.epoch}: valid ndcg@20 "
              f"{entry['valid']['ndcg@20']:.4f}", flush=True)
    out = pd.DataFrame(rows)
    trainer.model.load_state_dict(best_state)
    test = trainer.evaluate("test").metrics
    at = out["valid_ndcg@20"].idxmax()
    for m in METRICS:
        out[f"test_{m}"] = float("nan")
        out.loc[at, f"test_{m}"] = test[m]
    return out


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: validation NDCG@20 along the way, its best epoch and the test metrics there."""
    rows = []
    for (method, seed, scale), run in runs.groupby(["method", "seed", "init_std"]):
        run = run.sort_values("epoch")
        valid = run["valid_ndcg@20"].to_numpy()
        best = int(valid.argmax())
        at = lambda e: float(valid[min(e, len(valid)) - 1])  # noqa: E731
        rows.append({"method": method, "seed": int(seed), "init_std": float(scale), "epochs": len(valid),
                     "valid_at_2": at(2), "valid_at_10": at(10), "valid_last": float(valid[-1]),
                     "best_epoch": best + 1, "best_valid": float(valid[best]),
                     "epochs_to_95pct": int((valid >= 0.95 * valid[best]).argmax()) + 1,
                     **{f"test_{m}_at_best": float(run[f"test_{m}"].iloc[best]) for m in METRICS}})
    return pd.DataFrame(rows)


def choose(summary: pd.DataFrame) -> float:
    """The decision rule of docs/method.md, on validation only."""
    by_scale = summary.groupby("init_std").agg(best_valid=("best_valid", "mean"),
                                               to_95=("epochs_to_95pct", "mean"))
    top = by_scale["best_valid"].max()
    tied = by_scale[by_scale["best_valid"] >= (1 - TIE) * top]
    return float(tied.sort_values(["to_95", "best_valid"], ascending=[True, False]).index[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.init_scale", description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["single", "ew"])
    p.add_argument("--seeds", nargs="+", type=int, default=[100, 101], help="tuning seeds, never reported ones")
    p.add_argument("--scales", nargs="+", type=float, default=[0.1, 0.03, 0.01, 0.003])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("PMTREC_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    epochs_csv, summary_csv = args.out / "init_scale_ciao_epochs.csv", args.out / "init_scale_ciao.csv"
    have = (pd.read_csv(epochs_csv) if epochs_csv.exists()
            else pd.DataFrame(columns=["method", "seed", "init_std", "epoch"]))
    for scale in args.scales:
        for method in args.methods:
            for seed in args.seeds:
                key = (have.method == method) & (have.seed == seed) & (have.init_std == scale)
                if key.sum() >= args.epochs:
                    continue
                have = pd.concat([have[~key], trace(method, seed, args.epochs, args.threads, scale)],
                                 ignore_index=True)
                tmp = epochs_csv.with_suffix(".tmp")
                have.to_csv(tmp, index=False)
                tmp.replace(epochs_csv)  # after every run: a killed sweep keeps what it finished
    summary = summarise(have[have.init_std.isin(args.scales) & have.method.isin(args.methods)
                             & have.seed.isin(args.seeds)])
    summary.to_csv(summary_csv, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(summary.to_string(index=False))
    print(f"chosen init_std: {choose(summary)} (rule: docs/method.md, Shared initialisation)")
    print(f"written {epochs_csv} and {summary_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
