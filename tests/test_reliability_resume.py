"""Fault injection on `pmtrec train --checkpoint`: SIGKILL and SIGTERM mid-epoch and during a
checkpoint save, then the same command again; the result must equal an uninterrupted run's
(bitwise on CPU). Also: every method resumes exactly (in-process), two separate processes give
identical results, and a corrupt, truncated or foreign checkpoint is a one-line error.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from pmtrec.cli import main
from conftest import tiny_config
from pmtrec.methods import METHODS
from pmtrec.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 5
# pmtrec (stateful method, all four tasks) on tiny with small batches: about 1 s per epoch.
TRAIN_ARGS = ["train", "--set", "dataset.synthetic.size=tiny", "--set", "train.batch_size=32",
              "--set", "train.lr=0.01", "--set", "train.patience=100", "--set", "train.progress=false",
              "--epochs", str(EPOCHS), "--threads", "1", "--device", "cpu", "--method", "pmtrec"]
TIMING_KEYS = {"epoch_time_s", "wall_time_s", "memory", "pid", "host"}
CURVE_TIMING_KEYS = {"train_time_s", "eval_time_s"}

# Runs the CLI; with SLOW_SAVE_EPOCH=N, the checkpoint save of epoch N writes its temporary file,
# touches <SAVE_MARKERS>/saving-N and then sleeps, so that a signal lands inside the save.
RUNNER = textwrap.dedent("""
    import os, sys, time
    import torch

    slow_epoch = int(os.environ.get("SLOW_SAVE_EPOCH", "-1"))
    _save = torch.save

    def save(obj, f, *args, **kwargs):
        _save(obj, f, *args, **kwargs)
        epoch = obj.get("epoch") if isinstance(obj, dict) else None
        if epoch == slow_epoch:
            f.flush()
            open(os.path.join(os.environ["SAVE_MARKERS"], f"saving-{epoch}"), "w").close()
            time.sleep(60)

    torch.save = save
    from pmtrec.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def comparable(result: dict) -> dict:
    """The result without wall-clock times, memory and process identity."""
    out = {k: v for k, v in result.items() if k not in TIMING_KEYS}
    out["curves"] = [{k: v for k, v in c.items() if k not in CURVE_TIMING_KEYS} for c in result["curves"]]
    return out


class Run:
    """One `pmtrec train` process writing <dir>/result.json and <dir>/run.ckpt."""

    def __init__(self, folder: Path, tag: str, env: dict | None = None):
        self.folder, self.tag = folder, tag
        self.out, self.ckpt = folder / "result.json", folder / "run.ckpt"
        self.stdout, self.stderr = folder / f"{tag}.out", folder / f"{tag}.err"
        (folder / "markers").mkdir(parents=True, exist_ok=True)
        runner = folder / "runner.py"
        runner.write_text(RUNNER)
        e = {k: v for k, v in os.environ.items() if not k.startswith("PMTREC_")}
        e.update(PYTHONUNBUFFERED="1", SAVE_MARKERS=str(folder / "markers"), **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(runner), *TRAIN_ARGS, "--out", str(self.out), "--checkpoint", str(self.ckpt)],
            stdout=open(self.stdout, "w"), stderr=open(self.stderr, "w"), cwd=folder, env=e,
            start_new_session=True)

    def log(self) -> str:
        return f"[{self.tag} stdout]\n{self.stdout.read_text()}\n[{self.tag} stderr]\n{self.stderr.read_text()}"

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    def wait_until(self, predicate, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"process ended (rc {self.proc.returncode}) before the fault:\n{self.log()}")
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"timed out waiting:\n{self.log()}")

    def checkpoint_epoch(self) -> int:
        try:
            return int(torch.load(self.ckpt, weights_only=True)["epoch"])
        except (FileNotFoundError, RuntimeError, EOFError):
            return 0

    def result(self) -> dict:
        return json.loads(self.out.read_text())


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted run, and a second one in another process (different hash seed) at the same time."""
    root = tmp_path_factory.mktemp("reference")
    runs = [Run(root / "a", "a", {"PYTHONHASHSEED": "1"}), Run(root / "b", "b", {"PYTHONHASHSEED": "2"})]
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda r: r.wait(), runs))
    for run, rc in zip(runs, codes):
        assert rc == 0, run.log()
        assert "resumed" not in run.stdout.read_text()
    return {"a": runs[0].result(), "b": runs[1].result()}


# ------------------------------------------------------------------------------ determinism
@pytest.mark.slow
def test_two_processes_give_bitwise_identical_results(reference):
    a, b = comparable(reference["a"]), comparable(reference["b"])
    assert a["epochs_run"] == EPOCHS and a["skipped_batches"] == 0
    assert a == b  # every metric, per-group metric, curve, loss and weight, bit for bit


# ------------------------------------------------------------------------------ SIGKILL / SIGTERM
@pytest.mark.slow
def test_sigkill_mid_epoch_twice_then_resume_matches_uninterrupted(tmp_path, reference):
    killed_at = []
    for tag in ("first", "second"):
        run = Run(tmp_path, tag)
        after = killed_at[-1] if killed_at else 0
        run.wait_until(lambda: run.checkpoint_epoch() > after)  # at least one more epoch saved
        time.sleep(0.4)                                         # into the next epoch
        os.killpg(run.proc.pid, signal.SIGKILL)
        assert run.wait() == -signal.SIGKILL
        assert not run.out.exists()
        killed_at.append(run.checkpoint_epoch())
        assert 1 <= killed_at[-1] < EPOCHS, run.log()
    final = Run(tmp_path, "final")
    assert final.wait() == 0, final.log()
    assert f"resumed from {final.ckpt} at epoch {killed_at[-1]}" in final.stdout.read_text()
    assert comparable(final.result()) == comparable(reference["a"])
    assert temp_files(tmp_path) == []


@pytest.mark.slow
def test_sigterm_mid_epoch_exits_cleanly_then_resume_matches_uninterrupted(tmp_path, reference):
    run = Run(tmp_path, "term")
    run.wait_until(lambda: run.checkpoint_epoch() >= 1)
    time.sleep(0.4)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.log()
    err = run.stderr.read_text()
    assert err.strip() == f"pmtrec: terminated (SIGTERM); rerun the same command to resume from {run.ckpt}"
    assert not run.out.exists() and temp_files(tmp_path) == []
    epoch = run.checkpoint_epoch()
    assert 1 <= epoch < EPOCHS
    final = Run(tmp_path, "final")
    assert final.wait() == 0, final.log()
    assert f"resumed from {final.ckpt} at epoch {epoch}" in final.stdout.read_text()
    assert comparable(final.result()) == comparable(reference["a"])


@pytest.mark.slow
def test_signals_during_a_checkpoint_save_never_corrupt_it(tmp_path, reference):
    # SIGTERM while epoch 2's checkpoint is being written: the temporary file is removed,
    # the epoch-1 checkpoint stays intact.
    run = Run(tmp_path, "term-in-save", {"SLOW_SAVE_EPOCH": "2"})
    run.wait_until(lambda: (tmp_path / "markers" / "saving-2").exists())
    assert len(temp_files(tmp_path)) == 1  # the save in flight
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.log()
    assert "Traceback" not in run.stderr.read_text()
    assert temp_files(tmp_path) == [] and run.checkpoint_epoch() == 1

    # SIGKILL while epoch 3's checkpoint is being written: its temporary file stays behind, the
    # checkpoint (epoch 2) is intact; the next run removes the stale file and resumes.
    run = Run(tmp_path, "kill-in-save", {"SLOW_SAVE_EPOCH": "3"})
    run.wait_until(lambda: (tmp_path / "markers" / "saving-3").exists())
    os.killpg(run.proc.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    assert len(temp_files(tmp_path)) == 1 and run.checkpoint_epoch() == 2

    final = Run(tmp_path, "final")
    assert final.wait() == 0, final.log()
    assert f"resumed from {final.ckpt} at epoch 2" in final.stdout.read_text()
    assert comparable(final.result()) == comparable(reference["a"])
    assert temp_files(tmp_path) == []


# ------------------------------------------------------------------------------ every method, in-process
class Killed(BaseException):
    pass


def tiny_cfg(method: str) -> dict:
    return tiny_config("train.lr=0.01", f"train.method={method}")


@pytest.mark.parametrize("method", sorted(METHODS) + ["pmtrec-no-focus", "pmtrec-shuffled"])
def test_every_method_resumes_exactly(method, tiny_data, tmp_path, monkeypatch):
    quiet = lambda *_: None  # noqa: E731
    full = Trainer(tiny_cfg(method), tiny_data).fit(log=quiet)

    ckpt = tmp_path / "run.ckpt"
    save = Trainer.save_checkpoint

    def save_then_die(self, path):
        save(self, path)
        if self.epoch == 1:
            raise Killed  # the process dies right after the first checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        Trainer(tiny_cfg(method), tiny_data).fit(checkpoint=ckpt, log=quiet)
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    resumed = Trainer(tiny_cfg(method), tiny_data).fit(checkpoint=ckpt, log=quiet)
    assert comparable(resumed) == comparable(full)


def test_resume_ignores_threads_and_progress(tiny_data, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    cfg = tiny_cfg("ew")
    cfg["train"]["epochs"] = 1
    Trainer(cfg, tiny_data).fit(checkpoint=ckpt, log=lambda *_: None)
    other = tiny_cfg("ew")
    other["train"].update(epochs=1, threads=2, progress=True)
    lines = []
    Trainer(other, tiny_data).fit(checkpoint=ckpt, log=lines.append)
    assert lines and lines[0] == f"resumed from {ckpt} at epoch 1"
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------ corrupt checkpoints
def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


CLI_TINY = ["train", "--set", "dataset.synthetic.size=tiny", "--set", "train.batch_size=256", "--epochs", "2",
            "--threads", "1", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    rc, _, err = run_cli(*CLI_TINY, "--checkpoint", str(path))
    assert rc == 0, err
    return path.read_bytes()


def test_quiet_cli_still_says_it_resumed(good_checkpoint, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(good_checkpoint)
    rc, out, err = run_cli(*CLI_TINY, "--checkpoint", str(ckpt), "--out", str(tmp_path / "r.json"))
    assert rc == 0, err
    assert f"resumed from {ckpt} at epoch 2" in out
    assert "epoch   1" not in out  # -q: no per-epoch lines


class Foreign:
    """An arbitrary pickled object: never unpickled (weights_only loading)."""


def _edited(good: bytes, tmp: Path, **changes) -> bytes:
    src = tmp / "src.ckpt"
    src.write_bytes(good)
    state = torch.load(src, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


CORRUPT = [
    ("truncated to half", lambda g, t: g[: len(g) // 2], [], "unreadable checkpoint"),
    ("truncated to 10 bytes", lambda g, t: g[:10], [], "unreadable checkpoint"),
    ("empty file", lambda g, t: b"", [], "unreadable checkpoint"),
    ("random bytes", lambda g, t: os.urandom(4096), [], "unreadable checkpoint"),
    ("a JSON file", lambda g, t: b'{"epoch": 1}', [], "unreadable checkpoint"),
    ("a saved tensor", lambda g, t: _saved(torch.zeros(3)), [], "not a pmtrec checkpoint"),
    ("an arbitrary pickle", lambda g, t: _saved({"epoch": 1, "optimizers": [], "x": Foreign()}), [],
     "unreadable checkpoint (UnpicklingError"),
    ("a future format", lambda g, t: _edited(g, t, format="pmtrec-checkpoint/99"), [],
     "checkpoint format 'pmtrec-checkpoint/99', expected 'pmtrec-checkpoint/1'"),
    ("a key missing", lambda g, t: _edited(g, t, method=None), [], "checkpoint does not match this run (KeyError"),
    ("a model of the wrong shape", lambda g, t: _edited(g, t, model={"user": torch.zeros(2, 2),
                                                                     "item": torch.zeros(2, 2)}), [],
     "checkpoint does not match this run (RuntimeError"),
    ("another config", lambda g, t: g, ["--set", "train.lr=0.5"], "checkpoint belongs to another config"),
    ("another dataset", lambda g, t: _edited(g, t, data="0123456789abcdef"), [],
     "checkpoint belongs to another dataset"),
    ("another device", lambda g, t: _edited(g, t, device_type="cuda"), [],
     "checkpoint was written on cuda, this run is on cpu"),
]


@pytest.mark.parametrize("name, make, extra, words", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_bad_checkpoint_is_a_one_line_error(name, make, extra, words, good_checkpoint, tmp_path):
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "result.json"
    content = make(good_checkpoint, tmp_path)
    ckpt.write_bytes(content)
    rc, stdout, stderr = run_cli(*CLI_TINY, *extra, "--checkpoint", str(ckpt), "--out", str(out))
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"pmtrec: error: {ckpt}: ") and words in lines[0], lines[0]
    assert lines[0].endswith("delete it to start the run afresh")
    assert not out.exists() and ckpt.read_bytes() == content  # nothing written, the checkpoint kept


def test_checkpoint_path_that_is_a_directory(tmp_path):
    rc, _, stderr = run_cli(*CLI_TINY, "--checkpoint", str(tmp_path))
    assert rc == 2 and len(stderr.strip().splitlines()) == 1 and str(tmp_path) in stderr
