# Everything runs from a project-local virtual environment built from pinned versions,
# so `make test` and `make demo` work on a fresh machine with only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
PIP_VERSION := 26.3
INSTALLED := $(VENV)/.installed

export PIP_CONSTRAINT := $(abspath $(CONSTRAINTS))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test test-fast demo lint format bench constraints clean

help:
	@echo "make demo   - run the example DAG end to end against the local REDCap emulator"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - ruff check, format check and mypy"
	@echo "make bench  - print emulator and hook throughput and memory figures"

$(INSTALLED): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@

install: $(INSTALLED)

test: $(INSTALLED)
	$(BIN)/python -m pytest

test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -m "not integration and not dag"

demo: $(INSTALLED)
	$(BIN)/python scripts/demo.py

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED)
	$(BIN)/python benchmarks/emulator_throughput.py
	$(BIN)/python benchmarks/hook_import_export.py

constraints: $(INSTALLED)
	$(BIN)/python -m pip freeze --exclude-editable | grep -iv '^airflow-provider-redcap' > $(CONSTRAINTS).new
	@echo "review and move $(CONSTRAINTS).new over $(CONSTRAINTS)"

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache build dist *.egg-info
