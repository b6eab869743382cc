"""Glue for rule `aggregate`: result JSONs -> results/tables/*.csv (pmtrec.aggregate)."""

import sys

from pmtrec.aggregate import aggregate, write_tables
from pmtrec.errors import PmtrecError

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(sm.log[0], "w")

sig = sm.params.significance
try:
    tables = aggregate(sm.params.entries, sm.params.datasets, reference=sig["reference"], exclude=sig["exclude"],
                       select_metric=sig["select_metric"], wilcoxon_min_n=sig["wilcoxon_min_n"],
                       tune_metric=sm.params.tune_metric, probes=sm.params.probes, maps=sm.params.maps)
except PmtrecError as exc:
    print(f"pmtrec: error: {exc}")
    raise SystemExit(1)
for path in write_tables(tables, sm.params.outdir):
    print(f"{path}: {len(tables[path.stem])} rows")
