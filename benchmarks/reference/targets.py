"""The reference study's priority targets (stage 2 of benchmarks/reference/README.md), one per line:

    .venv/bin/python -m benchmarks.reference.targets > /tmp/prio.txt
    bash benchmarks/reference/run.sh /work/ref all --prioritize $(cat /tmp/prio.txt)

Every main run, with its probes and the item maps (they read the run's embedding tables, which are
temp files: a probe that has not run when the machine is replaced costs a rerun of its training job,
since the tables are not saved in the parts), and every ``pmtrec-shuffled`` ablation (a control of
issue 19's confirmation). The order changes no result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.study_cost import load_plan
from pmtrec.errors import PmtrecError
from pmtrec.study.paths import ablation_path

ROOT = Path(__file__).resolve().parents[2]


def priority_targets(study, control: str = "pmtrec-shuffled") -> list[str]:
    """Main runs, their probes, the maps, and the ``control`` ablation on every ablation dataset."""
    out = list(study.main_runs())
    out += [e["path"] for e in study.probe_entries()]
    out += list(study.maps().values())
    if control in study.variants:
        out += [ablation_path(d, control, s) for d in study.ablation_datasets for s in study.ablation_seeds]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "reference.yaml")
    args = ap.parse_args(argv)
    try:
        study = load_plan(args.config)
    except PmtrecError as exc:
        raise SystemExit(f"targets: {exc}") from None
    sys.stdout.write("".join(f"{t}\n" for t in priority_targets(study)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
