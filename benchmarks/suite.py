"""pmtrec benchmark suite: every figure is a ratio measured in the same process.

    python -m benchmarks                       # everything, CSV to benchmarks/results/<host>.csv
    python -m benchmarks --only step,eval      # a subset
    python -m benchmarks --quick               # small sizes, to check the suite itself

Sections:
  step     training step time of every method relative to ew (Ciao, synthetic large)
  eval     full-ranking evaluation time relative to its matmul + top-k floor; users/s
  scale    epoch time and peak memory of ew and pmtrec at 1x, 4x, 16x interactions (synthetic small
           x16, x64, x256: a base whose tables already dwarf the rows one batch touches)
  prepare  prepare time and peak memory on Epinions
  optim    dense Adam vs lazy_adam step time on Ciao as the tables grow (1x, 4x, 16x rows)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("PMTREC_MIRROR") or str(ROOT.parent / "shared" / "datasets")


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hardware() -> str:
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.machine()}x{os.cpu_count()}({torch.get_num_threads()} threads)"


def _cfg(source: str, *overrides: str) -> dict:
    from pmtrec.config import load_config

    return load_config(overrides=[f"dataset.source={source}", f"dataset.mirror={MIRROR}", "train.progress=false",
                                  "model.dim=64", *overrides])


def _data(cfg: dict):
    from pmtrec.data import load_source, preprocess

    return preprocess(load_source(cfg), cfg["preprocess"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stepper:
    """One trainer and an endless supply of main-task batches."""

    def __init__(self, cfg: dict, data, method: str) -> None:
        from pmtrec.train import Trainer

        cfg = {**cfg, "train": {**cfg["train"], "method": method}}
        self.tr = Trainer(cfg, data)
        self.log = self.tr.new_log()
        self.batches = iter(())
        self.i = 0

    def step(self) -> float:
        fields = next(self.batches, None)
        if fields is None:
            self.batches = self.tr.tasks[0].epoch_batches(self.tr.batch_size, self.tr.gen)
            fields = next(self.batches)
        _sync(self.tr.device)
        t0 = time.perf_counter()
        self.tr.train_step(fields, self.log, self.i)
        _sync(self.tr.device)
        self.i += 1
        return time.perf_counter() - t0


def time_vs(cfg: dict, data, method: str, base: str, n_steps: int, warmup: int = 3) -> tuple[float, float]:
    """Median step seconds of ``method`` and ``base``, their steps interleaved one by one.

    Interleaving makes the ratio robust to a machine whose load changes while it runs.
    """
    a, b = _Stepper(cfg, data, method), _Stepper(cfg, data, base)
    ta, tb = [], []
    for i in range(warmup + n_steps):
        x, y = a.step(), b.step()
        if i >= warmup:
            ta.append(x)
            tb.append(y)
    return float(np.median(ta)), float(np.median(tb))


def bench_step(datasets: dict, methods: list[str], n_steps: int) -> list[dict]:
    rows = []
    for name, (cfg, data) in datasets.items():
        n_tasks = len(data_tasks(cfg, data))
        for m in methods:
            t, base = time_vs(cfg, data, m, "ew", n_steps)
            rows.append({"section": "step", "dataset": name, "item": m, "value": t / base, "unit": "x ew",
                         "seconds": t, "target": (1.5 if m.startswith("pmtrec") else n_tasks + 1)})
            print(f"  step {name:16s} {m:22s} {t * 1e3:8.2f} ms  ew {base * 1e3:8.2f} ms  {t / base:5.2f}x ew",
                  flush=True)
    return rows


def data_tasks(cfg, data):
    from pmtrec.tasks import build_tasks

    return build_tasks(data, cfg)


def bench_eval(datasets: dict, repeats: int = 3) -> list[dict]:
    from pmtrec import evaluate as ev
    from pmtrec.model import MF

    rows = []
    for name, (cfg, data) in datasets.items():
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = MF(data.n_users, data.n_items, 64).to(device)
        score = ev.mf_score_fn(model.user.detach(), model.item.detach())
        users = torch.as_tensor(np.unique(data.test[:, 0]), device=device)
        bs = int(cfg["eval"]["batch_size"])

        def floor():
            for s in range(0, len(users), bs):
                torch.topk(score(users[s:s + bs]), 50, dim=1)
            _sync(device)

        def full():
            ev.evaluate_ranking(score, data.n_users, data.n_items, data.test,
                                np.concatenate([data.train, data.valid]), batch_size=bs, device=device)
            _sync(device)

        tf, te = _best_of_pair(floor, full, repeats)
        rows.append({"section": "eval", "dataset": name, "item": "eval/floor", "value": te / tf, "unit": "x floor",
                     "seconds": te, "target": 1.5})
        rows.append({"section": "eval", "dataset": name, "item": "users_per_s", "value": len(users) / te,
                     "unit": "users/s", "seconds": te, "target": None})
        print(f"  eval {name:16s} {te:.3f}s vs floor {tf:.3f}s = {te / tf:.2f}x; {len(users) / te:,.0f} users/s",
              flush=True)
    return rows


def _best_of_pair(a, b, repeats: int, budget_s: float = 10.0, max_rounds: int = 15) -> tuple[float, float]:
    """Best times of ``a`` and ``b``, run alternately: at least ``repeats`` rounds, more while a round is
    short (up to ``budget_s`` in all), so that a quick pair is not judged on three noisy samples."""
    a(), b()
    ta, tb = [], []
    start = time.perf_counter()
    while len(ta) < repeats or (len(ta) < max_rounds and time.perf_counter() - start < budget_s):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.suite", *args], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_scale(scales: list[float], size: str, epochs: int) -> list[dict]:
    """Epoch time and peak memory per (method, scale), each in a fresh process."""
    rows, results = [], {}
    for method in ("ew", "pmtrec"):
        for s in scales:
            r = _child(["--child-epoch", method, size, str(s), str(epochs)])
            results[(method, s)] = r
            rows.append({"section": "scale", "dataset": f"synthetic-{size}-x{s:g}", "item": f"{method}:epoch_s",
                         "value": r["epoch_s"], "unit": "s", "seconds": r["epoch_s"], "target": None,
                         "interactions": r["interactions"], "peak_rss_mb": r["peak_rss_mb"],
                         "rows_per_step": r["rows_per_step"], "table_rows": r["table_rows"]})
            print(f"  scale {method:7s} x{s:<5g} {r['interactions']:>10,} interactions  {r['table_rows']:>8,} rows  "
                  f"{r['rows_per_step']:>8,.0f} touched/step  {r['epoch_s']:.2f} s/epoch  {r['peak_rss_mb']:.0f} MB",
                  flush=True)
        lo, hi = results[(method, scales[0])], results[(method, scales[-1])]
        slope = (hi["epoch_s"] / lo["epoch_s"]) / (hi["interactions"] / lo["interactions"])
        # A batch of fixed size touches more distinct rows as the tables grow (fewer repeats), until
        # it touches one row per field entry; per row update, the cost should stay flat.
        updates = lambda r: r["steps"] * r["rows_per_step"]  # noqa: E731
        row_slope = (hi["epoch_s"] / lo["epoch_s"]) / (updates(hi) / updates(lo))
        rows.append({"section": "scale", "dataset": "synthetic", "item": f"{method}:slope_vs_linear", "value": slope,
                     "unit": "x linear", "seconds": None, "target": 1.2})
        rows.append({"section": "scale", "dataset": "synthetic", "item": f"{method}:slope_vs_row_updates",
                     "value": row_slope, "unit": "x linear", "seconds": None, "target": None})
        # the same two end points on log-log axes: time ~ interactions^exponent (1 = linear)
        exponent = math.log(hi["epoch_s"] / lo["epoch_s"]) / math.log(hi["interactions"] / lo["interactions"])
        rows.append({"section": "scale", "dataset": "synthetic", "item": f"{method}:loglog_exponent",
                     "value": exponent, "unit": "exponent", "seconds": None, "target": None})
        print(f"  scale {method}: time growth / interaction growth = {slope:.2f}x linear; "
              f"/ row-update growth = {row_slope:.2f}x; log-log exponent {exponent:.2f}", flush=True)
    return rows


def child_epoch(method: str, size: str, scale: float, epochs: int, min_steps: int = 500) -> dict:
    from pmtrec.train import Trainer

    cfg = _cfg("synthetic", f"dataset.synthetic.size={size}", f"dataset.synthetic.scale={scale}",
               f"train.method={method}", f"train.epochs={epochs}", "train.batch_size=4096")
    from pmtrec.train import gather_batch

    data = _data(cfg)
    tr = Trainer(cfg, data)
    batches = list(tr.tasks[0].epoch_batches(tr.batch_size, torch.Generator().manual_seed(0)))[:20]
    touched = [len(b.user_ids) + len(b.item_ids) for b in (gather_batch(tr._sample(f)) for f in batches)]
    log = tr.new_log()
    for i, fields in enumerate(batches):  # warm-up (allocator, lazy init, optimizer state)
        tr.train_step(fields, log, i)
    steps = tr.tasks[0].n_batches(tr.batch_size)
    # a short epoch is timed several times (median): a single 3 s epoch swung by 30% between runs
    epochs = max(epochs, math.ceil(min_steps / steps))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        tr.train_epoch()
        times.append(time.perf_counter() - t0)
    return {"epoch_s": float(np.median(times)), "epochs_timed": epochs, "interactions": int(len(data.train)),
            "steps": steps, "rows_per_step": float(np.mean(touched)),
            "table_rows": data.n_users + data.n_items, "peak_rss_mb": peak_rss_mb()}


def child_prepare(source: str) -> dict:
    from pmtrec.data import prepare_dataset

    import tempfile

    cfg = _cfg(source)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prepare_dataset(cfg, Path(tmp) / source, stream=None)
    return {"seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb()}


def bench_prepare(source: str) -> list[dict]:
    r = _child(["--child-prepare", source])
    print(f"  prepare {source}: {r['seconds']:.2f}s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
    return [{"section": "prepare", "dataset": source, "item": "prepare_s", "value": r["seconds"], "unit": "s",
             "seconds": r["seconds"], "target": None, "peak_rss_mb": r["peak_rss_mb"]}]


def bench_optim(cfg: dict, data, n_steps: int, pads: tuple[int, ...] = (1, 4, 16)) -> list[dict]:
    """ew step time with dense Adam and lazy_adam as the tables grow (same batches, extra never-read rows).

    Padding keeps the rows a batch touches (almost) fixed and grows only the tables, so it isolates
    the cost that scales with table size (negatives are drawn from the larger catalogue).
    """
    import dataclasses

    rows = []
    for pad in pads:
        padded = dataclasses.replace(data, n_users=data.n_users * pad, n_items=data.n_items * pad)
        steppers = {o: _Stepper({**cfg, "train": {**cfg["train"], "optimizer": o}}, padded, "ew")
                    for o in ("adam", "lazy_adam")}
        times: dict[str, list[float]] = {o: [] for o in steppers}
        for i in range(3 + n_steps):
            for o, st in steppers.items():
                t = st.step()
                if i >= 3:
                    times[o].append(t)
        med = {o: float(np.median(v)) for o, v in times.items()}
        n_rows = padded.n_users + padded.n_items
        print(f"  optim {data.name} tables x{pad:<3d} ({n_rows:,} rows): adam {med['adam'] * 1e3:.2f} ms, "
              f"lazy_adam {med['lazy_adam'] * 1e3:.2f} ms per ew step ({med['lazy_adam'] / med['adam']:.2f}x)",
              flush=True)
        for o in ("adam", "lazy_adam"):
            rows.append({"section": "optim", "dataset": f"{data.name}-tables-x{pad}", "item": f"{o}:step_s",
                         "value": med[o], "unit": "s", "seconds": med[o], "target": None, "table_rows": n_rows})
        rows.append({"section": "optim", "dataset": f"{data.name}-tables-x{pad}", "item": "lazy_adam/adam",
                     "value": med["lazy_adam"] / med["adam"], "unit": "x adam", "seconds": med["lazy_adam"],
                     "target": None, "table_rows": n_rows})
    return rows


def bench_startup(repeats: int = 3) -> list[dict]:
    """Wall time of fresh processes (best of ``repeats``): `import pmtrec` and `pmtrec --help`
    (target 1 s each), and a 1-epoch `pmtrec train` on synthetic tiny, whose training is
    milliseconds, so its wall time is a job's start-up (imports, torch's first optimizer)."""
    cases = {"import pmtrec": ([sys.executable, "-c", "import pmtrec"], 1.0),
             "pmtrec --help": ([sys.executable, "-m", "pmtrec", "--help"], 1.0),
             "train 1 epoch (tiny)": ([sys.executable, "-m", "pmtrec", "train", "--set", "dataset.synthetic.size=tiny",
                                       "--epochs", "1", "--threads", "1", "-q"], None)}
    rows = []
    for item, (cmd, target) in cases.items():
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            best = min(best, time.perf_counter() - t0)
        rows.append({"section": "startup", "dataset": "", "item": item, "value": best, "unit": "s",
                     "seconds": best, "target": target})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--only", default="startup,step,eval,scale,prepare,optim", help="comma-separated sections")
    p.add_argument("--methods", default=None, help="comma-separated methods for the step section (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes and few steps (checks the suite)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--scales", default=None,
                   help="comma-separated multiples of synthetic small for the scale section "
                        "(default 16,64,256; --quick: tiny x1,x2)")
    p.add_argument("--out", default=None, help="CSV path (default benchmarks/results/<hardware>.csv)")
    p.add_argument("--child-epoch", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--child-prepare", nargs=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_epoch:
        m, size, s, e = args.child_epoch
        print(json.dumps(child_epoch(m, size, float(s), int(e))))
        return 0
    if args.child_prepare:
        print(json.dumps(child_prepare(args.child_prepare[0])))
        return 0

    from pmtrec.methods import available

    sections = set(args.only.split(","))
    methods = args.methods.split(",") if args.methods else available(("method", "variant"))  # not the baseline models
    size = "tiny" if args.quick else "large"
    steps = 3 if args.quick else args.steps
    datasets: dict = {}
    if sections & {"step", "eval", "optim"}:
        big = _cfg("synthetic", f"dataset.synthetic.size={size}", "train.batch_size=4096")
        datasets[f"synthetic-{size}"] = (big, _data(big))
        if not args.quick and Path(MIRROR, "ciao", "rating.mat").exists():
            ciao = _cfg("ciao", "train.batch_size=4096")
            datasets["ciao"] = (ciao, _data(ciao))
    rows: list[dict] = []
    print(f"pmtrec benchmarks on {hardware()}", flush=True)
    if "startup" in sections:
        rows += bench_startup(1 if args.quick else 3)
    if "step" in sections:
        rows += bench_step(datasets, methods, steps)
    if "eval" in sections:
        rows += bench_eval(datasets)
    if "optim" in sections:
        name = "ciao" if "ciao" in datasets else next(iter(datasets))
        rows += bench_optim(*datasets[name], steps)
    if "scale" in sections:
        scales = ([float(x) for x in args.scales.split(",")] if args.scales
                  else [16.0, 64.0, 256.0] if not args.quick else [1.0, 2.0])
        rows += bench_scale(scales, "small" if not args.quick else "tiny", 1)
    if "prepare" in sections and Path(MIRROR, "epinions", "rating.mat").exists() and not args.quick:
        rows += bench_prepare("epinions")
    frame = pd.DataFrame(rows)
    frame.insert(0, "hardware", hardware())
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "gpu.csv" if torch.cuda.is_available() else "cpu.csv")
    from pmtrec.io import atomic_path

    shown = frame
    if out.exists():  # other sections (and other benchmarks' rows, e.g. run_wall's) are kept
        old = pd.read_csv(out)
        ran = set(frame["section"]) | sections
        old = old[~(old["section"].isin(ran) & (old["hardware"] == hardware()))]
        frame = pd.concat([old, frame], ignore_index=True)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(shown[["section", "dataset", "item", "value", "unit", "target"]].to_string(index=False))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
