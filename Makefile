# One-command entry points. Each target creates .venv on first use (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 8
# The tested versions (a constraints file): the install stays reproducible, pyproject keeps ranges.
LOCK := requirements/lock.txt

.PHONY: setup test test-all demo report bench lint lock clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e ".[workflow,test]"
	touch $@

setup: $(VENV)/.installed

# The test suite (what CI runs).
test: setup
	$(PY) -m pytest -q --durations=15

# The main job: the whole default study (synthetic data) from raw data to the PDF report.
demo: setup
	$(VENV)/bin/snakemake --cores $(CORES) all

# Just the PDF report (and the Snakemake HTML report) from whatever results exist or are missing.
report: setup
	$(VENV)/bin/snakemake --cores $(CORES) reports/pmtrec_report.pdf
	$(VENV)/bin/snakemake --report reports/workflow_report.html

bench: setup
	$(PY) -m benchmarks

# Snakemake's linter on the workflow (also a test: tests/test_packaging.py).
lint: setup
	$(VENV)/bin/snakemake --lint

# Re-pin $(LOCK) to what $(VENV) holds, after a deliberate upgrade there: its comment header is
# kept, the editable pmtrec left out, a local wheel's URL and torch's +cpu label written as versions.
lock:
	{ sed -n '1,/^[^#]/{/^#/p}' $(LOCK); $(PY) -m pip freeze --all --exclude-editable | grep -v '^#' | \
	  sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_]+-([0-9][^-]*)-.*$$/\1==\2/; s/^torch==([0-9.]+)\+cpu$$/torch==\1/'; \
	} > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf results resources logs reports/*.pdf .snakemake
