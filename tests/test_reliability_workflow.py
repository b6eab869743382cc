"""Kill the whole `snakemake` process group (SIGKILL) after the first training job of the small
CI config (.test/config/small.yaml) has finished, unlock, rerun with `--rerun-incomplete`, and
check that the outputs equal a clean run's: every aggregated table (timing tables and series excluded), every result file
(timing fields excluded), and the report's text up to its efficiency section (measured times).

Like tests/test_workflow.py, it runs the real `snakemake` on temporary copies of the workflow,
configs, notebooks and profiles. Both runs import one snapshot of the library (copied at the start,
first on PYTHONPATH), so that an edit to the working tree during the test cannot make them differ.
Two full runs of the small config and a partial one (27 jobs each).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
COPIED = ["workflow", "config", "profiles", ".test"]  # the notebooks and template are package data
CONFIG = ".test/config/small.yaml"  # the CI config with fewer jobs: this test runs it two and a half times
TRAINED = ("ew", "pmtrec")  # methods that train (mostpop only ranks)

pytestmark = [
    pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed (pip install -e .[workflow])"),
    pytest.mark.slow,
]

# Tables or columns that measure time or the machine, not results.
TIMING_TABLES = {"efficiency.csv"}
RESULT_TIMING_KEYS = {"epoch_time_s", "wall_time_s", "memory", "pid", "host"}


def copy_repo(dst: Path) -> Path:
    for name in COPIED:
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    return dst


def smk_env(lib: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMTREC_", "SNAKEMAKE_", "SLURM_"))}
    env["PMTREC_GPUS"] = "0"  # never lock GPU slots from the tests
    env["PYTHONPATH"] = str(lib)  # the library snapshot, ahead of the editable install
    env["SOURCE_DATE_EPOCH"] = "1700000000"  # the report's build date (reproducible-builds convention)
    return env


def smk(cwd: Path, lib: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), *args], cwd=cwd, env=smk_env(lib), capture_output=True, text=True,
                          timeout=timeout)


def finished_training(repo: Path) -> list[Path]:
    runs = repo / "results" / "runs"
    return [p for m in TRAINED for p in runs.glob(f"*/{m}/seed*.json")]


def in_flight(repo: Path) -> list[Path]:
    marks = repo / ".snakemake" / "incomplete"
    return [p for p in marks.rglob("*") if p.is_file()] if marks.is_dir() else []


def tables(repo: Path) -> dict:
    import pandas as pd

    out = {}
    for path in sorted((repo / "results" / "tables").glob("*.csv")):
        if path.name in TIMING_TABLES:
            continue
        df = pd.read_csv(path)
        if path.name == "curves.csv":
            df = df[df["series"] != "time"].reset_index(drop=True)
        if path.name == "claims.csv":  # claim 4 is the measured epoch-time ratio
            df = df[df["claim"] != 4].reset_index(drop=True)
        out[path.name] = df
    return out


def results(repo: Path) -> dict:
    out = {}
    for path in sorted((repo / "results").glob("*/**/*.json")):
        if "checkpoints" in path.parts or "report" in path.parts:
            continue
        r = json.loads(path.read_text())
        if not isinstance(r, dict) or "test" not in r:
            continue
        r = {k: v for k, v in r.items() if k not in RESULT_TIMING_KEYS}
        r["curves"] = [{k: v for k, v in c.items() if not k.endswith("_time_s")} for c in r.get("curves", [])]
        out[str(path.relative_to(repo))] = r
    return out


def report_text(repo: Path) -> tuple[int, list[str]]:
    """Pages and text lines of the report, up to its efficiency section (which reports the
    measured times and memory of these very runs, so it differs between any two runs), without
    the Claims section (its claim 4 is the measured epoch-time ratio; claims.csv is compared)."""
    from pypdf import PdfReader

    pages = PdfReader(repo / "reports" / "pmtrec_report.pdf").pages
    lines = "\n".join(page.extract_text() for page in pages).splitlines()
    def heading(name: str):  # a section's heading line, not its table-of-contents line
        return next((i for i, line in enumerate(lines) if line.strip().endswith(name) and ". ." not in line), None)

    lines = lines[:heading("Efficiency")]
    claims, datasets = heading("Claims"), heading("Datasets")
    if claims is not None and datasets is not None and claims < datasets:
        lines = lines[:claims] + lines[datasets:]
    return len(pages), lines


def test_killed_snakemake_reruns_to_the_same_outputs_as_a_clean_run(tmp_path):
    import pandas as pd

    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "pmtrec", lib / "pmtrec", ignore=shutil.ignore_patterns("__pycache__"))
    found = subprocess.run([sys.executable, "-c", "import pmtrec; print(pmtrec.__file__)"], env=smk_env(lib),
                           capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert found == str(lib / "pmtrec" / "__init__.py")
    clean, crash = copy_repo(tmp_path / "clean"), copy_repo(tmp_path / "crash")

    res = smk(clean, lib, "--cores", "2", "all", "--configfile", CONFIG)
    assert res.returncode == 0, res.stderr[-5000:]

    log = open(tmp_path / "crash.log", "w")
    proc = subprocess.Popen([str(SNAKEMAKE), "--cores", "2", "all", "--configfile", CONFIG], cwd=crash,
                            env=smk_env(lib), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # Kill once a training job has finished and another job is running (Snakemake keeps a marker
    # per running job's output in .snakemake/incomplete/).
    deadline = time.monotonic() + 600
    while not (finished_training(crash) and in_flight(crash)):
        assert proc.poll() is None, (tmp_path / "crash.log").read_text()[-5000:]
        assert time.monotonic() < deadline, "no training job finished in 10 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it runs (same process group)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    log.close()
    assert not (crash / "reports" / "pmtrec_report.pdf").exists()
    done_before = len(finished_training(crash))
    assert in_flight(crash)  # the kill interrupted at least one job

    # The documented recovery: unlock (a killed snakemake cannot remove its lock), then rerun.
    res = smk(crash, lib, "--unlock", "--configfile", CONFIG)
    assert res.returncode == 0, res.stderr[-3000:]
    res = smk(crash, lib, "--cores", "2", "all", "--configfile", CONFIG, "--rerun-incomplete")
    assert res.returncode == 0, res.stderr[-5000:] + res.stdout[-3000:]
    assert len(finished_training(crash)) > done_before

    clean_tables, crash_tables = tables(clean), tables(crash)
    assert sorted(crash_tables) == sorted(clean_tables) and "summary.csv" in clean_tables
    for name, df in clean_tables.items():
        pd.testing.assert_frame_equal(crash_tables[name], df, check_exact=True, obj=name)
    assert results(crash) == results(clean)
    assert report_text(crash) == report_text(clean)
    # no temporary files (atomic writes) left anywhere in the outputs
    leftovers = [str(p) for p in (crash / "results").rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert leftovers == []
