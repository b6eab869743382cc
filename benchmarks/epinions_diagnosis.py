"""Why does `single` beat every multi-task method on Epinions? The runs of issue 19's diagnosis.

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.epinions_diagnosis [--seed 100]
        [--epochs 60] [--work DIR] [--arms single ew ...]

Each arm is one `pmtrec train` job on Epinions at the protocol's shared setup (init 0.003, lr
0.001, l2 1e-5 unless the arm changes it, validated every 5 epochs, patience 4 evaluations), on a
tuning seed (never a reported one: this diagnoses, it selects nothing), the split of that seed.
What each explanation predicts, and the arm that tests it:

* auxiliary dominance (the auxiliary losses pull the shared rows away from the main task): `ew`'s
  rec training loss stays above `single`'s, and `static` with auxiliary weights 0.1 / 0.3 recovers
  `single`'s validation NDCG@20;
* one harmful task: rec + social only (`ew-social`) or rec + category only (`ew-category`) matches
  `single` while the other does not;
* regularisation (the auxiliary tasks act as a too-weak or too-strong regulariser): equal rec
  training loss but worse validation, and the gap changes at l2 = 1e-4 (`ew-l2`, `single-l2`);
* capacity (dim 64 shared by too many tasks): none of the above moves the gap.

`pmtrec` runs too: as a gradient method its log holds the per-epoch cosines of the task gradients
(a loss-weighting method's does not).

Writes ``benchmarks/results/epinions_diagnosis.csv`` (per arm: best validation NDCG@20 and epoch,
the rec training loss at the best and the last epoch, validation NDCG@20 per activity group at the
best epoch, the mean gradient cosine of each auxiliary task with rec) and
``epinions_diagnosis_epochs.csv`` (per arm and epoch: task losses, cosines, validation NDCG@20 on
validated epochs). Validation only: the runs' test metrics are not read. Jobs whose result JSON is
in ``--work`` are not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PMTREC = ROOT / ".venv" / "bin" / "pmtrec"
METRIC = "ndcg@20"
# arm -> (method, extra --set overrides)
ARMS: dict[str, tuple[str, list[str]]] = {
    "single": ("single", []),
    "ew": ("ew", []),
    "static-0.1": ("static", ["train.method_params.weights=[1.0,0.1,0.1]"]),
    "static-0.3": ("static", ["train.method_params.weights=[1.0,0.3,0.3]"]),
    "ew-social": ("ew", ["tasks.category=false"]),
    "ew-category": ("ew", ["tasks.social=false"]),
    "ew-l2": ("ew", ["train.l2=0.0001"]),
    "single-l2": ("single", ["train.l2=0.0001"]),
    "pmtrec": ("pmtrec", []),  # a gradient method: its log has the per-epoch task-gradient cosines
}


def prepare(work: Path, seed: int) -> Path:
    out = work / f"epinions-split{seed}"
    if not out.exists():
        subprocess.run([str(PMTREC), "prepare", "--dataset", "epinions", "--set", f"preprocess.seed={seed}",
                        "--out", str(out), "-q"], check=True)
    return out


def train(data: Path, arm: str, seed: int, epochs: int, threads: int, work: Path) -> dict:
    out = work / f"{arm}-seed{seed}.json"
    if not out.exists():
        method, sets = ARMS[arm]
        cmd = [str(PMTREC), "train", "--data", str(data), "--method", method, "--seed", str(seed),
               "--epochs", str(epochs), "--threads", str(threads), "--device", "cpu", "--no-progress", "-q",
               "--out", str(out), "--set", "train.eval_every=5", "--set", "train.patience=4"]
        for s in sets:
            cmd += ["--set", s]
        print(f"{arm}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def summarise(arm: str, res: dict) -> tuple[dict, list[dict]]:
    curves = res["curves"]
    best = int(res["best_epoch"])
    at_best = next(c for c in curves if c["epoch"] == best)
    row = {"arm": arm, "method": res["method"], "tasks": " ".join(res["tasks"]), f"best_valid_{METRIC}":
           res["valid"]["overall"][METRIC], "best_epoch": best, "epochs_run": res["epochs_run"],
           "rec_loss_at_best": at_best["loss"]["rec"], "rec_loss_last": curves[-1]["loss"]["rec"]}
    for g, m in sorted(res["valid"]["groups"].items()):
        row[f"valid_{METRIC}_group{g}"] = m[METRIC]
    epochs = []
    for c in curves:
        e = {"arm": arm, "epoch": c["epoch"], **{f"loss_{k}": v for k, v in c["loss"].items()}}
        e.update({f"cos_{k.replace('|', '_')}": v for k, v in (c.get("grad_cosine") or {}).items()})
        if c.get("valid"):
            e[f"valid_{METRIC}"] = c["valid"][METRIC]
        epochs.append(e)
    cos = pd.DataFrame(epochs).filter(like="cos_rec_")
    for col in cos.columns:
        row[f"mean_{col}"] = float(cos[col].mean())
    return row, epochs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.epinions_diagnosis", description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seed", type=int, default=100, help="a tuning seed (also seeds the split)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/pmtrec-epinions-diagnosis"))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("PMTREC_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare(args.work, args.seed)
    rows, epochs = [], []
    for arm in args.arms:
        row, ep = summarise(arm, train(data, arm, args.seed, args.epochs, args.threads, args.work))
        rows.append(row)
        epochs += ep
    summary = pd.DataFrame(rows)
    summary.to_csv(args.out / "epinions_diagnosis.csv", index=False)
    pd.DataFrame(epochs).to_csv(args.out / "epinions_diagnosis_epochs.csv", index=False)
    with pd.option_context("display.width", 200):
        print(summary.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
