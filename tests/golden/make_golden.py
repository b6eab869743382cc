"""Write tests/golden/synthetic_tiny.json: the metrics the golden test compares bit for bit.

Run it only when a change is *meant* to change results (and say so in the commit):
    .venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

# One of each kind: the main task alone, a loss weighting, PMTRec, a gradient method, and a
# stateful loss weighting (its state is checkpointed), on two epochs of synthetic tiny.
METHODS = ("single", "ew", "pmtrec", "pcgrad", "uw")
OVERRIDES = ("dataset.synthetic.size=tiny", "train.progress=false", "train.threads=1", "train.epochs=2",
             "train.batch_size=512")


def golden_metrics(method: str) -> dict:
    """valid/test overall metrics and the per-epoch losses of one run, as exact floats."""
    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.train import train

    cfg = load_config(overrides=[*OVERRIDES, f"train.method={method}"])
    r = train(cfg, prepare_in_memory(cfg), log=lambda *_: None)
    return {"valid": r["valid"]["overall"], "test": r["test"]["overall"], "best_epoch": r["best_epoch"],
            "loss": [e["loss"] for e in r["curves"]], "tasks": r["tasks"]}


if __name__ == "__main__":
    out = {m: golden_metrics(m) for m in METHODS}
    (HERE / "synthetic_tiny.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HERE / 'synthetic_tiny.json'}")
