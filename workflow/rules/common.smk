# Shared by the rules: the study plan (pmtrec.study: every job, its arguments, every check of the
# config), the paths, and the input/param functions. The planning logic is library code with its
# own unit tests (tests/test_study_plan.py); only Snakemake glue lives here.

import hashlib
import json
import os
import shlex  # noqa: F401  (prepare.smk)

from snakemake.exceptions import WorkflowError

from pmtrec.aggregate import TABLES as TABLE_NAMES
from pmtrec.errors import ConfigError
from pmtrec.report.notebook import NOTEBOOKS, notebook_path
from pmtrec.study import load_study
from pmtrec.training.per_user import per_user_path
from pmtrec.study.paths import (LOGS, REPORT_DIR, REPORT_PDF, RESULTS, TABLES, ablation_path, bench_path,
                                checkpoint_path, emb_path, manifest_path, map_path, prepared_dir, probe_path,
                                run_path, selected_path, sensitivity_path, tune_path)
from pmtrec.study.grid import canon, set_args


class ConfigKeyError(WorkflowError):
    """A workflow configuration error; the message names the key at fault."""


# Relative to this file, not workflow.basedir (the including workflow's folder when this one is used
# as a module) nor the working directory.
CONFIG_SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def plan_study(cfg):
    """The validated plan, or one line naming the config key at fault (no traceback)."""
    try:
        return load_study(cfg, CONFIG_SCHEMA)
    except ConfigError as exc:
        raise ConfigKeyError(str(exc)) from None


# ------------------------------------------------------------------------- input / param functions
def download_input(wildcards):
    """The download manifest, for sources that read raw files (unpacked: input.manifest)."""
    return {"manifest": manifest_path(wildcards.dataset)} if STUDY.reads_files(wildcards.dataset) else {}


def local_inputs(wildcards):
    """Local files a dataset's source reads (custom CSVs, amazon paths): editing one reruns prepare."""
    return STUDY.local_files(wildcards.dataset)


def selected_input(dataset, method, use_selected=True):
    tuned = STUDY.tuned(method) if use_selected else None
    return [selected_path(dataset, tuned)] if tuned else []


def train_gpu(wildcards):
    return STUDY.resources["train"]["gpu"] if STUDY.trains(wildcards.method) else 0


def sens_point(wildcards):
    try:
        return STUDY.sens_point(wildcards.method, wildcards.point)
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


def tune_params(wildcards):
    """The run arguments of one grid point of a tuned method (its fixed parameters, not a selection)."""
    return STUDY.train_params(wildcards.dataset, wildcards.method, STUDY.points[wildcards.method][wildcards.point],
                              use_selected=False)


def sens_params(wildcards):
    point = sens_point(wildcards)
    return STUDY.train_params(wildcards.dataset, wildcards.method, point["values"],
                              use_selected=point["kind"] == "dim")


# ------------------------------------------------------------------------- report.smk
def notebook_datasets(wildcards):
    """The datasets whose prepared folder a notebook reads: only 01_datasets (degree distributions)."""
    return STUDY.datasets if wildcards.notebook == "01_datasets" else []


def notebook_prepared(wildcards):
    return [prepared_dir(d) for d in notebook_datasets(wildcards)]


# The benchmark suite's CSVs the efficiency section reads (python -m benchmarks writes cpu.csv or
# gpu.csv): declared inputs, so a new run of the suite reruns that notebook. The repository ships a
# reference cpu.csv; the section says whether it shows that copy or the user's own run.
# The repository's copies (this workflow's checkout, also when it is used as a module), not the working directory's.
_BENCH_DIR = os.path.normpath(os.path.join(workflow.current_basedir.get_path_or_uri(secret_free=True), "..", "..",
                                           "benchmarks", "results"))
BENCH_CSVS = [p for p in (os.path.join(_BENCH_DIR, f"{n}.csv") for n in ("cpu", "gpu")) if os.path.isfile(p)]


def notebook_bench(wildcards):
    return BENCH_CSVS if wildcards.notebook == "07_efficiency" else []


def emb_output(path: str):
    """A main run's embedding tables: kept, or (analysis.keep_embeddings false) a temp file that
    Snakemake deletes once its probe and map have read it; a missing one then reruns nothing."""
    return path if config["analysis"]["keep_embeddings"] else temp(path)


def per_user_of(result: str) -> str:
    """The per-user test metrics `pmtrec train --out` writes beside a result JSON."""
    return str(per_user_path(result))
