# The two set-up commands of README.md: `make run` and `make test`. Both create .venv if absent.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= all

.PHONY: install run test lint format bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: install
	$(VENV)/bin/snakemake --cores $(CORES) results/metrics.json

test: install slurm lint
	$(VENV)/bin/python -m pytest -q --durations=15

# ruff (lint + format check), snakefmt and Snakemake's own linter; `make test` runs it first.
LINT_PATHS := src tests bench workflow
lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/snakemake --lint --cores 1
	$(VENV)/bin/snakemake --lint --cores 1 --configfile config/particles.yaml

format: install
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/snakefmt Snakefile rules

# A one-node SLURM for tests/test_slurm.py: installed with apt-get where possible (root), else skipped
# with the reason printed; never fails the build. The tests start and stop the daemons themselves.
.PHONY: slurm
slurm:
	@bash scripts/install-slurm.sh

bench: install
	for b in bench/*.py; do $(PY) $$b; done

clean:
	rm -rf results logs benchmarks .snakemake
