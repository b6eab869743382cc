"""The screening table and decision rule of issue 19 (docs/method.md, "Second round: pre-registration").

    python -m benchmarks.second_round.screen RESULTS_DIR [--out benchmarks/results]
    python -m benchmarks.second_round.screen --targets   # the screen's Snakemake targets
    python -m benchmarks.second_round.screen RESULTS_DIR --epinions-targets   # then Epinions (screen_epinions.yaml)

Reads the tuning runs of the screening study (``RESULTS_DIR/tune/<dataset>/<arm>/<setting>/seed<s>.json``,
config benchmarks/second_round/screen.yaml) and writes ``second_round_screen.csv`` (per dataset and
arm: the selected setting, the best-epoch validation NDCG@20 of each tuning seed there, their mean
and spread, and the runs found) and ``second_round_rule.csv`` (per candidate against its reference:
the datasets where its mean is higher, those where it is lower by more than the reference's seed
spread, the mean difference, whether it can still pass and whether it passes). Validation only: the runs' test
metrics are never read. ``second_round_runs.csv`` keeps every run found (validation only), and
``second_round_weights.csv`` the PMTRec arms' last-epoch row weights per user activity group.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("screen.yaml")
METRIC = "ndcg@20"
N_DATASETS, NEEDED = 4, 3  # Ciao, Epinions, amazon-hin, lastfm; higher on at least 3 of them
EPINIONS_CONFIG = Path(__file__).with_name("screen_epinions.yaml")
# candidate -> the arm it is judged against (anchored batches: against the same method unanchored)
REFERENCE = {"pmtrec-softmax": "pmtrec", "pmtrec-persample": "pmtrec", "pmtrec-ema": "pmtrec",
             "pmtrec-cosine": "pmtrec", "pmtrec-anchored": "pmtrec", "ew-anchored": "ew"}


def targets(config: Path = CONFIG) -> list[str]:
    cfg = yaml.safe_load(config.read_text())
    return [f"results/tune/{d}/{m}/selected.yaml" for d in cfg["datasets"] for m in cfg["methods"]]


def runs(results: Path) -> pd.DataFrame:
    """One row per tuning run found: dataset, arm, setting, seed, validation metric."""
    rows = []
    for path in sorted((results / "tune").glob("*/*/*/seed*.json")):
        dataset, arm, setting = path.parts[-4:-1]
        res = json.loads(path.read_text())
        rows.append({"dataset": dataset, "arm": arm, "setting": setting, "seed": int(path.stem[4:]),
                     f"valid_{METRIC}": float(res["valid"]["overall"][METRIC]), "best_epoch": res["best_epoch"],
                     "epochs_run": res["epochs_run"]})
    return pd.DataFrame(rows, columns=["dataset", "arm", "setting", "seed", f"valid_{METRIC}", "best_epoch",
                                       "epochs_run"])


def screen_table(frame: pd.DataFrame, n_seeds: int = 2) -> pd.DataFrame:
    """Per dataset and arm: the setting with the best mean over the seeds (complete settings only)."""
    col = f"valid_{METRIC}"
    out = []
    for (dataset, arm), g in frame.groupby(["dataset", "arm"]):
        per = g.groupby("setting")[col].agg(["mean", "count", "min", "max"])
        done = per[per["count"] == n_seeds]
        if done.empty:
            continue
        best = done["mean"].idxmax()
        out.append({"dataset": dataset, "arm": arm, "settings_done": len(done), "settings_seen": len(per),
                    "selected": best, "mean": float(done.loc[best, "mean"]),
                    "spread": float(done.loc[best, "max"] - done.loc[best, "min"]),
                    "epochs_run_max": int(g["epochs_run"].max())})
    return pd.DataFrame(out)


def rule_table(screen: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
    """Each candidate against its reference, on the datasets where both ran all ``budget`` settings
    (default: the screen config's tune.budget)."""
    budget = budget if budget is not None else yaml.safe_load(CONFIG.read_text())["tune"]["budget"]
    screen = screen[screen.settings_done >= budget]
    out = []
    for cand, ref in REFERENCE.items():
        a = screen[screen.arm == cand].set_index("dataset")
        b = screen[screen.arm == ref].set_index("dataset")
        common = sorted(set(a.index) & set(b.index))
        if not common:
            continue
        diff = a.loc[common, "mean"] - b.loc[common, "mean"]
        higher = [d for d in common if diff[d] > 0]
        worse = [d for d in common if diff[d] < -b.loc[d, "spread"]]
        to_come = max(N_DATASETS - len(common), 0)
        out.append({"candidate": cand, "reference": ref, "datasets": len(common), "higher_on": len(higher),
                    "higher": " ".join(higher), "worse_beyond_spread": " ".join(worse),
                    "mean_difference": float(diff.mean()),
                    # (a) higher on 3 of the 4 datasets, (b) nowhere worse beyond the spread
                    "can_still_pass": bool(len(higher) + to_come >= NEEDED and not worse),
                    "passes": bool(not to_come and len(higher) >= NEEDED and not worse)})
    return pd.DataFrame(out)


def best_for_epinions(rule: pd.DataFrame, n: int = 2) -> list[str]:
    """The pre-registered "Epinions for the two best": the PMTRec candidates that can still pass,
    by mean difference from the default over the datasets screened (docs/method.md)."""
    ok = rule[(rule.reference == "pmtrec") & rule.can_still_pass]
    return ok.sort_values("mean_difference", ascending=False)["candidate"].head(n).tolist()


def group_weights(results: Path, screen: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, PMTRec-family arm and user activity group (0 = least active): each task's mean
    per-row weight in the last epoch of the selected setting's runs (mean over the tuning seeds)."""
    rows = []
    for r in screen.itertuples():
        for path in sorted((results / "tune" / r.dataset / r.arm / r.selected).glob("seed*.json")):
            last = json.loads(path.read_text())["curves"][-1]
            for group, w in (last.get("row_weight_by_user_group") or {}).items():
                rows.append({"dataset": r.dataset, "arm": r.arm, "group": int(group), **w})
    if not rows:
        return pd.DataFrame(columns=["dataset", "arm", "group"])
    return pd.DataFrame(rows).groupby(["dataset", "arm", "group"], as_index=False).mean()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.second_round.screen", description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="?", help="the screening study's results folder")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--targets", action="store_true", help="print the screen's Snakemake targets and exit")
    p.add_argument("--epinions-targets", action="store_true",
                   help="print the Epinions targets (the default and the two best candidates so far) and exit")
    args = p.parse_args(argv)
    if args.targets:
        print(" ".join(targets()))
        return 0
    if args.epinions_targets:
        if args.results is None:
            p.error("--epinions-targets needs the screen's results folder (the rule picks the arms)")
        arms = ["pmtrec", *best_for_epinions(rule_table(screen_table(runs(args.results))))]
        print(" ".join(f"results/tune/epinions/{a}/selected.yaml" for a in arms))
        return 0
    if args.results is None or not (args.results / "tune").is_dir():
        p.error(f"{args.results}: no tune/ folder of a screening study there")
    found = runs(args.results)
    screen = screen_table(found)
    rule = rule_table(screen)
    args.out.mkdir(parents=True, exist_ok=True)
    found.to_csv(args.out / "second_round_runs.csv", index=False)  # every run: a wiped machine loses nothing read
    screen.to_csv(args.out / "second_round_screen.csv", index=False)
    rule.to_csv(args.out / "second_round_rule.csv", index=False)
    group_weights(args.results, screen).to_csv(args.out / "second_round_weights.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(screen.to_string(index=False))
        print(rule.to_string(index=False))
    print(f"written {args.out / 'second_round_screen.csv'} and second_round_rule.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
