"""Save a running study's finished results into the repository, and restore them elsewhere.

    .venv/bin/python -m benchmarks.reference.snapshot save    --workdir /work/ref
    .venv/bin/python -m benchmarks.reference.snapshot restore --workdir /work/ref2
    .venv/bin/python -m benchmarks.reference.snapshot watch   --workdir /work/ref --every 30 --commit

The reference study takes longer than one sitting, and the machine it runs on may be replaced
between sittings. ``save`` packs every result file of a finished job under ``--workdir``/results
(and its benchmark file under ``--workdir``/benchmarks/runs) that no earlier part holds into a new part, ``reports/reference/runs/part-NNN.tar.xz`` with a
listing ``part-NNN.txt``: parts never change once written, so the repository holds each file once.
A run counts as finished when its result JSON exists (``pmtrec train`` writes it last, after the
per-user metrics and embeddings) and so does its Snakemake benchmark file; tuning selections,
probes and maps count when they exist (each is written whole, then renamed). Left out: embedding
tables (temp files of config/reference.yaml, ``analysis.keep_embeddings: false``), checkpoints,
prepared data and downloads (rebuilt from the mirror), tables, notebooks and the report (rebuilt).

``restore`` unpacks every part into a workflow folder whose prepared data already exist (run the
``prepare`` targets first) and gives every unpacked file one modification time, later than the
prepared data's, so Snakemake (mtime rerun trigger, no metadata for these files) sees them as up
to date and runs only what is missing.

``watch`` saves every ``--every`` minutes while Snakemake holds a lock in ``--workdir`` (then once
more, and stops): a sitting cut off before its end loses at most that many minutes of finished
jobs. ``--commit`` (with ``save`` or ``watch``) commits the parts folder's new parts, and only
them (a path-limited commit: whatever else is staged stays staged); a failed commit (e.g. git busy)
is reported, and the next one picks the part up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from pmtrec.study.paths import bench_path, probe_path, run_path
from pmtrec.training.per_user import per_user_path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ROOT / "reports" / "reference" / "runs"
RESULT_DIRS = ("runs", "tune", "ablation", "sensitivity")   # result JSONs of training jobs
WHOLE_DIRS = ("analysis/probes", "analysis/maps")            # written whole, then renamed
SKIP_SUFFIXES = (".emb.npz", ".tmp", ".pt")


def _rel(path: Path, workdir: Path) -> str:
    return path.relative_to(workdir).as_posix()


def saved_files(parts: Path = PARTS) -> set[str]:
    """Every file an existing part holds (from the listings)."""
    return {line for txt in sorted(parts.glob("part-*.txt")) for line in txt.read_text().splitlines() if line}


def finished_files(workdir: Path) -> list[str]:
    """The files of finished jobs under ``workdir``/results, relative to ``workdir``."""
    results = workdir / "results"
    out: list[str] = []
    for sub in RESULT_DIRS:
        for result in sorted((results / sub).rglob("*.json")):
            rel = result.relative_to(results / sub)
            stage = {"runs": "train"}.get(sub, sub)
            bench = workdir / bench_path(stage, *rel.with_suffix("").parts)
            per_user = per_user_path(result)
            if not bench.is_file() or not per_user.is_file():
                continue  # a job still running, or one whose benchmark file is not written yet
            out += [_rel(result, workdir), _rel(per_user, workdir), _rel(bench, workdir)]
        if sub == "tune":
            out += [_rel(p, workdir) for p in sorted((results / sub).rglob("selected.yaml"))]
    for sub in WHOLE_DIRS:
        out += [_rel(p, workdir) for p in sorted((results / sub).rglob("*")) if p.is_file()]
    return [f for f in dict.fromkeys(out) if not f.endswith(SKIP_SUFFIXES)]


def unprobed(workdir: Path) -> list[str]:
    """Finished main runs whose embedding tables still wait for their probe: the tables are not
    saved, so on a new machine these runs train again (a probe's output is saved once it exists)."""
    out = []
    for emb in sorted((workdir / "results" / "runs").rglob("*.emb.npz")):
        dataset, method, name = emb.relative_to(workdir / "results" / "runs").parts
        seed = name[len("seed"):-len(".emb.npz")]
        if (workdir / run_path(dataset, method, seed)).is_file() and \
                not (workdir / probe_path(dataset, method, seed)).is_file():
            out.append(_rel(emb, workdir))
    return out


def save(workdir: Path, parts: Path = PARTS) -> Path | None:
    """A new part with the finished files no earlier part holds; None when there are none."""
    new = [f for f in finished_files(workdir) if f not in saved_files(parts)]
    if not new:
        return None
    parts.mkdir(parents=True, exist_ok=True)
    n = len(list(parts.glob("part-*.tar.xz")))
    tar_path, txt_path = parts / f"part-{n:03d}.tar.xz", parts / f"part-{n:03d}.txt"
    tmp = tar_path.with_suffix(".partial")
    with tarfile.open(tmp, "w:xz") as tar:
        for f in new:
            tar.add(workdir / f, arcname=f, recursive=False)
    tmp.replace(tar_path)
    # the listing last: a listing without its archive would hide files from the next save (an
    # archive without a listing only makes the next part repeat them)
    txt_path.write_text("\n".join(new) + "\n")
    return tar_path


def restore(workdir: Path, parts: Path = PARTS) -> int:
    """Unpack every part into ``workdir``; every unpacked file gets one new modification time."""
    stamp = time.time()
    count = 0
    for tar_path in sorted(parts.glob("part-*.tar.xz")):
        with tarfile.open(tar_path) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            tar.extractall(workdir, members=members, filter="data")
        for m in members:
            os.utime(workdir / m.name, (stamp, stamp))
        count += len(members)
    return count


def commit(parts: Path = PARTS) -> str | None:
    """Commit the parts folder's uncommitted parts (only them); the commit's message, or None."""
    git = ["git", "-C", str(parts)]
    subprocess.run([*git, "add", "--", "."], check=True, capture_output=True)
    staged = subprocess.run([*git, "diff", "--cached", "--name-only", "--relative", "--", "."],
                            check=True, capture_output=True, text=True).stdout.split()
    new = sorted(Path(f).name.removesuffix(".tar.xz") for f in staged if f.endswith(".tar.xz"))
    if not new:
        return None
    message = f"reference study: saved results {', '.join(new)}"
    subprocess.run([*git, "commit", "-q", "-m", message, "--", "."], check=True, capture_output=True, text=True)
    return message


def running(workdir: Path) -> bool:
    """Whether a Snakemake run holds a lock in ``workdir``."""
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def watch(args, save_once, poll: float = 10.0) -> int:
    """Call ``save_once(args)`` every ``args.every`` minutes while ``args.workdir`` is locked, and
    once when the lock goes; the number of calls."""
    calls, due = 0, time.monotonic() + args.every * 60
    while running(args.workdir):
        time.sleep(min(poll, max(0.0, due - time.monotonic())))
        if time.monotonic() >= due:
            save_once(args)
            calls, due = calls + 1, time.monotonic() + args.every * 60
    save_once(args)
    return calls + 1


def _save(args) -> None:
    made = save(args.workdir, args.parts)
    print(f"snapshot: {made} ({len(made.with_suffix('').with_suffix('.txt').read_text().split())} files)"
          if made else "snapshot: nothing new to save", flush=True)
    if args.commit:
        try:
            message = commit(args.parts)
            if message:
                print(f"snapshot: committed ({message})", flush=True)
        except subprocess.CalledProcessError as e:
            print(f"snapshot: commit failed, the next save retries: {(e.stderr or '').strip() or e}",
                  file=sys.stderr, flush=True)
    waiting = unprobed(args.workdir)
    if waiting:
        print(f"snapshot: warning: {len(waiting)} finished main runs have no probe yet (e.g. {waiting[0]}); "
              "their embedding tables are not saved, so a new machine trains them again", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["save", "restore", "watch"])
    p.add_argument("--workdir", type=Path, required=True, help="the study's workflow folder")
    p.add_argument("--parts", type=Path, default=PARTS, help=f"the parts folder (default {PARTS})")
    p.add_argument("--commit", action="store_true", help="commit the new parts (path-limited)")
    p.add_argument("--every", type=float, default=30.0, help="watch: minutes between saves (default 30)")
    args = p.parse_args(argv)
    if not (args.workdir / "results").is_dir() and args.action in ("save", "watch"):
        raise SystemExit(f"snapshot: {args.workdir}/results: no such folder")
    if args.every <= 0:
        raise SystemExit(f"snapshot: --every {args.every}: must be positive")
    if args.action == "save":
        _save(args)
    elif args.action == "watch":
        watch(args, _save)
    else:
        print(f"snapshot: restored {restore(args.workdir, args.parts)} files into {args.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
