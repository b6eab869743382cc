"""Which way do PMTRec's per-row weights lean for cold vs active users? (synthetic data, CPU, 1 thread)

For each run it prints, per user-activity group (quantiles of training interactions):
  * ``uncond``: the trainer's table row_weight_by_user_group (mean row weight over all row visits; a task
    that does not touch the row counts as weight 0, so it mixes "how often the task touches the user" with
    "how much weight it gets when it does"),
  * ``cond``: the mean weight of each task over the visits where that task touches the user,
  * ``norm``: the mean per-row gradient norm of each task over those visits,
  * ``both``: the mean weight of each task over the visits where the main task *and* that task touch
    the user (the like-for-like comparison: how the softmax splits a row between rec and the task);
    for the main task, over the visits it shares with at least one other task.
Usage: python -m benchmarks.pmtrec_study.lean [tiny|small ...] [--epochs N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json

import torch

from pmtrec.config import load_config
from pmtrec import evaluate as ev
from pmtrec.train import Trainer

RUNS = {
    "ew": ("ew", {}),
    "pmtrec": ("pmtrec", {}),
    "pmtrec+bm": ("pmtrec", {"norm_by_batch_mean": True}),
    "pmtrec-sign-": ("pmtrec", {"weight_sign": -1}),
}


def prepare(cfg):
    import pmtrec.data as data

    if hasattr(data, "prepare_in_memory"):
        return data.prepare_in_memory(cfg)
    pre = getattr(data.preprocess, "preprocess", data.preprocess)
    return pre(data.load_source(cfg), cfg["preprocess"])


def run(size: str, name: str, epochs: int) -> dict:
    method, params = RUNS.get(name, (name, {}))
    cfg = load_config(overrides=[f"dataset.synthetic.size={size}", "train.progress=false", "train.threads=1",
                                 f"train.epochs={epochs}", f"train.method={method}",
                                 f"train.method_params={json.dumps(params)}"])
    data = prepare(cfg)
    tr = Trainer(cfg, data)
    K, U = len(tr.task_names), data.n_users
    acc = {"w": torch.zeros(U, K, dtype=torch.float64), "n": torch.zeros(U, K, dtype=torch.float64),
           "c": torch.zeros(U, K, dtype=torch.float64),
           "bw": torch.zeros(U, K, dtype=torch.float64), "bc": torch.zeros(U, K, dtype=torch.float64)}
    if tr.method.uses_grads:
        inner = tr.method.aggregate

        def aggregate(grads, ctx):
            out = inner(grads, ctx)
            nu = ctx.n_user_rows
            ids = ctx.source.row_ids[:nu]
            t = ctx.touched[:, :nu].T.double()
            acc["w"].index_add_(0, ids, out.row_weights[:nu].double() * t)
            acc["n"].index_add_(0, ids, grads[:, :nu].norm(dim=2).T.double() * t)
            acc["c"].index_add_(0, ids, t)
            both = t * t[:, :1]
            both[:, 0] = t[:, 0] * (t[:, 1:].sum(1) > 0)  # main: visits shared with some other task
            acc["bw"].index_add_(0, ids, out.row_weights[:nu].double() * both)
            acc["bc"].index_add_(0, ids, both)
            return out

        tr.method.aggregate = aggregate
    res = tr.fit(log=lambda *_: None)
    groups = torch.as_tensor(tr.user_groups)
    G = int(groups.max()) + 1
    summary = {"test_ndcg@20": res["test"]["overall"]["ndcg@20"], "tasks": list(tr.task_names),
               "uncond": res["curves"][-1].get("row_weight_by_user_group"), "cond": {}, "norm": {},
               "touch_rate": {}, "both": {}}
    if tr.method.uses_grads:
        for gi in range(G):
            sel = groups == gi
            c = acc["c"][sel].sum(0)
            label = ev.group_label(gi, G) if hasattr(ev, "group_label") else str(gi)
            summary["cond"][label] = dict(zip(tr.task_names, (acc["w"][sel].sum(0) / c.clamp_min(1)).tolist()))
            summary["norm"][label] = dict(zip(tr.task_names, (acc["n"][sel].sum(0) / c.clamp_min(1)).tolist()))
            bc = acc["bc"][sel].sum(0)
            summary["both"][label] = dict(zip(tr.task_names, (acc["bw"][sel].sum(0) / bc.clamp_min(1)).tolist()))
            summary["touch_rate"][label] = dict(zip(tr.task_names, (c / c[0].clamp_min(1)).tolist()))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", default=["tiny", "small"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    for size in args.sizes:
        for name in args.runs.split(","):
            s = run(size, name, args.epochs)
            out[f"{size}/{name}"] = s
            print(f"== {size} {name}: test ndcg@20 = {s['test_ndcg@20']:.4f}")
            for table in ("uncond", "cond", "both", "norm", "touch_rate"):
                if not s[table]:
                    continue
                print(f"  {table}:")
                for g, row in s[table].items():
                    print(f"    {g:>14s} " + " ".join(f"{k}={v:.3g}" for k, v in row.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
