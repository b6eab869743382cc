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
from pmtrec.study.paths import (LOGS, REPORT_DIR, REPORT_PDF, RESULTS, TABLES, ablation_path, bench_path,
                                checkpoint_path, emb_path, manifest_path, map_path, prepared_dir, probe_path,
                                run_path, selected_path, sensitivity_path, tune_path)
from pmtrec.study.grid import canon, set_args


class ConfigKeyError(WorkflowError):
    """A workflow configuration error; the message names the key at fault."""


def plan_study(cfg):
    """The validated plan, or one line naming the config key at fault (no traceback)."""
    try:
        return load_study(cfg, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
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


def sens_params(wildcards):
    point = sens_point(wildcards)
    return STUDY.train_params(wildcards.dataset, wildcards.method, point["values"],
                              use_selected=point["kind"] == "dim")
