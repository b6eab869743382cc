"""How far does PMTRec's row gradient move from EW's? (docs/method.md, "Why the variants tie")

Trains EW for a few epochs on a prepared dataset, then, on 20 batches, compares each multi-task
row's PMTRec gradient (several settings) with EW's plain sum of the task gradients: the cosine
between the two and the ratio of their lengths. Also reports how often an auxiliary task's row
gradient conflicts with the main task's (negative inner product) and their mean cosine.

    .venv/bin/python benchmarks/pmtrec_study/direction.py results/pmtrec_study/ciao [EPOCHS]
"""

from __future__ import annotations

import sys

import torch

from pmtrec.config import load_config
from pmtrec.data.store import read_prepared
from pmtrec.methods import build_method
from pmtrec.train import Trainer, gather_batch

SETTINGS = {"tau=1, no progressive focus": dict(progressive=False), "pmtrec (default)": {},
            "tau=2": dict(progressive=False, tau=2.0), "tau=0.5": dict(progressive=False, tau=0.5),
            "weight_sign=-1": dict(progressive=False, weight_sign=-1)}


def main(path: str, epochs: int = 5, n_batches: int = 20) -> None:
    torch.set_num_threads(1)
    cfg = load_config(overrides=["train.method=ew", "train.progress=false", f"train.epochs={epochs}"])
    tr = Trainer(cfg, read_prepared(path))
    for _ in range(epochs):
        tr.train_epoch()
        tr.epoch += 1
    methods = {k: build_method("pmtrec", tr.task_names, v) for k, v in SETTINGS.items()}
    cos = {k: [] for k in methods}
    ratio = {k: [] for k in methods}
    conflict, aux_cos = [], []
    for i, fields in enumerate(tr.tasks[0].epoch_batches(tr.batch_size, tr.gen)):
        if i >= n_batches:
            break
        batch = gather_batch(tr._sample(fields))
        ctx, _ = tr.step_context(batch)
        G = ctx.grads()                                    # [K, R, d]
        multi = batch.touched.sum(0) > 1
        ew = G.sum(0)
        both = batch.touched[0] & batch.touched[1:]        # [K-1, R]
        dots = (G[1:] * G[0]).sum(-1)
        conflict.append(((dots < 0) & both).sum(1).double() / both.sum(1).clamp_min(1))
        c = dots / (G[1:].norm(dim=-1) * G[0].norm(dim=-1)).clamp_min(1e-30)
        aux_cos.append(c[both].double().mean())
        for k, m in methods.items():
            out = m.aggregate(G.clone(), ctx).row_grad[multi]
            cos[k].append(torch.nn.functional.cosine_similarity(out, ew[multi], dim=1).double())
            ratio[k].append((out.norm(dim=1) / ew[multi].norm(dim=1)).double())
    print(f"tasks {tr.task_names}, after {epochs} EW epochs, {n_batches} batches")
    print("share of shared rows where an auxiliary task conflicts with rec:",
          dict(zip(tr.task_names[1:], (round(float(x), 3) for x in torch.stack(conflict).mean(0)))))
    print(f"mean per-row cosine auxiliary vs rec: {float(torch.stack(aux_cos).mean()):+.4f}")
    q = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    for k in methods:
        c, r = torch.cat(cos[k]), torch.cat(ratio[k])
        print(f"{k:28s} cos(PMTRec, EW) mean {float(c.mean()):.4f}, q05/q50/q95 "
              f"{[round(float(x), 4) for x in torch.quantile(c, q)]}; |PMTRec|/|EW| q05/q50/q95 "
              f"{[round(float(x), 3) for x in torch.quantile(r, q)]}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
