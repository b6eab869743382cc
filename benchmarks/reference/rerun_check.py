"""Do main runs trained again on another machine reproduce their saved results?

    .venv/bin/python -m benchmarks.reference.rerun_check --workdir /work/ref

For every main run that a part of reports/reference/runs holds and that ``--workdir`` has trained
again (its result JSON differs from the saved one), compares what a run computes: validation and
test metrics (overall and per group), best epoch, epochs run, the per-epoch losses and validation
metrics, and the SHA-256 of the embedding tables. Timings, host and pid are expected to differ.
Prints one line per differing run and a summary; exits 1 when a run does not reproduce.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

from benchmarks.reference.snapshot import PARTS

# what a run computes (not when, where or how fast)
CURVE_KEYS = ("epoch", "valid", "loss")


def _computed(result: dict) -> dict:
    return {"valid": result["valid"], "test": result["test"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "stopped_by": result["stopped_by"],
            "curves": [{k: c.get(k) for k in CURVE_KEYS} for c in result["curves"]],
            "embeddings": (result.get("embeddings") or {}).get("sha256")}


def saved_runs(parts: Path = PARTS) -> dict[str, bytes]:
    """Every main run's result JSON held by a part: path -> bytes."""
    out = {}
    for tar_path in sorted(parts.glob("part-*.tar.xz")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith("results/runs/") and m.name.endswith(".json"):
                    out[m.name] = tar.extractfile(m).read()
    return out


def differences(saved: dict, rerun: dict) -> list[str]:
    """The computed fields in which ``rerun`` differs from ``saved``."""
    a, b = _computed(saved), _computed(rerun)
    return [k for k in a if a[k] != b[k]]


def check(workdir: Path, parts: Path = PARTS) -> tuple[int, int, list[tuple[str, list[str]]]]:
    """(saved runs, reruns, [(rerun that differs, its differing fields)])."""
    saved = saved_runs(parts)
    reruns, bad = 0, []
    for rel, data in sorted(saved.items()):
        path = workdir / rel
        if not path.is_file() or path.read_bytes() == data:
            continue
        reruns += 1
        diff = differences(json.loads(data), json.loads(path.read_text()))
        if diff:
            bad.append((rel, diff))
    return len(saved), reruns, bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="the study's workflow folder")
    p.add_argument("--parts", type=Path, default=PARTS, help=f"the parts folder (default {PARTS})")
    args = p.parse_args(argv)
    if not (args.workdir / "results" / "runs").is_dir():
        raise SystemExit(f"rerun_check: {args.workdir}/results/runs: no such folder")
    n_saved, n_rerun, bad = check(args.workdir, args.parts)
    for rel, diff in bad:
        print(f"rerun_check: {rel}: differs in {', '.join(diff)}")
    print(f"rerun_check: {n_saved} saved main runs, {n_rerun} trained again, "
          f"{n_rerun - len(bad)} reproduce exactly, {len(bad)} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
