"""Glue for rule `select_setting`: pick the best tuning setting (pmtrec.study.tuning.select_setting)."""

import sys

import yaml

from pmtrec.study.tuning import select_setting, setting_config
from pmtrec.io import write_text

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(sm.log[0], "w")

chosen, table = select_setting(sm.params.points, sm.params.metric)
print(table.to_string(index=False))
fragment = setting_config(sm.params.fixed, chosen)
header = (f"# Selected setting of {sm.wildcards.method} on {sm.wildcards.dataset}: best validation "
          f"{sm.params.metric} over {len(table)} tuning runs (written by the workflow's select_setting rule).\n"
          f"# chosen: {chosen}\n")
write_text(sm.output[0], header + yaml.safe_dump(fragment, sort_keys=True))
print(f"chosen: {chosen}")
