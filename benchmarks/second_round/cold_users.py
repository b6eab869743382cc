"""Issue 19's cold-user setting: the real datasets at user k-core 2, validation per activity group.

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.second_round.cold_users \\
        --screen /tmp/screen2 [--datasets ciao lastfm amazon-hin] [--arms single ew pmtrec ...] \\
        [--seeds 100 101] [--user-core 2] [--work DIR]

The study's datasets keep users with at least 5 interactions, which removes the users the paper's
motivating example is about. Here each dataset is prepared at ``preprocess.user_core`` 2 (its other
preprocessing as in the screen; the split of each tuning seed). The split rule gives a user with 2
interactions 1 training and 1 validation item (no test item), so the coldest users are evaluated
on validation, the only split read here; a user core of 1 adds users with a training item only,
evaluated nowhere.

Every arm runs at one shared setting per dataset: the learning rate and l2 that ``ew`` selected on
that dataset in the screen (``--screen``: a workflow folder with results/tune/<dataset>/ew/
selected.yaml), 40 epochs, validated every 5, patience 4, each arm's own knobs at the screen's
values. One setting for all, so the per-group differences are the methods', not their tuning's.
Tuning seeds only (never a reported one): this diagnoses, it selects nothing.

Writes ``benchmarks/results/cold_users.csv`` (per dataset, arm, seed and user activity group: the
group's range of training interactions, its size, best-epoch validation NDCG@20 and Recall@20) and
``cold_users_weights.csv`` (per dataset, PMTRec-family arm, seed and user group: the mean per-row
weight of each task over the run's epochs, from the training log). Jobs whose result JSON is in
``--work`` are not run again (``--no-train``: only those are read). Test metrics are not read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PMTREC = ROOT / ".venv" / "bin" / "pmtrec"
PLUGIN = "benchmarks.second_round.candidates"
SCREEN_CONFIG = ROOT / "benchmarks" / "second_round" / "screen.yaml"
METRICS = ("ndcg@20", "recall@20")


def screen_config() -> dict:
    return yaml.safe_load(SCREEN_CONFIG.read_text())


def prepare_overrides(dataset: str, cfg: dict) -> list[str]:
    """The screen's preprocessing overrides of ``dataset`` (e.g. amazon-hin's temporal split)."""
    pre = ((cfg["datasets"].get(dataset) or {}).get("run") or {}).get("preprocess") or {}
    return [f"preprocess.{k}={v}" for k, v in pre.items()]


def shared_setting(screen: Path, dataset: str) -> dict:
    path = screen / "results" / "tune" / dataset / "ew" / "selected.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no screen selection of ew on {dataset} (run the screen first, or leave "
                         f"{dataset} out of --datasets)")
    train = yaml.safe_load(path.read_text())["train"]
    return {"train.lr": train["lr"], "train.l2": train["l2"]}


def prepare(work: Path, dataset: str, seed: int, user_core: int, cfg: dict) -> Path:
    out = work / f"{dataset}-core{user_core}-split{seed}"
    if not out.exists():
        sets = [f"preprocess.user_core={user_core}", f"preprocess.seed={seed}", *prepare_overrides(dataset, cfg)]
        cmd = [str(PMTREC), "prepare", "--dataset", dataset, "--out", str(out), "-q"]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True)
    return out


def train(data: Path, dataset: str, arm: str, seed: int, setting: dict, cfg: dict, threads: int, work: Path,
          run: bool = True) -> dict | None:
    out = work / f"{data.name}-{arm}-seed{seed}.json"
    if not out.exists() and not run:
        return None
    if not out.exists():
        run = cfg["run"]["train"]
        params = dict(cfg.get("method_params", {}).get(arm) or {})
        sets = [f"plugins=[{PLUGIN}]", f"train.method={arm}", f"train.seed={seed}", f"model.dim={cfg['run']['model']['dim']}",
                *(f"train.{k}={run[k]}" for k in ("epochs", "eval_every", "patience", "batch_size")),
                *(f"{k}={v}" for k, v in setting.items())]
        for k, v in params.items():  # method_params may hold trainer keys (train.aux_sampling), as in the workflow
            sets.append(f"{k}={v}" if "." in k else f"train.method_params.{k}={v}")
        cmd = [str(PMTREC), "train", "--data", str(data), "--threads", str(threads), "--device", "cpu",
               "--no-progress", "-q", "--out", str(out)]
        for s in sets:
            cmd += ["--set", s]
        print(f"{data.name} {arm} seed {seed}", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return json.loads(out.read_text())


def group_ranges(data: Path, n_groups: int) -> dict[str, tuple[int, int]]:
    """Min and max training interactions of each user activity group (the evaluation's grouping)."""
    from pmtrec.data.store import read_prepared
    from pmtrec.evaluate import activity_groups

    p = read_prepared(data)
    groups = activity_groups(p.train, p.n_users, n_groups)
    counts = np.bincount(p.train[:, 0], minlength=p.n_users)
    return {str(g): (int(counts[groups == g].min()), int(counts[groups == g].max())) for g in range(n_groups)}


def rows_of(dataset: str, arm: str, seed: int, res: dict, ranges: dict) -> tuple[list[dict], list[dict]]:
    metrics, weights = [], []
    for g, m in sorted(res["valid"]["groups"].items()):
        lo, hi = ranges[g]
        metrics.append({"dataset": dataset, "arm": arm, "seed": seed, "group": int(g), "train_min": lo,
                        "train_max": hi, "n_users": m["n_users"], **{f"valid_{k}": m[k] for k in METRICS},
                        "best_epoch": res["best_epoch"]})
    by_group: dict[str, list[dict]] = {}
    for c in res["curves"]:
        for g, w in (c.get("row_weight_by_user_group") or {}).items():
            by_group.setdefault(g, []).append(w)
    for g, ws in sorted(by_group.items()):
        mean = pd.DataFrame(ws).mean()
        weights.append({"dataset": dataset, "arm": arm, "seed": seed, "group": int(g),
                        "train_min": ranges[g][0], "train_max": ranges[g][1],
                        **{f"weight_{k}": float(v) for k, v in mean.items()}})
    return metrics, weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.second_round.cold_users", description=__doc__.splitlines()[0])
    p.add_argument("--screen", type=Path, required=True, help="the screen's workflow folder (its ew selections)")
    p.add_argument("--datasets", nargs="+", default=["ciao", "lastfm", "amazon-hin"])
    p.add_argument("--arms", nargs="+", default=["single", "ew", "pmtrec"])
    p.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    p.add_argument("--user-core", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="default: the screen's (40)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/pmtrec-cold-users"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-train", action="store_true", help="summarise the jobs already in --work, run none")
    args = p.parse_args(argv)
    if any(s < 100 for s in args.seeds):
        raise SystemExit(f"--seeds {args.seeds}: tuning seeds only (>= 100; 0-4 are the reported seeds)")
    os.environ.setdefault("PMTREC_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    cfg = screen_config()
    if args.epochs is not None:
        cfg["run"]["train"]["epochs"] = args.epochs
    args.work.mkdir(parents=True, exist_ok=True)
    metrics, weights = [], []
    for dataset in args.datasets:
        setting = shared_setting(args.screen, dataset)
        for seed in args.seeds:
            if args.no_train and not (args.work / f"{dataset}-core{args.user_core}-split{seed}").exists():
                continue
            data = prepare(args.work, dataset, seed, args.user_core, cfg)
            ranges = group_ranges(data, 5)
            for arm in args.arms:
                res = train(data, dataset, arm, seed, setting, cfg, args.threads, args.work, run=not args.no_train)
                if res is None:
                    continue
                m, w = rows_of(dataset, arm, seed, res, ranges)
                metrics += m
                weights += w
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("cold_users.csv", metrics), ("cold_users_weights.csv", weights)):
        tmp = args.out / f".{name}.tmp"
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(args.out / name)
    table = pd.DataFrame(metrics).groupby(["dataset", "group", "arm"])["valid_ndcg@20"].mean().unstack("arm")
    with pd.option_context("display.width", 200):
        print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
