# Parley: `make run` starts the platform, `make test` runs the whole suite.
# Both create/refresh the local virtualenv (.venv) and system packages when missing.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint typecheck deps system-deps clean bench

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Parley needs Python 3.11 ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

deps: system-deps $(STAMP)

system-deps:
	@.ci/system-deps.sh

run: deps
	$(BIN)/parley run $(ARGS)

test: deps lint
	@.ci/test-services.sh
	.ci/run-tests.sh $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: deps
	$(BIN)/python bench/media_overhead.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
