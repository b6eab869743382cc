"""pmtrec.gpu_slots: one GPU per concurrent job, tested with fake GPU counts (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmtrec import gpu_slots as gs


def run_wrapper(args: list[str], env_extra: dict[str, str], **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gs.ENV_GPUS,
                                                            gs.ENV_SWITCH)}
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-m", "pmtrec.gpu_slots", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize("spec, ids", [("3", ["0", "1", "2"]), ("0", []), ("", []), ("none", []),
                                       ("0,2", ["0", "2"]), ("1,", ["1"]), ("GPU-ab12,GPU-cd34", ["GPU-ab12", "GPU-cd34"])])
def test_parse_gpus(spec, ids):
    assert gs.parse_gpus(spec) == ids


def test_gpu_ids_precedence():
    assert gs.gpu_ids("2", env={gs.ENV_GPUS: "5", "CUDA_VISIBLE_DEVICES": "3"}) == ["0", "1"]
    assert gs.gpu_ids(env={gs.ENV_GPUS: "0,3", "CUDA_VISIBLE_DEVICES": "3"}) == ["0", "3"]
    assert gs.gpu_ids(env={"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert gs.gpu_ids(env={"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gs.gpu_ids(env={"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_disabled_under_slurm_or_switch():
    assert gs.disabled_reason({}) is None
    assert "SLURM" in gs.disabled_reason({"SLURM_JOB_ID": "42"})
    assert gs.disabled_reason({gs.ENV_SWITCH: "off"})


def test_concurrent_acquisitions_get_distinct_slots(tmp_path):
    held = [gs.acquire(["0", "1", "2"], tmp_path, timeout=0) for _ in range(3)]
    assert sorted(s.gpu for s in held) == ["0", "1", "2"]
    with pytest.raises(gs.NoSlotError):
        gs.acquire(["0", "1", "2"], tmp_path, timeout=0.2, poll=0.05)
    held[1].release()
    again = gs.acquire(["0", "1", "2"], tmp_path, timeout=0)
    assert again.gpu == held[1].gpu
    for s in held + [again]:
        s.release()


def test_waits_for_a_slot_to_free(tmp_path):
    first = gs.acquire(["0"], tmp_path, timeout=0)
    t0 = time.monotonic()
    proc = run_wrapper(["--print", "--timeout", "20", "--lock-dir", str(tmp_path)], {gs.ENV_GPUS: "1"})
    time.sleep(0.8)
    assert proc.poll() is None  # still waiting
    first.release()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.strip() == "0" and "busy" in err and time.monotonic() - t0 >= 0.8


def test_processes_in_parallel_land_on_distinct_gpus(tmp_path):
    """Four jobs on four fake GPUs, all running at once: four different CUDA_VISIBLE_DEVICES."""
    marker = tmp_path / "go"
    script = ("import os, time, pathlib; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); "
              f"[time.sleep(0.05) for _ in iter(lambda: pathlib.Path({str(marker)!r}).exists(), True)]")
    procs = [run_wrapper(["--lock-dir", str(tmp_path / "locks"), "--", sys.executable, "-c", script],
                         {gs.ENV_GPUS: "4"}) for _ in range(4)]
    seen = [p.stdout.readline().strip() for p in procs]  # every job holds its GPU until `go` exists
    marker.touch()
    for p in procs:
        p.communicate(timeout=30)
        assert p.returncode == 0
    assert sorted(seen) == ["0", "1", "2", "3"]


def test_lock_is_held_by_the_exec_command_and_released_when_it_dies(tmp_path):
    proc = run_wrapper(["--lock-dir", str(tmp_path), "--", sys.executable, "-c",
                        "import time; print('up', flush=True); time.sleep(60)"], {gs.ENV_GPUS: "1"})
    assert proc.stdout.readline().strip() == "up"
    with pytest.raises(gs.NoSlotError):
        gs.acquire(["0"], tmp_path, timeout=0)
    lock = (tmp_path / "gpu-0.lock").read_text()
    assert f"pid={proc.pid} " in lock  # exec: the command itself holds the lock
    proc.kill()  # no chance to clean up
    proc.communicate(timeout=10)
    slot = gs.acquire(["0"], tmp_path, timeout=5, poll=0.05)
    assert slot.gpu == "0"
    slot.release()


def test_stale_lock_file_of_a_dead_pid_is_reclaimed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "gpu-0.lock").write_text(f"pid={pid} host=elsewhere gpu=0 since=yesterday\n")
    (tmp_path / "gpu-1.lock").write_text(f"pid={pid} host=elsewhere gpu=1 since=yesterday\n")
    with gs.acquire(["0", "1"], tmp_path, timeout=0) as slot:
        assert slot.gpu == "0"
        assert f"pid={os.getpid()} " in Path(slot.path).read_text()


def test_no_gpu_runs_the_command_unchanged(tmp_path):
    proc = run_wrapper(["--lock-dir", str(tmp_path), "--", sys.executable, "-c",
                        "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))"], {gs.ENV_GPUS: "0"})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "unset"
    assert not any(tmp_path.iterdir())


def test_slurm_job_is_left_alone(tmp_path):
    proc = run_wrapper(["--lock-dir", str(tmp_path), "--", sys.executable, "-c",
                        "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))"],
                       {gs.ENV_GPUS: "2", "SLURM_JOB_ID": "7"})
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "unset" and not any(tmp_path.iterdir())


def test_exit_status_and_missing_command(tmp_path):
    proc = run_wrapper(["--lock-dir", str(tmp_path), "--", sys.executable, "-c", "raise SystemExit(3)"],
                       {gs.ENV_GPUS: "1"})
    proc.communicate(timeout=30)
    assert proc.returncode == 3
    proc = run_wrapper(["--lock-dir", str(tmp_path), "--", "no-such-command-pmtrec"], {gs.ENV_GPUS: "1"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 127 and "cannot run no-such-command-pmtrec" in err
