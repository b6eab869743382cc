"""One GPU per job on a multi-GPU workstation: ``python -m pmtrec.gpu_slots -- COMMAND ...``.

Snakemake runs several training jobs at once; without help every one of them would use
GPU 0. This wrapper takes a free *slot* - one lock file per GPU under a lock folder,
held with ``fcntl.flock`` - sets ``CUDA_VISIBLE_DEVICES`` to that GPU and replaces itself
with ``COMMAND`` (``exec``), which inherits the locked file descriptor. The kernel drops
the lock when the command exits, however it exits (even ``kill -9``), so a lock file
left by a dead process is simply free again: stale locks reclaim themselves. The lock
file holds the pid/host of its last owner, for people reading it.

Which GPUs (in this order of precedence):

* ``--gpus SPEC`` or ``$PMTREC_GPUS``: a count ``N`` (GPUs ``0..N-1``) or a comma list of
  ids (``0,2,3``); ``0`` or an empty list means none. Also the way to test without GPUs.
* ``$CUDA_VISIBLE_DEVICES`` when set: the GPUs already visible to this process.
* ``nvidia-smi --query-gpu=index``: every GPU of the machine.

Nothing is done - ``COMMAND`` runs as is - when there is no GPU, or under SLURM
(``$SLURM_JOB_ID``: the scheduler already binds the job's GPUs), or when
``$PMTREC_GPU_SLOTS=off``. When every slot is taken the wrapper waits (``--timeout``
seconds, default forever), so it also works when Snakemake was not told how many GPUs
there are (``--resources gpu=N`` keeps jobs from waiting here).

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

__all__ = ["Slot", "acquire", "gpu_ids", "default_lock_dir", "disabled_reason", "main"]

ENV_GPUS = "PMTREC_GPUS"
ENV_LOCK_DIR = "PMTREC_GPU_LOCK_DIR"
ENV_SWITCH = "PMTREC_GPU_SLOTS"


class NoSlotError(RuntimeError):
    """No slot became free within the timeout."""


@dataclass
class Slot:
    """A held GPU slot: ``gpu`` is the id to put in CUDA_VISIBLE_DEVICES."""

    gpu: str
    path: Path
    fd: int

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


def _nvidia_smi_ids() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


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


def _lock_name(gpu: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu) + ".lock"


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


def _stamp(fd: int, gpu: str) -> None:
    info = f"pid={os.getpid()} host={socket.gethostname()} gpu={gpu} since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)


def acquire(gpus: Sequence[str], lock_dir: str | os.PathLike | None = None, timeout: float | None = None,
            poll: float = 0.5, log=None) -> Slot:
    """Take the first free slot among ``gpus``; wait up to ``timeout`` seconds (None: forever)."""
    if not gpus:
        raise ValueError("acquire: no GPUs to choose from")
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:  # shared by every user of the machine
        os.chmod(lock_dir, 0o1777)
    except OSError:
        pass
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        for gpu in gpus:
            path = lock_dir / _lock_name(gpu)
            fd = _try_lock(path)
            if fd is not None:
                _stamp(fd, gpu)
                return Slot(gpu=gpu, path=path, fd=fd)
        if deadline is not None and time.monotonic() >= deadline:
            raise NoSlotError(f"no free GPU slot among {', '.join(gpus)} in {lock_dir} after {timeout:g}s")
        if log is not None and not announced:
            log(f"gpu_slots: all {len(gpus)} GPU slot(s) in {lock_dir} are busy; waiting")
            announced = True
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pmtrec.gpu_slots",
        description="Run COMMAND on one free GPU (sets CUDA_VISIBLE_DEVICES); without GPUs, just run it.",
        epilog="Example: python -m pmtrec.gpu_slots -- pmtrec train --device auto ...")
    parser.add_argument("--gpus", help=f"GPU count or comma list of ids (default: ${ENV_GPUS}, "
                                       "$CUDA_VISIBLE_DEVICES, nvidia-smi)")
    parser.add_argument("--lock-dir", help=f"lock folder (default: ${ENV_LOCK_DIR} or $TMPDIR/pmtrec-gpu-slots)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for a slot (default: forever)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="acquire, print the GPU id, release and exit (for testing)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and not args.print_only:
        parser.error("no COMMAND given")

    reason = disabled_reason()
    gpus = [] if reason else gpu_ids(args.gpus)
    if not gpus:
        if args.print_only:
            print("none")
            return 0
        return _exec(command)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        slot = acquire(gpus, args.lock_dir, args.timeout, log=log)
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
    log(f"gpu_slots: {' '.join(command[:2])} on GPU {slot.gpu} (lock {slot.path})")
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
