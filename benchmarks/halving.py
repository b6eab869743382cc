"""Successive halving for tuning, replayed on full tuning trials: what it would save and change.

    .venv/bin/python -m benchmarks.halving results/tune/ciao/ew [--rungs 5 10 20] [--eta 2 3]
        [--patience 4 --eval-every 5] [--startup-s 6]

Validation draws no randomness (tests/test_cadence.py), so a trial stopped at epoch r has trained
exactly the first r epochs of its full curve: successive halving (SH) is replayed exactly from
full trials run with ``train.eval_every: 1``. Every trial trains to the first rung r0; the best
``max(1, n // eta)`` by best-so-far validation metric go on to ``r0 * eta``, and so on until one
is left or the rung reaches the epoch cap; the survivors train to their own end (early stopping
at ``--patience`` validations, the epoch cap) and the best of them is selected. ``--eval-every c``
replays a sparser cadence on the same curves: only epochs c, 2c, ... (and the cap) are validated
and paid for, and rungs must be validated epochs. A trial that early-stopped
before a rung is ranked there by its final score. Ties go to the first file in sorted order, as
in :func:`pmtrec.study.tuning.select_setting`.

Writes ``benchmarks/results/halving_<dataset>_<method>.csv``: one row for the full protocol and
one per (eta, first rung): trials, epochs trained, training + validation seconds (from the
curves), jobs (a DAG would run each rung segment as a job resumed from a checkpoint), the cost
with ``--startup-s`` per job added, each as a share of the full protocol's, the selected setting,
whether it is the full protocol's, and the regret (full protocol's selected score minus SH's).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class HalvingError(PmtrecError):
    """A bad rung, eta or patience, or tuning results that cannot be replayed."""


@dataclass(frozen=True)
class Trial:
    """One tuning trial's full curve (every epoch validated): validation metric, training and
    validation seconds per epoch."""

    name: str
    scores: np.ndarray
    train_s: np.ndarray
    valid_s: np.ndarray


def validated(n: int, eval_every: int, cap: int) -> np.ndarray:
    """Which of epochs 1..n the trainer validates: every ``eval_every``-th and the cap."""
    e = np.arange(1, n + 1)
    return (e % eval_every == 0) | (e == cap)


def stop_epoch(scores: np.ndarray, patience: int, eval_every: int = 1, cap: int | None = None) -> int:
    """Epochs the trainer runs on this curve: it stops after ``patience`` validations in a row
    without a strictly better score (pmtrec.training.trainer.fit); ``eval_every`` / ``cap``:
    which epochs it validates (default every one)."""
    s = np.asarray(scores, dtype=float)
    on = validated(len(s), eval_every, cap or len(s))
    seen = np.where(on, s, -np.inf)  # an epoch not validated is never better, never a bad validation
    prev_best = np.maximum.accumulate(np.r_[-np.inf, seen[:-1]])
    count = np.cumsum(on)
    better = on & (s > prev_best)
    bad = count - np.maximum.accumulate(np.where(better, count, 0))
    hit = np.flatnonzero(on & (bad >= patience))
    return int(hit[0]) + 1 if len(hit) else len(s)


def rung_schedule(first_rung: int, eta: int, cap: int, eval_every: int = 1) -> list[int]:
    """The rungs below the epoch cap: r0, r0*eta, ... (validated epochs: multiples of ``eval_every``)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, np.integer)) or eta < 2:
        raise HalvingError(f"eta: {eta!r} must be an integer >= 2")
    if isinstance(first_rung, bool) or not isinstance(first_rung, (int, np.integer)) or not 1 <= first_rung < cap:
        raise HalvingError(f"first rung: {first_rung!r} must be an integer from 1 to the epoch cap - 1 ({cap - 1})")
    if first_rung % eval_every:
        raise HalvingError(f"first rung: {first_rung} is not a validated epoch (a multiple of eval_every {eval_every})")
    rungs = [int(first_rung)]
    while rungs[-1] * eta < cap:
        rungs.append(rungs[-1] * eta)
    return rungs


def _padded(trials: list[Trial], patience: int, eval_every: int, cap: int):
    """Each trial's end epoch, best-so-far validated score and cumulative seconds (training, and
    validation on the validated epochs) per epoch, both held constant after its end (so a rung past
    a trial's end reads its final values)."""
    ends = np.array([stop_epoch(t.scores, patience, eval_every, cap) for t in trials])
    for t in trials:  # a curve the run's own early stopping cut before this rule would stop
        if len(t.scores) < cap and stop_epoch(np.r_[t.scores, np.inf], patience, eval_every, cap) > len(t.scores):
            raise HalvingError(f"setting '{t.name}': its curve ends at epoch {len(t.scores)} (the run's early "
                               f"stopping) before patience {patience} at eval_every {eval_every} would stop it")
    width = int(max(len(t.scores) for t in trials))
    best = np.full((len(trials), width), np.nan)
    cost = np.full((len(trials), width), np.nan)
    for i, (t, end) in enumerate(zip(trials, ends)):  # per trial, not per epoch: a handful of rows
        on = validated(end, eval_every, cap)
        best[i, :end] = np.maximum.accumulate(np.where(on, t.scores[:end], -np.inf))
        cost[i, :end] = np.cumsum(t.train_s[:end] + np.where(on, t.valid_s[:end], 0.0))
    best = pd.DataFrame(best).ffill(axis=1).to_numpy()
    cost = pd.DataFrame(cost).ffill(axis=1).to_numpy()
    return ends, best, cost


def full_protocol(trials: list[Trial], patience: int, eval_every: int = 1, cap: int | None = None) -> dict:
    """Every trial to its own end; the best final score is selected."""
    cap = cap or max(len(t.scores) for t in trials)
    ends, best, cost = _padded(trials, patience, eval_every, cap)
    final = best[:, -1]
    win = int(np.argmax(final))  # the first of equal scores
    return {"trials": len(trials), "epochs": int(ends.sum()), "seconds": float(cost[:, -1].sum()),
            "jobs": len(trials), "selected": trials[win].name, "score": float(final[win]), "final": final}


def halving(trials: list[Trial], first_rung: int, eta: int, patience: int, cap: int, eval_every: int = 1) -> dict:
    """Successive halving replayed on full curves (module docstring); ``cap``: the runs' epoch cap."""
    if not trials:
        raise HalvingError("no tuning trials to replay")
    rungs = rung_schedule(first_rung, eta, cap, eval_every)
    ends, best, cost = _padded(trials, patience, eval_every, cap)
    trained = ends.copy()  # epochs each trial trains; survivors keep their end
    jobs = np.ones(len(trials), dtype=int)
    alive = np.arange(len(trials))
    survivors = []
    for rung in rungs:
        if len(alive) <= 1:
            break
        at = np.minimum(rung, best.shape[1]) - 1
        order = alive[np.argsort(-best[alive, at], kind="stable")]  # stable: ties keep file order
        keep, drop = order[: max(1, len(alive) // eta)], order[max(1, len(alive) // eta):]
        trained[drop] = np.minimum(ends[drop], rung)
        jobs[keep] += ends[keep] > rung  # resumed past this rung: another job
        alive = np.sort(keep)
        survivors.append(len(alive))
    final = best[:, -1]
    win = int(alive[np.argmax(final[alive])])
    seconds = float(np.take_along_axis(cost, trained[:, None] - 1, axis=1).sum())
    return {"trials": len(trials), "rungs": "/".join(map(str, rungs[: len(survivors)])),
            "survivors": "/".join(map(str, survivors)), "epochs": int(trained.sum()), "seconds": seconds,
            "jobs": int(jobs.sum()), "selected": trials[win].name, "score": float(final[win]),
            "trained": trained}


def compare(trials: list[Trial], first_rungs, etas, patience: int, cap: int, startup_s: float = 0.0,
            eval_every: int = 1) -> pd.DataFrame:
    """The full protocol's row and one row per (eta, first rung), with shares and regret."""
    if startup_s < 0:
        raise HalvingError(f"--startup-s: {startup_s} must be >= 0")
    if eval_every < 1:
        raise HalvingError(f"--eval-every: {eval_every} must be >= 1")
    full = full_protocol(trials, patience, eval_every, cap)
    full_total = full["seconds"] + startup_s * full["jobs"]
    rows = [{"eta": "full", "first_rung": "", "rungs": "", "survivors": "", **_costs(full, full, startup_s, full_total),
             "selected": full["selected"], "same_as_full": True, "regret": 0.0}]
    for eta in etas:
        for r0 in first_rungs:
            sh = halving(trials, r0, eta, patience, cap, eval_every)
            rows.append({"eta": eta, "first_rung": r0, "rungs": sh["rungs"], "survivors": sh["survivors"],
                         **_costs(sh, full, startup_s, full_total), "selected": sh["selected"],
                         "same_as_full": sh["selected"] == full["selected"], "regret": full["score"] - sh["score"]})
    return pd.DataFrame(rows)


def _costs(run: dict, full: dict, startup_s: float, full_total: float) -> dict:
    total = run["seconds"] + startup_s * run["jobs"]
    return {"trials": run["trials"], "epochs": run["epochs"], "seconds": round(run["seconds"], 1),
            "share": run["seconds"] / full["seconds"], "jobs": run["jobs"], "seconds_with_startup": round(total, 1),
            "share_with_startup": total / full_total}


# ---------------------------------------------------------------------------------------- input
def load_trials(folder: Path, metric: str, patience: int | None) -> tuple[list[Trial], dict, int, int]:
    """The tuning results under ``folder`` (one per setting, every epoch validated), their
    ``select_setting`` points, the epoch cap and the patience to replay (default: the runs')."""
    from pmtrec.training.results import find_results, load_result

    trials, points, caps, patiences = [], {}, set(), set()
    seen: dict[str, Path] = {}
    kinds = set()
    for path in find_results([folder]):
        res = load_result(path)
        kinds.add((res["dataset"], res["method"]))
        labels = res.get("labels") or {}
        name = str(labels.get("setting") or path.stem)
        if name in seen:
            raise HalvingError(f"{path}: a second result of setting '{name}' (also {seen[name]}); "
                               "the replay takes one tuning seed per setting")
        seen[name] = path
        curves = res["curves"]
        if not curves:
            raise HalvingError(f"{path}: no epochs in its curves (a trained method's tuning result is needed)")
        missing = [c["epoch"] for c in curves if c["valid"].get(metric) is None]
        if missing:
            raise HalvingError(f"{path}: epoch {missing[0]} has no validation {metric} "
                               "(the replay needs train.eval_every: 1)")
        train = res["config"]["train"]
        caps.add(int(train["epochs"]))
        patiences.add(int(train["patience"]))
        trials.append(Trial(name, np.array([c["valid"][metric] for c in curves], dtype=float),
                            np.array([c["train_time_s"] for c in curves], dtype=float),
                            np.array([c["eval_time_s"] for c in curves], dtype=float)))
        points[str(path)] = labels.get("values") or {"setting": name}
    if len(kinds) > 1:
        raise HalvingError(f"{folder}: results of several datasets/methods {sorted(kinds)}; give one method's folder")
    if len(caps) > 1:
        raise HalvingError(f"{folder}: results with different train.epochs {sorted(caps)}")
    patience = min(p for p in patiences) if patience is None else patience
    if patience < 1:
        raise HalvingError(f"--patience: {patience} must be >= 1")
    return trials, points, caps.pop(), patience


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.halving", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="one method's tuning results, e.g. results/tune/ciao/ew")
    p.add_argument("--rungs", nargs="+", type=int, default=[5, 10, 20], help="first rungs (epochs)")
    p.add_argument("--eta", nargs="+", type=int, default=[2, 3])
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping to replay, in validations (default: the runs')")
    p.add_argument("--eval-every", type=int, default=1, help="validation cadence to replay (train.eval_every)")
    p.add_argument("--metric", default="ndcg@20")
    p.add_argument("--startup-s", type=float, default=0.0,
                   help="seconds each job spends outside its epochs (process start, data load, final evaluation)")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV (default benchmarks/results/halving_<dataset>_<method>.csv)")
    args = p.parse_args(argv)
    from pmtrec.io import atomic_path
    from pmtrec.study.tuning import select_setting
    from pmtrec.training.results import load_result

    try:
        trials, points, cap, patience = load_trials(args.folder, args.metric, args.patience)
        table = compare(trials, args.rungs, args.eta, patience, cap, args.startup_s, args.eval_every)
        first = load_result(next(iter(points)))
        if patience == int(first["config"]["train"]["patience"]) and args.eval_every == 1:
            # cross-check: the replayed full protocol selects what the workflow's selection does
            chosen, _ = select_setting(points, args.metric)
            names = {str(k): t.name for k, t in zip(points, trials)}
            want = next(names[k] for k, v in points.items() if v == chosen)
            if want != table.loc[0, "selected"]:
                raise HalvingError(f"{args.folder}: replayed selection {table.loc[0, 'selected']} differs from "
                                   f"select_setting's {want}")
    except PmtrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or RESULTS / f"halving_{first['dataset']}_{first['method']}.csv"
    table.insert(0, "eval_every", args.eval_every)
    table.insert(0, "patience", patience)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
