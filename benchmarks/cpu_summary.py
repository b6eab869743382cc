"""Copy the study-level figures of issue 20 into benchmarks/results/cpu.csv, next to the step figures.

    .venv/bin/python -m benchmarks.cpu_summary

Sections written (replaced on every call; nothing is measured here, every value is read from the
benchmark that measured it):

* ``tune``: the measured tuning cost of one method (``ew`` on Ciao, 8 trials, start-up included),
  with the full protocol and with each successive-halving schedule replayed on the same trials
  (benchmarks/results/halving_ciao_ew*.csv, ``python -m benchmarks.halving``), and whether that
  schedule kept the full protocol's selection;
* ``study``: the projected cost of the paper study (config/paper.yaml) on this machine, per stage
  and in all (benchmarks/results/study_cost_totals.csv, ``python -m benchmarks.study_cost``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
HARDWARE = "cpu:x86_64x2(2 threads)"  # where halving's trials and the cost projection were measured


def tune_rows() -> list[dict]:
    rows = []
    for path in sorted(RESULTS.glob("halving_ciao_ew*.csv")):
        for r in pd.read_csv(path).to_dict("records"):
            what = "full protocol" if r["eta"] == "full" else f"successive halving eta {r['eta']}, rungs {r['rungs']}"
            kept = "" if r["eta"] == "full" else (", same selection" if r["same_as_full"] else ", other selection")
            rows.append({"hardware": HARDWARE, "section": "tune", "dataset": "ciao",
                         "item": f"ew tuning, {int(r['trials'])} trials, eval_every {int(r['eval_every'])}: {what}{kept}",
                         "value": r["share_with_startup"], "unit": "x full protocol",
                         "seconds": r["seconds_with_startup"]})
    return rows


def study_rows() -> list[dict]:
    totals = pd.read_csv(RESULTS / "study_cost_totals.csv")
    return [{"hardware": HARDWARE, "section": "study", "dataset": "paper.yaml",
             "item": f"{r['stage']}: {int(r['jobs'])} jobs, projected CPU hours (wall hours on 2 cores: {r['wall_h']:.1f})",
             "value": r["cpu_h"], "unit": "CPU h", "seconds": r["cpu_s"]} for r in totals.to_dict("records")]


def main() -> int:
    path = RESULTS / "cpu.csv"
    old = pd.read_csv(path)
    new = pd.DataFrame(tune_rows() + study_rows())
    keep = old[~old.section.isin(["tune", "study"])]
    pd.concat([keep, new], ignore_index=True).to_csv(path, index=False)
    print(new[["section", "item", "value", "unit"]].to_string(index=False))
    print(f"written {path} (sections tune, study)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
