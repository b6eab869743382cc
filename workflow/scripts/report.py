"""Glue for rule `report`: the notebooks' section folders -> reports/pmtrec_report.pdf (pmtrec.report.build)."""

import sys

from pmtrec.errors import PmtrecError
from pmtrec.report.build import build_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(sm.log[0], "w")

try:  # the template is package data (pmtrec/report/template.typ)
    out = build_report(list(sm.input.sections), sm.output[0], tables_dir=sm.params.tables,
                       results=sm.params.results, config_hash=sm.params.config_hash)
except PmtrecError as exc:
    print(f"pmtrec report: error: {exc}")
    raise SystemExit(1)
print(f"written {out}")
