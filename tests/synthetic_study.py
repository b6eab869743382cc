"""Synthetic aggregated tables, for testing the report without training anything.

:func:`synthetic_study` fakes schema-valid result JSONs (every method, several seeds, curves,
task weights, gradient cosines, row weights, user groups), small prepared datasets and Snakemake
benchmark files, then runs the real :func:`pmtrec.aggregate.aggregate` on them, so the tables
have exactly the workflow's columns. Values are random but structured (PMTRec best, a 2-D
sensitivity grid with an optimum), so every figure has something to show.

    python tests/synthetic_study.py /tmp/study   # -> /tmp/study/tables/*.csv, prepared/, ...
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pmtrec.methods import entries

BASELINES = [e.name for e in entries() if e.kind != "variant" and e.name != "pmtrec"]
VARIANTS = [e.name for e in entries() if e.kind == "variant"]
GRADIENT = {e.name for e in entries() if e.uses_grads}
TASKS = ["rec", "social", "category", "coview"]
KS = (10, 20, 50)


def _stable(key) -> int:
    """A per-process-stable seed from ``key`` (``hash`` of a str is salted per process)."""
    return zlib.crc32(repr(key).encode())


def _quality(method: str, rng: np.random.Generator) -> float:
    """A method's (dataset-independent) strength: PMTRec best, variants a bit below, mostpop worst."""
    if method == "pmtrec":
        return 1.0
    if method.startswith("pmtrec-"):
        return 0.95 - 0.02 * VARIANTS.index(method)
    if method == "mostpop":
        return 0.45
    if method == "single":
        return 0.80
    return 0.84 + 0.10 * rng.random()


def _metrics(base: float, rng: np.random.Generator, noise: float = 0.01) -> dict[str, float]:
    out = {}
    for k in KS:
        recall = base * (k / 20) ** 0.6 * (1 + noise * rng.standard_normal())
        ndcg = 0.45 * base * (k / 20) ** 0.35 * (1 + noise * rng.standard_normal())
        out[f"recall@{k}"] = float(max(recall, 0.0))
        out[f"ndcg@{k}"] = float(max(ndcg, 0.0))
        out[f"precision@{k}"] = float(recall / k)
        out[f"hit@{k}"] = float(min(1.0, 2.5 * recall))
    return out


def fake_result(dataset: str, method: str, seed: int, quality: float, *, level: float = 0.12,
                epochs: int = 6, n_groups: int = 5, scale: float = 1.0) -> dict:
    """One schema-valid result record (pmtrec/schemas/result.schema.json)."""
    rng = np.random.default_rng(_stable((dataset, method, seed, round(quality, 6))))
    tasks = ["rec"] if method in ("single", "mostpop") else TASKS
    base = level * quality
    curves = []
    trained = method != "mostpop"
    for e in range(1, (epochs if trained else 0) + 1):
        frac = 1 - np.exp(-e / 2)
        ep = {"epoch": e, "train_time_s": float(scale * (1.6 if method in GRADIENT else 1.0)
                                                 * (1 + 0.05 * rng.random())),
              "eval_time_s": 0.1 * scale, "valid": _metrics(base * frac, rng, 0.02),
              "loss": {t: float(0.7 * np.exp(-e / 4) + 0.05 * i) for i, t in enumerate(tasks)},
              "weight": {}}
        raw = np.array([1.0] + [0.3 + 0.4 * rng.random() for _ in tasks[1:]])
        if method == "pmtrec":
            raw[1:] *= np.exp(-e / 6)  # aux weights fade as the main task takes over
        w = np.ones(len(tasks)) if method in ("ew", "single") else raw / raw.sum()
        ep["weight"] = {t: float(v) for t, v in zip(tasks, w)}
        if method in GRADIENT:
            ep["grad_cosine"] = {f"{a}|{b}": float(np.clip(0.25 * np.exp(-e / 3) * (1 - 0.3 * (i + j))
                                                            + 0.03 * rng.standard_normal(), -1, 1))
                                 for i, a in enumerate(tasks) for j, b in enumerate(tasks) if i < j}
        if method == "pmtrec" or (method.startswith("pmtrec-") and method not in ("pmtrec-no-personal",
                                                                                  "pmtrec-none")):
            ug, ig = {}, {}
            for g in range(n_groups):
                rec = 0.3 + 0.12 * g + 0.02 * rng.standard_normal()
                ug[str(g)] = {"rec": rec, "social": 1 - rec, "category": 0.0, "coview": 0.0}
                irec = 0.35 + 0.1 * g + 0.02 * rng.standard_normal()
                ig[str(g)] = {"rec": irec, "social": 0.0, "category": (1 - irec) * 0.55,
                              "coview": (1 - irec) * 0.45}
            ep["row_weight_by_user_group"] = ug
            ep["row_weight_by_item_group"] = ig
        curves.append(ep)
    test = _metrics(base, rng)
    groups = {}
    for g in range(n_groups):
        # less active users are harder; PMTRec helps them most
        boost = (0.15 if method == "pmtrec" else 0.0) * (n_groups - 1 - g) / max(n_groups - 1, 1)
        gm = _metrics(base * (0.6 + 0.2 * g) * (1 + boost), rng, 0.03)
        groups[str(g)] = {"n_users": int(100 + 20 * g), **{k: v for k, v in gm.items()
                                                            if k.split("@")[0] in ("recall", "ndcg")}}
    epoch_time = float(np.mean([c["train_time_s"] for c in curves])) if curves else 0.0
    return {
        "schema": "pmtrec.result/1", "dataset": dataset, "method": method, "seed": int(seed), "tasks": tasks,
        "valid": {"overall": _metrics(base * 1.02, rng), "groups": {}},
        "test": {"overall": test, "groups": groups},
        "best_epoch": len(curves), "epochs_run": len(curves), "epoch_time_s": epoch_time,
        "wall_time_s": epoch_time * len(curves) + 1.0,
        "memory": {"host_peak_rss_mb": float(500 * scale * (1.3 if method in GRADIENT else 1.0)
                                             + 10 * rng.random()),
                   "device_peak_mb": float(120 * scale * (1.8 if method in GRADIENT else 1.0))},
        "device": "cuda:0 (NVIDIA H200)", "curves": curves, "config": {"train": {"method": method}},
        "config_hash": f"{_stable((dataset, method)):08x}", "version": "0.1.0",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
    }


def fake_per_user(result_path: str | Path, dataset: str, method: str, seed: int, overall: dict,
                  n_users: int) -> Path:
    """The run's per-user test metrics file (pmtrec.training.per_user, the real writer): each user's
    value is the run's overall value times a per-user difficulty (the same for every method of a
    dataset, so methods are paired by user) and a little per-run noise, within [0, 1]."""
    from types import SimpleNamespace

    from pmtrec.training.per_user import METRICS, per_user_path, write_per_user

    difficulty = np.random.default_rng(_stable(dataset)).lognormal(0.0, 0.5, n_users)
    difficulty /= difficulty.mean()
    rng = np.random.default_rng(_stable((dataset, method, seed, "users")))
    per_user = {m: np.clip(overall[m] * difficulty * (1 + 0.05 * rng.standard_normal(n_users)), 0.0, 1.0)
                for m in METRICS}
    path = per_user_path(result_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_per_user(path, SimpleNamespace(users=np.arange(n_users), per_user=per_user))


def _prepared(folder: Path, name: str, n_users: int, n_items: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # power-law-ish degrees
    u_deg = np.maximum(5, (rng.pareto(1.6, n_users) * 6).astype(int))
    users = np.repeat(np.arange(n_users), u_deg)
    pop = rng.pareto(1.2, n_items) + 1e-3
    items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
    df = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    df["split"] = rng.choice(["train", "valid", "test"], size=len(df), p=[0.8, 0.1, 0.1])
    df.to_parquet(folder / "interactions.parquet", index=False)
    n = len(df)
    stats = {"dataset": name, "users": n_users, "items": n_items, "interactions": n,
             "density": n / (n_users * n_items), "train": int((df["split"] == "train").sum()),
             "valid": int((df["split"] == "valid").sum()), "test": int((df["split"] == "test").sum()),
             "social_links": int(n_users * 3), "categories": 12, "coview_links": int(n_items * 2),
             "avg_user_degree": n / n_users, "avg_item_degree": n / n_items, "cold_users_frac": 0.3}
    (folder / "stats.json").write_text(json.dumps(stats))


def synthetic_study(out_dir: str | Path, *, datasets: Sequence[str] = ("ciao", "epinions"),
                    methods: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                    variants: Sequence[str] | None = None, grid: dict | None = None,
                    dims: Sequence[int] = (16, 32, 64, 128), benchmarks: bool = True,
                    wilcoxon_min_n: int = 6, n_users: int = 200, n_resamples: int = 999) -> dict[str, Path]:
    """Write a fake study under ``out_dir``; returns {"tables": ..., "prepared": {dataset: dir}, ...}."""
    from pmtrec.aggregate import aggregate, write_tables

    out = Path(out_dir)
    methods = list(methods) if methods is not None else BASELINES + ["pmtrec"]
    variants = list(variants) if variants is not None else VARIANTS
    grid = grid if grid is not None else {"tau": [0.25, 0.5, 1.0, 2.0], "focus_max": [0.25, 0.5, 0.75]}
    rng = np.random.default_rng(0)
    quality = {m: _quality(m, rng) for m in methods + variants}
    entries, results, prepared = [], {}, {}
    bench_dir = out / "benchmarks"
    results_dir = out / "results"

    def add(kind, dataset, method, seed, q, setting="", values=None, sweep=None, scale=1.0):
        rel = f"{kind}/{dataset}/{method}/{setting or 'main'}/seed{seed}.json"
        path = str(results_dir / rel)
        level = 0.12 if dataset == datasets[0] else 0.08
        results[path] = fake_result(dataset, method, seed, q, level=level, scale=scale)
        if kind in ("main", "ablation") and not setting:  # as `pmtrec train --out` writes them
            fake_per_user(path, dataset, method, seed, results[path]["test"]["overall"], n_users)
        entry = {"kind": kind, "dataset": dataset, "method": method, "seed": seed, "setting": setting,
                 "path": path}
        if values is not None:
            entry["values"] = values
        if sweep:
            entry["sweep"] = sweep
        if benchmarks:
            b = bench_dir / f"{rel}.tsv"
            b.parent.mkdir(parents=True, exist_ok=True)
            r = results[path]
            b.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         f"{r['wall_time_s'] + 3:.2f}\t0:00:05\t{r['memory']['host_peak_rss_mb'] + 5:.2f}\t"
                         f"900\t400\t400\t0\t1\t90\t{r['wall_time_s']:.2f}\n")
            entry["benchmark"] = str(b)
        entries.append(entry)

    for di, d in enumerate(datasets):
        scale = 1.0 + 2.0 * di
        for m in methods:
            for s in seeds:
                add("main", d, m, s, quality[m], scale=scale)
        for v in variants:
            for s in seeds:
                add("ablation", d, v, s, quality[v], scale=scale)
        if di == 0 and "pmtrec" in quality:  # the sweeps are PMTRec's (and EW's embedding size)
            keys = sorted(grid)
            for combo in np.array(np.meshgrid(*[grid[k] for k in keys], indexing="ij")).reshape(len(keys), -1).T:
                values = {k: float(v) for k, v in zip(keys, combo)}
                q = 1.0 - sum(0.04 * abs(np.log2(values[k] / np.median(grid[k]))) for k in keys)
                setting = ",".join(f"{k}={values[k]}" for k in keys)
                for s in seeds[:2]:
                    add("sensitivity", d, "pmtrec", s, q, setting, values, "grid")
            for m in ("ew", "pmtrec"):
                for dim in dims if m in quality else ():
                    q = quality[m] * (1 - 0.08 * abs(np.log2(dim / 64)))
                    for s in seeds[:2]:
                        add("sensitivity", d, m, s, q, f"model.dim={dim}", {"model.dim": dim}, "dim")
        prepared[d] = out / "prepared" / d
        _prepared(prepared[d], f"synthetic-{d}", 400 + 300 * di, 500 + 200 * di, rng)

    tables = aggregate(entries, {d: str(p) for d, p in prepared.items()}, results=results,
                       wilcoxon_min_n=wilcoxon_min_n, n_resamples=n_resamples)
    write_tables(tables, out / "tables")
    for path, r in results.items():
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    bench_csv = None
    if benchmarks:
        def step_x(m: str) -> float:  # PMTRec and its variants within their 1.5x target, the rest within 5x
            if m == "ew":
                return 1.0
            if m.startswith("pmtrec"):
                return float(1.2 + 0.25 * rng.random())
            return float(1.2 + 2 * rng.random()) if m in GRADIENT else float(1 + 0.2 * rng.random())

        rows = [{"hardware": "cuda:NVIDIA H200", "section": "step", "dataset": "synthetic-large", "item": m,
                 "value": step_x(m), "unit": "x ew", "seconds": 0.01, "target": 1.5 if m.startswith("pmtrec") else 5.0}
                for m in methods + variants if m != "mostpop"]
        rows += [{"hardware": "cuda:NVIDIA H200", "section": "eval", "dataset": "synthetic-large", "item": "eval/floor",
                  "value": 1.1, "unit": "x floor", "seconds": 1.0, "target": 1.5},
                 {"hardware": "cuda:NVIDIA H200", "section": "scale", "dataset": "synthetic", "item": "ew:slope_vs_linear",
                  "value": 1.4, "unit": "x linear", "seconds": None, "target": 1.2}]
        bench_csv = out / "bench" / "gpu.csv"
        bench_csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(bench_csv, index=False)
    return {"root": out, "tables": out / "tables", "prepared": prepared, "results": results_dir,
            "bench_csv": bench_csv}


if __name__ == "__main__":
    info = synthetic_study(sys.argv[1] if len(sys.argv) > 1 else "synthetic-study")
    print(f"written {info['tables']}")
