"""Several training jobs per GPU on a workstation: ``python -m pmtrec.gpu_slots -- COMMAND ...``.

Snakemake runs several training jobs at once; without help every one of them would use
GPU 0. This wrapper takes a free *slot* - each GPU has ``N`` slots, one lock file each
under a lock folder, held with ``fcntl.flock`` - sets ``CUDA_VISIBLE_DEVICES`` to that
slot's GPU and replaces itself with ``COMMAND`` (``exec``), which inherits the locked file
descriptor. The kernel drops the lock when the command exits, however it exits (even
``kill -9``), so a lock file left by a dead process is simply free again: stale locks
reclaim themselves. The lock file holds the pid/host of its last owner, for people
reading it.

A job goes to the least-loaded GPU (fewest slots held; the first in the list on a tie),
so with 2 GPUs and ``N=2`` four jobs land 2 + 2 and two jobs land 1 + 1. Wrappers look
at the slots one at a time (a short lock on ``.scan.lock`` in the lock folder), so
two of them starting together see each other's choice.

Which GPUs (in this order of precedence):

* ``--gpus SPEC`` or ``$PMTREC_GPUS``: a count ``N`` (GPUs ``0..N-1``) or a comma list of
  ids (``0,2,3``); ``0`` or an empty list means none. Also the way to test without GPUs.
* ``$CUDA_VISIBLE_DEVICES`` when set: the GPUs already visible to this process.
* ``nvidia-smi --query-gpu=index``: every GPU of the machine.

How many jobs per GPU (``--jobs-per-gpu`` or ``$PMTREC_JOBS_PER_GPU``, default 1):

* an integer ``N >= 1``: ``N`` slots on every GPU;
* ``auto``: from each GPU's free memory when the wrapper starts (``nvidia-smi
  --query-gpu=index,uuid,memory.free``, or ``$PMTREC_GPUS_FREE_MB`` for tests: one MiB
  value for all GPUs or a comma list, one per GPU), divided by the memory of one job
  (``--job-mem-mb`` / ``$PMTREC_JOB_MEM_MB``, default 2000) and kept within 1 ..
  ``--max-jobs-per-gpu`` / ``$PMTREC_MAX_JOBS_PER_GPU`` (default 8). Memory already
  used by running jobs is not free, so ``auto`` also holds new jobs back while a GPU is
  full. A GPU whose free memory is unknown gets 1 slot.

Every wrapper sharing a lock folder should use the same ``N`` (the Snakemake profile
sets ``--resources gpu=`` to GPUs x N). Slot 0 of a GPU is ``gpu-<id>.lock`` (the file
of the one-job-per-GPU version), slot ``k > 0`` is ``gpu-<id>.slot<k>.lock``.

Nothing is done - ``COMMAND`` runs as is - when there is no GPU, or under SLURM
(``$SLURM_JOB_ID``: the scheduler already binds the job's GPUs), or when
``$PMTREC_GPU_SLOTS=off``. When every slot is taken the wrapper waits (``--timeout``
seconds, default forever; then exit status 75), so it also works when Snakemake was not
told how many slots there are (``--resources gpu=N`` keeps jobs from waiting here).

The lock folder (``--lock-dir`` or ``$PMTREC_GPU_LOCK_DIR``, default
``$TMPDIR/pmtrec-gpu-slots``) must be local to the machine, and shared by every workflow
running on it.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["Slot", "acquire", "gpu_ids", "default_lock_dir", "disabled_reason", "jobs_per_gpu", "main"]

ENV_GPUS = "PMTREC_GPUS"
ENV_LOCK_DIR = "PMTREC_GPU_LOCK_DIR"
ENV_SWITCH = "PMTREC_GPU_SLOTS"
ENV_JOBS = "PMTREC_JOBS_PER_GPU"
ENV_JOB_MEM = "PMTREC_JOB_MEM_MB"
ENV_MAX_JOBS = "PMTREC_MAX_JOBS_PER_GPU"
ENV_FREE_MB = "PMTREC_GPUS_FREE_MB"

DEFAULT_JOB_MEM_MB = 2000  # generous for one MF job of this project (well under 1 GB in practice)
DEFAULT_MAX_JOBS = 8       # beyond this the kernels of the jobs queue up on the GPU anyway


class NoSlotError(RuntimeError):
    """No slot became free within the timeout."""


class UsageError(ValueError):
    """A bad flag or environment value; the message names it."""


@dataclass
class Slot:
    """A held GPU slot: ``gpu`` is the id to put in CUDA_VISIBLE_DEVICES, ``slot`` its index on that GPU."""

    gpu: str
    path: Path
    fd: int
    slot: int = 0

    def release(self) -> None:
        if self.fd >= 0:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def parse_gpus(spec: str) -> list[str]:
    """``"3"`` -> ["0", "1", "2"]; ``"0,2"`` -> ["0", "2"]; ``""``/``"0"``/``"none"`` -> []."""
    spec = spec.strip()
    if spec.lower() in ("", "none", "no"):
        return []
    if re.fullmatch(r"\d+", spec) and "," not in spec:
        return [str(i) for i in range(int(spec))]
    return [part.strip() for part in spec.split(",") if part.strip()]


def _nvidia_smi(query: str) -> list[list[str]]:
    """Rows of ``nvidia-smi --query-gpu=QUERY`` (fields stripped); [] when it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def _nvidia_smi_ids() -> list[str]:
    return [row[0] for row in _nvidia_smi("index") if row[0].isdigit()]


def gpu_ids(spec: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids to hand out (see the module doc for the order of precedence)."""
    env = os.environ if env is None else env
    if spec is not None:
        return parse_gpus(spec)
    if ENV_GPUS in env:
        return parse_gpus(env[ENV_GPUS])
    if "CUDA_VISIBLE_DEVICES" in env:
        return [p.strip() for p in env["CUDA_VISIBLE_DEVICES"].split(",") if p.strip() and p.strip() != "-1"]
    return _nvidia_smi_ids()


def _positive_int(value: str, name: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", value) or int(value) < 1:
        raise UsageError(f"{name}={value!r}: expected an integer >= 1")
    return int(value)


def parse_jobs_per_gpu(value: str, name: str = ENV_JOBS) -> int | str:
    """``"3"`` -> 3, ``"auto"`` -> "auto"; anything else (0, -1, "x") -> UsageError naming ``name``."""
    if value.strip().lower() == "auto":
        return "auto"
    if not re.fullmatch(r"\s*\d+\s*", value) or int(value) < 1:
        raise UsageError(f"{name}={value!r}: expected an integer >= 1 or 'auto'")
    return int(value)


def free_memory_mb(gpus: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Free MiB of each GPU of ``gpus`` that is known: ``$PMTREC_GPUS_FREE_MB`` or nvidia-smi."""
    env = os.environ if env is None else env
    if ENV_FREE_MB in env:
        parts = [p.strip() for p in env[ENV_FREE_MB].split(",")]
        if len(parts) not in (1, len(gpus)) or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise UsageError(f"{ENV_FREE_MB}={env[ENV_FREE_MB]!r}: expected one MiB value or {len(gpus)} "
                             "comma-separated ones (one per GPU)")
        values = [int(p) for p in parts] * (len(gpus) if len(parts) == 1 else 1)
        return dict(zip(gpus, values))
    known: dict[str, int] = {}
    for row in _nvidia_smi("index,uuid,memory.free"):
        if len(row) == 3 and row[2].isdigit():
            known[row[0]] = known[row[1]] = int(row[2])  # CUDA_VISIBLE_DEVICES may name GPUs by UUID
    return {g: known[g] for g in gpus if g in known}


def auto_jobs(free_mb: int, job_mem_mb: int, max_jobs: int) -> int:
    """Jobs that fit in ``free_mb``, within 1 .. ``max_jobs``."""
    return max(1, min(max_jobs, free_mb // job_mem_mb))


def jobs_per_gpu(gpus: Sequence[str], value: str | None = None, job_mem_mb: str | None = None,
                 max_jobs: str | None = None, env: Mapping[str, str] | None = None, log=None) -> dict[str, int]:
    """Slots of each GPU, from the flags (``value`` ...) or else the environment; UsageError on bad values."""
    env = os.environ if env is None else env

    def pick(flag_value, flag, var, default):
        if flag_value is not None:
            return flag_value, flag
        if env.get(var, "").strip():
            return env[var], f"${var}"
        return default, flag

    raw, name = pick(value, "--jobs-per-gpu", ENV_JOBS, "1")
    n = parse_jobs_per_gpu(raw, name)
    raw_mem, name_mem = pick(job_mem_mb, "--job-mem-mb", ENV_JOB_MEM, str(DEFAULT_JOB_MEM_MB))
    raw_max, name_max = pick(max_jobs, "--max-jobs-per-gpu", ENV_MAX_JOBS, str(DEFAULT_MAX_JOBS))
    mem, cap = _positive_int(raw_mem, name_mem), _positive_int(raw_max, name_max)  # checked even when unused
    if n != "auto" or not gpus:
        return {g: n for g in gpus}
    free = free_memory_mb(gpus, env)
    if log is not None and len(free) < len(gpus):
        log(f"gpu_slots: free memory of GPU(s) {', '.join(g for g in gpus if g not in free)} unknown; 1 job each")
    return {g: auto_jobs(free[g], mem, cap) if g in free else 1 for g in gpus}


def disabled_reason(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if env.get(ENV_SWITCH, "").lower() in ("off", "0", "false", "no"):
        return f"${ENV_SWITCH}={env[ENV_SWITCH]}"
    if env.get("SLURM_JOB_ID"):
        return "running under SLURM (the scheduler binds the GPUs)"
    return None


def default_lock_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_LOCK_DIR):
        return Path(env[ENV_LOCK_DIR])
    return Path(tempfile.gettempdir()) / "pmtrec-gpu-slots"


def _lock_name(gpu: str, slot: int = 0) -> str:
    # slot 0 keeps the one-job-per-GPU name, so old and new wrappers never share a slot
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu) + (f".slot{slot}" if slot else "") + ".lock"


def _try_lock(path: Path) -> int | None:
    """Open-or-create ``path`` and take its exclusive lock without blocking; the fd or None."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _stamp(fd: int, gpu: str, slot: int) -> None:
    info = (f"pid={os.getpid()} host={socket.gethostname()} gpu={gpu} slot={slot} "
            f"since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)


def _scan(gpus: Sequence[str], slots: Mapping[str, int], lock_dir: Path) -> Slot | None:
    """One look at every slot: a free slot of the GPU with the fewest held slots, or None.

    Counting needs a try-lock of every slot, which would make a concurrent scanner see a
    free slot as busy; the scan lock keeps scans one at a time (it is held for microseconds).
    """
    scan_fd = os.open(lock_dir / ".scan.lock", os.O_RDONLY | os.O_CREAT, 0o666)
    best: tuple[int, Slot] | None = None
    try:
        fcntl.flock(scan_fd, fcntl.LOCK_EX)
        for gpu in gpus:
            busy, free = 0, None
            for k in range(slots[gpu]):
                path = lock_dir / _lock_name(gpu, k)
                fd = _try_lock(path)
                if fd is None:
                    busy += 1
                elif free is None:
                    free = Slot(gpu=gpu, path=path, fd=fd, slot=k)
                else:
                    _unlock(fd)
            if free is None:
                continue
            if best is not None and busy >= best[0]:
                free.release()
                continue
            if best is not None:
                best[1].release()
            best = (busy, free)
            if busy == 0:  # an idle GPU: nothing can beat it
                break
    except BaseException:
        if best is not None:
            best[1].release()
        raise
    finally:
        os.close(scan_fd)  # also drops the scan lock
    return None if best is None else best[1]


def acquire(gpus: Sequence[str], lock_dir: str | os.PathLike | None = None, timeout: float | None = None,
            poll: float = 0.5, log=None, jobs_per_gpu: int | Mapping[str, int] = 1) -> Slot:
    """Take a free slot on the least-loaded of ``gpus``; wait up to ``timeout`` seconds (None: forever).

    ``jobs_per_gpu``: the slots of every GPU, or a {gpu: slots} mapping.
    """
    if not gpus:
        raise ValueError("acquire: no GPUs to choose from")
    slots = {g: jobs_per_gpu for g in gpus} if isinstance(jobs_per_gpu, int) else dict(jobs_per_gpu)
    if any(slots.get(g, 0) < 1 for g in gpus):
        raise ValueError(f"acquire: every GPU needs at least one slot, got {slots}")
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:  # shared by every user of the machine
        os.chmod(lock_dir, 0o1777)
    except OSError:
        pass
    total = sum(slots[g] for g in gpus)
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        slot = _scan(gpus, slots, lock_dir)
        if slot is not None:
            _stamp(slot.fd, slot.gpu, slot.slot)
            return slot
        if deadline is not None and time.monotonic() >= deadline:
            raise NoSlotError(f"no free GPU slot among {total} on GPU(s) {', '.join(gpus)} in {lock_dir} "
                              f"after {timeout:g}s")
        if log is not None and not announced:
            log(f"gpu_slots: all {total} GPU slot(s) in {lock_dir} are busy; waiting")
            announced = True
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pmtrec.gpu_slots",
        description="Run COMMAND on a free slot of a GPU (sets CUDA_VISIBLE_DEVICES); without GPUs, just run it.",
        epilog="Example: PMTREC_JOBS_PER_GPU=4 python -m pmtrec.gpu_slots -- pmtrec train --device auto ...")
    parser.add_argument("--gpus", help=f"GPU count or comma list of ids (default: ${ENV_GPUS}, "
                                       "$CUDA_VISIBLE_DEVICES, nvidia-smi)")
    parser.add_argument("--jobs-per-gpu", help=f"slots per GPU: an integer >= 1 or 'auto' (from free memory) "
                                               f"(default: ${ENV_JOBS} or 1)")
    parser.add_argument("--job-mem-mb", help=f"MiB of GPU memory one job needs, for 'auto' "
                                             f"(default: ${ENV_JOB_MEM} or {DEFAULT_JOB_MEM_MB})")
    parser.add_argument("--max-jobs-per-gpu", help=f"most slots per GPU for 'auto' "
                                                   f"(default: ${ENV_MAX_JOBS} or {DEFAULT_MAX_JOBS})")
    parser.add_argument("--lock-dir", help=f"lock folder (default: ${ENV_LOCK_DIR} or $TMPDIR/pmtrec-gpu-slots)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for a slot (default: forever)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="acquire, print the GPU id, release and exit (for testing)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and not args.print_only:
        parser.error("no COMMAND given")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    reason = disabled_reason()
    gpus = [] if reason else gpu_ids(args.gpus)
    try:  # bad values fail even where they are not used, so a typo is seen on the first run
        slots = jobs_per_gpu(gpus, args.jobs_per_gpu, args.job_mem_mb, args.max_jobs_per_gpu, log=log)
    except UsageError as exc:
        print(f"gpu_slots: error: {exc}", file=sys.stderr)
        return 2
    if not gpus:
        if args.print_only:
            print("none")
            return 0
        return _exec(command)
    try:
        slot = acquire(gpus, args.lock_dir, args.timeout, log=log, jobs_per_gpu=slots)
    except NoSlotError as exc:
        print(f"gpu_slots: error: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL
    if args.print_only:
        print(slot.gpu)
        slot.release()
        return 0
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # ids as nvidia-smi numbers them
    os.set_inheritable(slot.fd, True)  # the lock lives as long as COMMAND
    log(f"gpu_slots: {' '.join(command[:2])} on GPU {slot.gpu} slot {slot.slot + 1}/{slots[slot.gpu]} "
        f"(lock {slot.path})")
    return _exec(command)


def _exec(command: list[str]) -> int:
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"gpu_slots: error: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
