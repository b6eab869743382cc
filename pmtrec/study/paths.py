"""Where every file of a study lives, relative to the workflow's working directory."""

from __future__ import annotations

RESULTS = "results"
RESOURCES = "resources"
LOGS = "logs"
BENCH = "benchmarks/runs"
TABLES = f"{RESULTS}/tables"
REPORT_DIR = f"{RESULTS}/report"
REPORT_PDF = "reports/pmtrec_report.pdf"


def prepared_dir(dataset, split=None):
    """The prepared dataset: the config's fixed split, or (``split``: a seed) the split of that seed."""
    return f"{RESOURCES}/prepared/{dataset}" + ("" if split is None else f".split{split}")


def manifest_path(dataset):
    return f"{RESOURCES}/raw/manifests/{dataset}.json"


def run_path(dataset, method, seed):
    return f"{RESULTS}/runs/{dataset}/{method}/seed{seed}.json"


def emb_path(dataset, method, seed):
    """The run's best-epoch embedding tables (pmtrec.embeddings), beside its result JSON."""
    return f"{RESULTS}/runs/{dataset}/{method}/seed{seed}.emb.npz"


def probe_path(dataset, method, seed):
    return f"{RESULTS}/analysis/probes/{dataset}/{method}/seed{seed}.json"


def map_path(dataset):
    return f"{RESULTS}/analysis/maps/{dataset}.csv"


def tune_path(dataset, method, point, seed):
    return f"{RESULTS}/tune/{dataset}/{method}/{point}/seed{seed}.json"


def selected_path(dataset, method):
    return f"{RESULTS}/tune/{dataset}/{method}/selected.yaml"


def ablation_path(dataset, variant, seed):
    return f"{RESULTS}/ablation/{dataset}/{variant}/seed{seed}.json"


def sensitivity_path(dataset, method, point, seed):
    return f"{RESULTS}/sensitivity/{dataset}/{method}/{point}/seed{seed}.json"


def bench_path(rule, *parts):
    return f"{BENCH}/{rule}/{'/'.join(parts)}.tsv"


def checkpoint_path(rule, tag):
    return f"{RESULTS}/checkpoints/{rule}/{tag}.pt"
