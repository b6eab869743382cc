"""The workflow on a real SLURM cluster, through profiles/slurm.

Needs the single-node cluster of .ci/slurm (``sudo .ci/slurm/up``) and ``PMTREC_SLURM=1``;
skipped otherwise. What is checked:

* a plain ``sbatch`` job runs and shows in ``sacct`` with its account, partition and comment
  (the Snakemake plugin learns job states from ``sacct``), a GPU request is scheduled on the
  ``gpu`` partition (fake GPUs: no CUDA inside the job), and a failing job is FAILED in sacct;
* ``snakemake --profile profiles/slurm --configfile .test/config/small.yaml all`` on a copy
  of the project: every non-local job ran as a SLURM job (sacct has one row per submission,
  with the rule name in the comment the plugin sets), the results equal a local run's
  (training is deterministic on the CPU given the seed), and a training job that fails once on
  the cluster (injected) is reported and retried per the profile's ``retries``.

Cluster names come from the environment (defaults are .ci/slurm's): PMTREC_SLURM_ACCOUNT
(pmtrec), PMTREC_SLURM_PARTITION (cpu), PMTREC_SLURM_GPU_PARTITION (gpu). The profile's own
partition/account values are replaced by these in the copy (GPU-looking partition names by the
gpu partition, every other by the cpu one).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = os.environ.get("PMTREC_SLURM_ACCOUNT", "pmtrec")
CPU_PARTITION = os.environ.get("PMTREC_SLURM_PARTITION", "cpu")
GPU_PARTITION = os.environ.get("PMTREC_SLURM_GPU_PARTITION", "gpu")
# The profile under test; PMTREC_SLURM_PROFILE=DIR tries another one (copied into the project copy).
PROFILE_SOURCE = Path(os.environ.get("PMTREC_SLURM_PROFILE", "profiles/slurm"))
PROFILE = PROFILE_SOURCE if not PROFILE_SOURCE.is_absolute() else Path("profiles/_under_test")
TEST_CONFIG = Path(".test/config/small.yaml")  # smaller than the CI config: each SLURM job pays a start-up
WORKFLOW_TIMEOUT = int(os.environ.get("PMTREC_SLURM_WORKFLOW_TIMEOUT", "1200"))
# The one training job that fails on its first attempt (by its --out argument).
FAIL_MATCH = "--embeddings results/runs/"  # a main training job of a trained method (rule train)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("PMTREC_SLURM") != "1",
                       reason="needs a SLURM cluster: run .ci/slurm/up, then set PMTREC_SLURM=1"),
]

SACCT_FIELDS = ["JobIDRaw", "JobName", "Comment", "State", "Partition", "Account", "ExitCode", "AllocTRES"]


# ----------------------------------------------------------------------------------- helpers
def run(cmd, timeout=120, **kw):
    """Run a command, fail the test with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        pytest.fail(f"{cmd!r} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                    f"stderr:\n{proc.stderr[-3000:]}")
    return proc.stdout


def sacct(*selection: str) -> list[dict]:
    """Allocation rows (-X) of the last day's jobs matching the selection (-j ID / --name NAME)."""
    since = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    out = run(["sacct", "-X", "-n", "--parsable2", "--starttime", since, "--endtime", "now",
               "--format", ",".join(SACCT_FIELDS), *selection])
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line.strip()]
    for r in rows:
        r["State"] = r["State"].split()[0] if r["State"] else ""  # "CANCELLED by 0" -> "CANCELLED"
    return rows


def wait_for_sacct(jobid: str, timeout: float = 60) -> dict:
    """The job's sacct row once it has a final state (accounting records lag a little)."""
    t0 = time.monotonic()
    final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"}
    while True:
        rows = sacct("-j", jobid)
        # A job that ends quickly can first show as a stub (name "allocation", no partition)
        # until slurmdbd has the job's start record.
        if rows and rows[0]["State"] in final and rows[0]["Partition"]:
            return rows[0]
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"job {jobid} has no final state in sacct after {timeout}s: {rows}")
        time.sleep(1)


def sbatch(*args: str, timeout: int = 180) -> str:
    """Submit, wait for the end (--wait), return the job id; a failing job is not an error here."""
    proc = subprocess.run(["sbatch", "--parsable", "--wait", "-A", ACCOUNT, "-t", "5", *args],
                          capture_output=True, text=True, timeout=timeout)
    m = re.match(r"(\d+)", proc.stdout.strip())
    if not m:
        pytest.fail(f"sbatch {args!r} did not submit: {proc.stdout}{proc.stderr}")
    return m.group(1)


def copy_project(dest: Path) -> Path:
    """The project without its environment, history and outputs."""
    skip_top = {".git", ".venv", "results", "resources", "logs", ".snakemake", ".pytest_cache", "reports"}

    def ignore(directory, names):
        rel = Path(directory).resolve().relative_to(ROOT)
        out = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if rel == Path("."):
            out |= skip_top & set(names)
        if rel == Path("benchmarks"):
            out |= {"runs"} & set(names)
        return out

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    if (ROOT / "reports").is_dir():  # templates and the like; not the built PDFs
        shutil.copytree(ROOT / "reports", dest / "reports", ignore=shutil.ignore_patterns("*.pdf"))
    return dest


def cluster_partitions() -> set[str]:
    return set(run(["sinfo", "-h", "-o", "%R"]).split())


def _partition_name(name: str, partitions: set[str]) -> str:
    """A partition this cluster lacks -> its gpu partition if the name says GPU, else cpu."""
    if name in partitions:
        return name
    return GPU_PARTITION if "gpu" in name.lower() else CPU_PARTITION


def _adapt_value(key: str, value, partitions: set[str]):
    """A profile's slurm_partition / slurm_account value -> this cluster's names.

    Plain names and the quoted names inside a Python expression
    ("'cpu' if wildcards.method == 'mostpop' else 'gpu'") are mapped; the rest is kept.
    """
    if key == "slurm_account":
        return ACCOUNT
    if key != "slurm_partition":
        return value
    text = str(value).strip()
    if not re.search(r"['\"]", text):
        return _partition_name(text, partitions)

    def results(node):  # the values an expression can return (not what its tests compare)
        if isinstance(node, ast.IfExp):
            return ast.IfExp(test=node.test, body=results(node.body), orelse=results(node.orelse))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return ast.Constant(_partition_name(node.value, partitions))
        return node

    return ast.unparse(results(ast.parse(text, mode="eval").body))


def _adapt_assignment(text: str, partitions: set[str]) -> str:
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or key not in ("slurm_partition", "slurm_account"):
        return text
    value = value.strip()
    if key == "slurm_account" or not re.search(r"['\"]", value):
        return f"{key}={_adapt_value(key, value, partitions)!r}"
    return f"{key}={_adapt_value(key, value, partitions)}"


def adapt_profile(cfg: dict, partitions: set[str]) -> dict:
    """The profile with this cluster's partition and account names (everything else as is)."""
    cfg = dict(cfg)
    defaults = cfg.get("default-resources")
    if isinstance(defaults, dict) or defaults is None:
        defaults = {k: _adapt_value(k, v, partitions) for k, v in (defaults or {}).items()}
        defaults["slurm_account"] = ACCOUNT
    else:
        defaults = [_adapt_assignment(item, partitions) for item in defaults
                    if not str(item).strip().startswith("slurm_account")] + [f"slurm_account={ACCOUNT!r}"]
    cfg["default-resources"] = defaults
    per_rule = cfg.get("set-resources")
    if isinstance(per_rule, dict):
        cfg["set-resources"] = {rule: {k: _adapt_value(k, v, partitions) for k, v in (res or {}).items()}
                                for rule, res in per_rule.items()}
    elif isinstance(per_rule, list):
        out = []
        for item in per_rule:
            rule, _, assignment = str(item).partition(":")
            out.append(f"{rule}:{_adapt_assignment(assignment, partitions)}")
        cfg["set-resources"] = out
    return cfg


def profile_threads(profile: dict) -> dict[str, int]:
    """The profile's set-threads as {rule: n}."""
    value = profile.get("set-threads") or {}
    if isinstance(value, list):
        value = dict(str(item).split("=", 1) for item in value)
    return {str(rule): int(n) for rule, n in value.items()}


def result_metrics(path: Path) -> dict:
    """The deterministic part of a result JSON (not times, memory, host, pid)."""
    data = json.loads(path.read_text())
    return {k: data.get(k) for k in ("dataset", "method", "seed", "valid", "test", "best_epoch", "epochs_run",
                                     "config_hash")}


def assert_close(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ: {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def result_files(workdir: Path) -> dict[str, Path]:
    """Every training result JSON (main runs, tuning, ablation, sensitivity)."""
    return {str(p.relative_to(workdir)): p for kind in ("runs", "tune", "ablation", "sensitivity")
            for p in sorted((workdir / "results" / kind).rglob("*.json"))}


# -------------------------------------------------------------------------------- the cluster
def test_sbatch_job_runs_and_shows_in_sacct(tmp_path):
    out = tmp_path / "out.txt"
    jobid = sbatch("-p", CPU_PARTITION, "-J", "pmtrec-test-basic", "--comment", "rule_basic_wildcards_x",
                   "-o", str(out), "--wrap", 'echo "job $SLURM_JOB_ID on $(hostname)"')
    row = wait_for_sacct(jobid)
    assert row["State"] == "COMPLETED", row
    assert (row["Account"], row["Partition"], row["JobName"]) == (ACCOUNT, CPU_PARTITION, "pmtrec-test-basic")
    # The plugin's --comment (rule name and wildcards) must be stored: AccountingStoreFlags=job_comment.
    assert row["Comment"] == "rule_basic_wildcards_x", row
    assert out.read_text().startswith(f"job {jobid} on ")


def test_gpu_request_runs_on_the_gpu_partition_without_cuda(tmp_path):
    out = tmp_path / "out.txt"
    probe = f"{sys.executable} -c 'import torch; print(torch.cuda.is_available())'"
    jobid = sbatch("-p", GPU_PARTITION, "--gpus=1", "-o", str(out),
                   "--wrap", f'echo "gpus=$SLURM_GPUS_ON_NODE"; {probe}')
    row = wait_for_sacct(jobid)
    assert row["State"] == "COMPLETED", (row, out.read_text())
    assert row["Partition"] == GPU_PARTITION
    assert "gres/gpu=1" in row["AllocTRES"], row
    # Fake GPUs: schedulable, but no CUDA device, so pmtrec's --device auto picks the CPU.
    assert out.read_text().split() == ["gpus=1", "False"]


def test_failing_job_is_failed_in_sacct(tmp_path):
    jobid = sbatch("-p", CPU_PARTITION, "-o", str(tmp_path / "out.txt"), "--wrap", "exit 3")
    row = wait_for_sacct(jobid)
    assert (row["State"], row["ExitCode"]) == ("FAILED", "3:0"), row


# ------------------------------------------------------------------------------- the workflow
def _require(paths):
    missing = [str(p) for p in paths if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"not in the repository yet: {', '.join(missing)}")


def _snakemake(workdir: Path, args: list[str], log: Path, env: dict, timeout: int) -> str:
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    text = log.read_text()
    print(f"snakemake {' '.join(args[:4])} ...: {time.monotonic() - t0:.0f}s (exit {proc.returncode})")
    if proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} exited {proc.returncode} in {workdir}; "
                    f"log {log}:\n{text[-6000:]}")
    return text


def load_profile() -> dict:
    return yaml.safe_load((ROOT / PROFILE_SOURCE / "config.yaml").read_text()) or {}


class LocalRun:
    """`snakemake runs` run locally in the background (started before the SLURM run, whose
    polling leaves the CPUs idle now and then): the reference results."""

    def __init__(self, workdir: Path, args: list[str], env: dict):
        self.workdir, self.args, self.log = workdir, args, workdir.parent / "snakemake.log"
        self.t0 = time.monotonic()
        self.fh = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                                     stdout=self.fh, stderr=subprocess.STDOUT)

    def result(self) -> Path:
        try:
            rc = self.proc.wait(timeout=max(1.0, WORKFLOW_TIMEOUT - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the local reference run took more than {WORKFLOW_TIMEOUT}s; log {self.log}")
        self.fh.close()
        print(f"snakemake {' '.join(self.args[:4])} ...: {time.monotonic() - self.t0:.0f}s (exit {rc})")
        if rc != 0:
            pytest.fail(f"the local reference run (snakemake {' '.join(self.args)}) exited {rc} in "
                        f"{self.workdir}; log {self.log}:\n{self.log.read_text()[-6000:]}")
        return self.workdir

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.fh.close()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The training runs of the same study, run locally with the profile's threads per rule
    (the thread count is part of each run's config and its hash)."""
    _require(["workflow/Snakefile", TEST_CONFIG, PROFILE_SOURCE / "config.yaml"])
    workdir = copy_project(tmp_path_factory.mktemp("local") / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    threads = profile_threads(load_profile())
    # Inside a SLURM job Snakemake runs with --cores all, which caps a rule's threads at the
    # machine's CPU count (not the job's allocation): the same cap as --cores <cpu count> here.
    cores = len(os.sched_getaffinity(0))
    args = ["runs", "--cores", str(cores), "--configfile", str(TEST_CONFIG)]  # target first: --configfile is greedy
    if threads:
        args += ["--set-threads", *(f"{rule}={n}" for rule, n in threads.items())]
    run = LocalRun(workdir, args, env)
    yield run
    run.stop()


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, local_run):
    """`snakemake --profile profiles/slurm ... all` on a copy, one training job failing once
    (the local reference run goes on in the background meanwhile)."""
    _require(["workflow/Snakefile", TEST_CONFIG, PROFILE_SOURCE / "config.yaml"])
    base = tmp_path_factory.mktemp("slurm")
    workdir = copy_project(base / "project")
    if PROFILE_SOURCE.is_absolute():
        shutil.copytree(PROFILE_SOURCE, workdir / PROFILE)
    profile_file = workdir / PROFILE / "config.yaml"
    profile = yaml.safe_load(profile_file.read_text()) or {}
    profile_file.write_text(yaml.safe_dump(adapt_profile(profile, cluster_partitions()), sort_keys=False))

    # Failure injection: a `pmtrec` ahead of the real one on PATH (the jobs inherit the
    # environment: sbatch --export=ALL) fails the first main training job once.
    shim = base / "shim"
    shim.mkdir()
    flag = base / "failed-once"
    (shim / "pmtrec").write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ " $* " == *" {FAIL_MATCH}"* ]] && mkdir "{flag}" 2>/dev/null; then\n'
        '  echo "$*" > "' + str(flag) + '/command"\n'
        '  echo "pmtrec: injected failure (tests/test_slurm.py), first attempt only" >&2\n'
        "  exit 3\n"
        "fi\n"
        f'exec "{sys.executable}" -m pmtrec "$@"\n')
    (shim / "pmtrec").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), env.get("PATH", "")])

    args = ["all", "--profile", str(PROFILE), "--configfile", str(TEST_CONFIG),
            # Poll the cluster every few seconds, not the plugin's 40 s+: the jobs take seconds.
            "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
            "--slurm-keep-successful-logs"]
    t0 = time.monotonic()
    log = _snakemake(workdir, args, base / "snakemake.log", env, WORKFLOW_TIMEOUT)
    return {"workdir": workdir, "log": log, "profile": profile, "flag": flag, "seconds": time.monotonic() - t0}


def test_profile_retries_failed_jobs():
    _require([PROFILE_SOURCE / "config.yaml"])
    profile = load_profile()
    retries = profile.get("retries", profile.get("restart-times", 0))
    assert int(retries) >= 1, "profiles/slurm must retry failed jobs (retries: N)"


def test_every_job_ran_on_slurm(slurm_run):
    log = slurm_run["log"]
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, "no 'SLURM run ID' in the snakemake log: not run by the slurm executor?"
    # Every submission snakemake logged is one sacct row, with the rule in the plugin's comment.
    submitted = sorted(set(re.findall(r"submitted with SLURM jobid (\d+)", log)), key=int)
    assert submitted, "no SLURM submission in the snakemake log"
    t0 = time.monotonic()
    while True:  # accounting records can lag the job's end by a moment
        rows = sacct("--name", m.group(1))
        if sorted((r["JobIDRaw"] for r in rows), key=int) == submitted or time.monotonic() - t0 > 60:
            break
        time.sleep(2)
    assert sorted((r["JobIDRaw"] for r in rows), key=int) == submitted
    per_rule_sacct = Counter(re.match(r"(?:rule|group)_(\w+?)(?:_wildcards_|$)", r["Comment"]).group(1)
                             for r in rows)
    per_rule_log = Counter(re.findall(r"^rule (\w+):", log, flags=re.M))
    assert per_rule_sacct == per_rule_log, (per_rule_sacct, per_rule_log)
    for r in rows:
        assert r["Account"] == ACCOUNT, r
        assert r["Partition"] in (CPU_PARTITION, GPU_PARTITION), r
        if "gres/gpu" in r["AllocTRES"]:
            assert r["Partition"] == GPU_PARTITION, f"a GPU job outside the gpu partition: {r}"
    # Only the injected failure failed; everything else completed.
    states = Counter(r["State"] for r in rows)
    assert states == Counter({"COMPLETED": len(rows) - 1, "FAILED": 1}), states
    assert {"train", "aggregate"} <= set(per_rule_sacct), per_rule_sacct


def test_failed_job_is_reported_and_retried(slurm_run):
    log, flag = slurm_run["log"], slurm_run["flag"]
    assert (flag / "command").exists(), "the injected failure never ran"
    out = re.search(r"--out (\S+)", (flag / "command").read_text()).group(1)
    # Snakemake's error report for that job names the SLURM job, which sacct has as FAILED.
    blocks = [b for b in log.split("Error in rule ")[1:]
              if re.search(rf"^\s+output: {re.escape(out)}(,|\s*$)", b, re.M)]
    assert len(blocks) == 1, f"expected one error report for {out}, got {len(blocks)}"
    assert blocks[0].startswith("train:"), blocks[0][:300]
    m = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: 'FAILED'", blocks[0])
    assert m, f"the error report does not name the failed SLURM job:\n{blocks[0][:1000]}"
    row = wait_for_sacct(m.group(1))
    assert row["State"] == "FAILED" and row["Comment"].startswith("rule_train"), row
    # ... and it was resubmitted (a new SLURM job for the same rule and wildcards) and succeeded.
    assert re.search(r"Trying to restart job", log), "snakemake did not retry the failed job"
    again = [r for r in sacct("--name", re.search(r"SLURM run ID: (\S+)", log).group(1))
             if r["Comment"] == row["Comment"] and int(r["JobIDRaw"]) > int(row["JobIDRaw"])]
    assert [r["State"] for r in again] == ["COMPLETED"], again
    assert (slurm_run["workdir"] / out).exists(), f"{out} missing after the retry"


def test_slurm_results_equal_local_results(slurm_run, local_run):
    local = local_run.result()
    slurm_files = result_files(slurm_run["workdir"])
    local_files = result_files(local)
    assert local_files, "the local run wrote no result JSON"
    assert slurm_files.keys() == local_files.keys()
    for rel in local_files:
        assert_close(result_metrics(slurm_files[rel]), result_metrics(local_files[rel]), rel)
    for sel in sorted((local / "results" / "tune").rglob("selected.yaml")):
        rel = sel.relative_to(local)
        assert (slurm_run["workdir"] / rel).read_text() == sel.read_text(), rel
    # The SLURM run went all the way: tables and report.
    assert (slurm_run["workdir"] / "results" / "tables" / "summary.csv").exists()
    assert (slurm_run["workdir"] / "reports" / "pmtrec_report.pdf").exists()
    print(f"workflow on SLURM: {slurm_run['seconds']:.0f}s")
