"""pmtrec.gpu_slots: N jobs per GPU, least-loaded GPU first, tested with fake GPUs (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmtrec import gpu_slots as gs


CLEARED = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gs.ENV_GPUS, gs.ENV_SWITCH, gs.ENV_JOBS, gs.ENV_JOB_MEM,
           gs.ENV_MAX_JOBS, gs.ENV_FREE_MB)


def run_wrapper(args: list[str], env_extra: dict[str, str], **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
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


# ----------------------------------------------------------------------------- N jobs per GPU
def hold_until(marker: Path) -> str:
    """A job that prints its GPU and holds its slot until ``marker`` exists."""
    return ("import os, time, pathlib; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); "
            f"[time.sleep(0.05) for _ in iter(lambda: pathlib.Path({str(marker)!r}).exists(), True)]")


def test_n_jobs_per_gpu_fill_every_gpu_before_a_second_slot(tmp_path):
    gpus = ["0", "1", "2"]
    held = [gs.acquire(gpus, tmp_path, timeout=0, jobs_per_gpu=2) for _ in range(6)]
    assert [s.gpu for s in held[:3]] == gpus and [s.gpu for s in held[3:]] == gpus  # 1+1+1, then 2+2+2
    assert [s.slot for s in held] == [0, 0, 0, 1, 1, 1]
    assert len({s.path for s in held}) == 6
    with pytest.raises(gs.NoSlotError, match="6 on GPU"):  # all N*G slots busy
        gs.acquire(gpus, tmp_path, timeout=0.1, poll=0.02, jobs_per_gpu=2)
    for s in held:
        s.release()


def test_a_new_job_goes_to_the_least_loaded_gpu_not_the_lowest_free_slot(tmp_path):
    held = {(s.gpu, s.slot): s for s in (gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu=3)
                                         for _ in range(5))}
    assert sorted(held) == [("0", 0), ("0", 1), ("0", 2), ("1", 0), ("1", 1)]
    held.pop(("0", 0)).release()  # GPU 0: 2 jobs, GPU 1: 2 jobs
    held.pop(("1", 0)).release()
    held.pop(("1", 1)).release()  # GPU 0: 2 jobs, GPU 1: none; slot 0 of GPU 0 is the first free file
    with gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu=3) as slot:
        assert (slot.gpu, slot.slot) == ("1", 0)
    # per-GPU slot counts (what `auto` gives): GPU 1 has a single slot
    with gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu={"0": 3, "1": 1}) as a, \
            gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu={"0": 3, "1": 1}) as b:
        assert (a.gpu, a.slot) == ("1", 0) and (b.gpu, b.slot) == ("0", 0)
        with pytest.raises(gs.NoSlotError):
            gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu={"0": 3, "1": 1})
    for s in held.values():
        s.release()


def test_four_processes_two_gpus_two_slots_land_two_and_two(tmp_path):
    marker, locks = tmp_path / "go", tmp_path / "locks"
    procs = [run_wrapper(["--lock-dir", str(locks), "--", sys.executable, "-c", hold_until(marker)],
                         {gs.ENV_GPUS: "2", gs.ENV_JOBS: "2"}) for _ in range(4)]
    try:
        seen = [p.stdout.readline().strip() for p in procs]
        assert sorted(seen) == ["0", "0", "1", "1"]
        # a fifth job finds all 2 x 2 slots busy: it waits, then gives up with EX_TEMPFAIL
        fifth = run_wrapper(["--print", "--timeout", "0.3", "--lock-dir", str(locks)],
                            {gs.ENV_GPUS: "2", gs.ENV_JOBS: "2"})
        _, err = fifth.communicate(timeout=30)
        assert fifth.returncode == 75 and "all 4 GPU slot(s)" in err and "no free GPU slot" in err
        # killing one holder frees its slot at once; the next job takes that GPU
        victim = procs[seen.index("1")]
        victim.kill()
        victim.communicate(timeout=10)
        again = run_wrapper(["--print", "--timeout", "5", "--lock-dir", str(locks)],
                            {gs.ENV_GPUS: "2", gs.ENV_JOBS: "2"})
        out, err = again.communicate(timeout=30)
        assert again.returncode == 0 and out.strip() == "1", err
    finally:
        marker.touch()
        for p in procs:
            p.communicate(timeout=30)
    assert all(p.returncode == 0 for p in procs if p is not victim)


def test_waits_when_every_slot_of_every_gpu_is_busy(tmp_path):
    held = [gs.acquire(["0"], tmp_path, timeout=0, jobs_per_gpu=2) for _ in range(2)]
    proc = run_wrapper(["--print", "--timeout", "20", "--jobs-per-gpu", "2", "--lock-dir", str(tmp_path)],
                       {gs.ENV_GPUS: "1"})
    time.sleep(0.6)
    assert proc.poll() is None  # still waiting
    held[1].release()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.strip() == "0" and "busy" in err
    held[0].release()


def test_default_is_one_job_per_gpu_with_the_old_lock_file(tmp_path):
    with gs.acquire(["0"], tmp_path, timeout=0) as slot:  # default jobs_per_gpu=1
        assert slot.path.name == "gpu-0.lock"
        proc = run_wrapper(["--print", "--timeout", "0", "--lock-dir", str(tmp_path)], {gs.ENV_GPUS: "1"})
        proc.communicate(timeout=30)
        assert proc.returncode == 75
    assert gs.jobs_per_gpu(["0", "1"], env={}) == {"0": 1, "1": 1}


@pytest.mark.parametrize("value, parsed", [("1", 1), ("4", 4), (" 3 ", 3), ("auto", "auto"), ("AUTO", "auto")])
def test_parse_jobs_per_gpu(value, parsed):
    assert gs.parse_jobs_per_gpu(value) == parsed


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "", "2,3"])
def test_bad_jobs_per_gpu_names_its_source(value):
    with pytest.raises(gs.UsageError, match=f"^{gs.ENV_JOBS}="):
        gs.parse_jobs_per_gpu(value)
    with pytest.raises(gs.UsageError, match="^--jobs-per-gpu="):
        gs.jobs_per_gpu(["0"], value, env={})


def test_flags_beat_the_environment():
    env = {gs.ENV_JOBS: "3", gs.ENV_FREE_MB: "10000", gs.ENV_JOB_MEM: "1000", gs.ENV_MAX_JOBS: "4"}
    assert gs.jobs_per_gpu(["0"], env=env) == {"0": 3}
    assert gs.jobs_per_gpu(["0"], "2", env=env) == {"0": 2}
    assert gs.jobs_per_gpu(["0"], "auto", env=env) == {"0": 4}  # 10 fit, capped by $PMTREC_MAX_JOBS_PER_GPU
    assert gs.jobs_per_gpu(["0"], "auto", max_jobs="20", env=env) == {"0": 10}
    assert gs.jobs_per_gpu(["0"], "auto", job_mem_mb="2500", env=env) == {"0": 4}


def test_auto_from_fake_free_memory():
    env = {gs.ENV_JOBS: "auto", gs.ENV_FREE_MB: "81000,5000,700"}
    mem, cap = gs.DEFAULT_JOB_MEM_MB, gs.DEFAULT_MAX_JOBS
    got = gs.jobs_per_gpu(["0", "1", "2"], env=env)
    assert got == {"0": min(cap, 81000 // mem), "1": 5000 // mem, "2": 1}  # capped, fits, at least one
    assert got["0"] == cap and 1 < got["1"] < cap
    assert gs.jobs_per_gpu(["0", "1"], env={**env, gs.ENV_FREE_MB: "9000"}) == {"0": 4, "1": 4}  # one for all
    assert [gs.auto_jobs(f, 1000, 8) for f in (0, 999, 1000, 7999, 8000, 10**6)] == [1, 1, 1, 7, 8, 8]


def test_auto_through_the_cli_gives_each_gpu_its_own_slot_count(tmp_path):
    env = {gs.ENV_GPUS: "2", gs.ENV_JOBS: "auto", gs.ENV_FREE_MB: "4500,1000"}  # 2 jobs fit on GPU 0, 1 on GPU 1
    held = [gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu={"0": 2, "1": 1}) for _ in range(2)]
    proc = run_wrapper(["--print", "--timeout", "0", "--lock-dir", str(tmp_path)], env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "0", err  # GPU 0's second slot
    for s in held:
        s.release()
    held = [gs.acquire(["0", "1"], tmp_path, timeout=0, jobs_per_gpu={"0": 2, "1": 1}) for _ in range(3)]
    proc = run_wrapper(["--print", "--timeout", "0", "--lock-dir", str(tmp_path)], env)
    proc.communicate(timeout=30)
    assert proc.returncode == 75  # 2 + 1 slots, all held
    for s in held:
        s.release()


def test_auto_reads_nvidia_smi(tmp_path, monkeypatch):
    """A fake nvidia-smi on PATH: the GPU list and each GPU's free memory come from it."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncase "$1" in\n'
                    '  --query-gpu=index) printf "0\\n1\\n" ;;\n'
                    '  --query-gpu=index,uuid,memory.free) printf "0, GPU-aa, 700\\n1, GPU-bb, 6500\\n" ;;\n'
                    '  *) exit 9 ;;\nesac\n')
    fake.chmod(0o755)
    path = f"{fake.parent}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    assert gs.gpu_ids(env={}) == ["0", "1"]
    assert gs.free_memory_mb(["1", "GPU-aa", "7"], env={}) == {"1": 6500, "GPU-aa": 700}  # by index or UUID
    logged = []
    assert gs.jobs_per_gpu(["0", "1", "7"], "auto", env={}, log=logged.append) == {"0": 1, "1": 3, "7": 1}
    assert len(logged) == 1 and "GPU(s) 7 unknown" in logged[0]
    held = [gs.acquire(["0", "1"], tmp_path / "locks", timeout=0, jobs_per_gpu={"0": 1, "1": 3}) for _ in range(3)]
    assert sorted(s.gpu for s in held) == ["0", "1", "1"]
    proc = run_wrapper(["--print", "--timeout", "0", "--jobs-per-gpu", "auto", "--lock-dir", str(tmp_path / "locks")],
                       {"PATH": path})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "1", err  # the third slot of GPU 1
    for s in held:
        s.release()


@pytest.mark.parametrize("args, env, named", [
    ([], {gs.ENV_JOBS: "0"}, f"${gs.ENV_JOBS}='0'"),
    ([], {gs.ENV_JOBS: "-1"}, f"${gs.ENV_JOBS}='-1'"),
    (["--jobs-per-gpu", "x"], {gs.ENV_JOBS: "2"}, "--jobs-per-gpu='x'"),
    (["--jobs-per-gpu", "auto"], {gs.ENV_JOB_MEM: "-5"}, f"${gs.ENV_JOB_MEM}='-5'"),
    (["--job-mem-mb", "0"], {}, "--job-mem-mb='0'"),
    (["--max-jobs-per-gpu", "many"], {}, "--max-jobs-per-gpu='many'"),
    ([], {gs.ENV_JOBS: "auto", gs.ENV_FREE_MB: "1000,lots"}, f"{gs.ENV_FREE_MB}='1000,lots'"),
    ([], {gs.ENV_JOBS: "auto", gs.ENV_FREE_MB: "1,2,3"}, f"{gs.ENV_FREE_MB}='1,2,3'"),
])
def test_bad_values_fail_in_one_line_and_run_nothing(tmp_path, args, env, named):
    flag = tmp_path / "ran"
    proc = run_wrapper([*args, "--lock-dir", str(tmp_path / "locks"), "--", sys.executable, "-c",
                        f"open({str(flag)!r}, 'w')"], {gs.ENV_GPUS: "2", **env})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.count("\n") == 1 and err.startswith("gpu_slots: error: ") and named in err, err
    assert not flag.exists() and not (tmp_path / "locks").exists()
