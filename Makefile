# One-command entry points. Each target creates .venv on first use (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 8

.PHONY: setup test test-all demo report bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[workflow,test]"
	touch $@

setup: $(VENV)/.installed

# The test suite (what CI runs).
test: setup
	$(PY) -m pytest -q

# The main job: the whole default study (synthetic data) from raw data to the PDF report.
demo: setup
	$(VENV)/bin/snakemake --cores $(CORES) all

# Just the PDF report (and the Snakemake HTML report) from whatever results exist or are missing.
report: setup
	$(VENV)/bin/snakemake --cores $(CORES) reports/pmtrec_report.pdf
	$(VENV)/bin/snakemake --report reports/workflow_report.html

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf results resources logs reports/*.pdf .snakemake
