"""Glue for rule `aggregate`: result JSONs -> results/tables/*.csv (pmtrec.aggregate)."""

import sys

from pmtrec.aggregate import aggregate, entries_from_results, write_tables
from pmtrec.errors import PmtrecError
from pmtrec.plugins import load_plugins

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(sm.log[0], "w")

sig = sm.params.significance
try:
    load_plugins(sm.config.get("plugins") or [])  # the methods table reads their catalogue entries
    results = {}
    entries = entries_from_results(list(sm.input.results), results)  # each result's own labels
    tables = aggregate(entries, sm.params.datasets, reference=sig["reference"], exclude=sig["exclude"],
                       select_metric=sig["select_metric"], wilcoxon_min_n=sig["wilcoxon_min_n"],
                       tune_metric=sm.params.tune_metric, results=results, probes=list(sm.input.probes),
                       maps=sm.params.maps, min_seeds=sig["min_seeds"],
                       equivalence_margin=sig["equivalence_margin"], n_resamples=sig["n_resamples"],
                       protocol=sm.params.protocol)
except PmtrecError as exc:
    print(f"pmtrec: error: {exc}")
    raise SystemExit(1)
for path in write_tables(tables, sm.params.outdir):
    print(f"{path}: {len(tables[path.stem])} rows")
