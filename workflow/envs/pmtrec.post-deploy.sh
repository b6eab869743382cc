#!/usr/bin/env bash
# Run by Snakemake once, inside a new environment made from pmtrec.yaml (with the Snakemake
# process's environment variables): installs pmtrec itself from the workflow's own source tree,
# $PMTREC_SOURCE (workflow/Snakefile sets it to the folder above workflow/). Editable, so the rules
# run the code the workflow was planned with; --no-deps: the dependencies are pmtrec.yaml's.
set -euo pipefail
: "${PMTREC_SOURCE:?not set: run the workflow through workflow/Snakefile (a local checkout)}"
python -m pip install --quiet --no-deps -e "$PMTREC_SOURCE"
