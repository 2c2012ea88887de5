# EMS: `make dev` runs the whole system locally, `make test` runs every check. Both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first Python 3.11+ that actually runs (a pyenv shim can exist for a version that is not active).
PYTHON ?= $(shell for c in python3.12 python3.11 python3.13 python3; do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$c; break; }; done)
# The Lambda runtime's Python for `sam build`: a python3.12 on PATH that runs, else pyenv's (a pyenv
# shim stops with "command not found" for a version that is not active, so ask pyenv for the binary).
PYTHON312 ?= $(shell { command -v python3.12 >/dev/null 2>&1 && python3.12 -c '' 2>/dev/null && command -v python3.12; } \
	  || for v in $$(pyenv versions --bare 2>/dev/null | grep '^3\.12'); do \
	       p=$$(PYENV_VERSION=$$v pyenv which python3.12 2>/dev/null) && "$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline, fake-credential settings for the AWS tooling in `make test` (no account is ever touched).
AWS_OFFLINE := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

.PHONY: help install dev test lint typecheck cfn unit integration e2e browser build build-if-possible bench bench-forecast-venv deploy clean

help:
	@echo "make dev     run the local cloud with the demo building (http://127.0.0.1:8000)"
	@echo "make test    lint, type-check, validate the template, run every test"
	@echo "make bench   run the benchmarks and write bench/RESULTS.md"
	@echo "make build   sam build (needs a python3.12: on PATH or from pyenv)"
	@echo "make deploy  sam build && sam deploy --config-env dev"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is needed and none was found on PATH"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,science]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/ems local up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

cfn: $(STAMP)
	$(AWS_OFFLINE) $(BIN)/cfn-lint template.yaml
	$(AWS_OFFLINE) $(BIN)/sam validate --lint --template template.yaml

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

e2e: $(STAMP) browser
	$(BIN)/pytest tests/e2e

# The live page's e2e test drives a real browser: Debian's chromium, installed only when missing (it
# needs root and the package archive; without it the browser test is skipped and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed: the live page's browser test will be skipped"

# pytest exits 5 when it collected no test: that is a failure here, as any non-zero exit is.
test: lint typecheck cfn build-if-possible browser
	$(BIN)/pytest tests

# The layer's own Makefile (layers/core, run by sam build) and sam's workflow call `python3.12` by
# name: the folder of the one found goes first on PATH, and it is handed down as PYTHON too.
build: $(STAMP)
	@PY312="$(PYTHON312)"; \
	if [ -z "$$PY312" ]; then echo "sam build needs a python3.12 (the Lambda runtime's version), on PATH or from pyenv; none found"; exit 1; fi; \
	echo "sam build with $$PY312"; \
	PATH="$$(dirname $$PY312):$$PATH" PYTHON="$$PY312" SAM_CLI_TELEMETRY=0 $(BIN)/sam build --template template.yaml

# `make test` builds the layer and the functions too, where a python3.12 can be found.
build-if-possible: $(STAMP)
	@if [ -n "$(PYTHON312)" ]; then $(MAKE) --no-print-directory build; else echo "skipped sam build: no python3.12 found"; fi

bench: $(STAMP) bench-forecast-venv
	$(BIN)/python -m bench

# The forecast bench's statistical peer (statsforecast's MSTL) in a venv of its own: statsforecast
# pins pandas < 3, the science extra has pandas 3. bench/forecast.py runs it when it is there.
MSTL_VENV := $(VENV)/mstl
bench-forecast-venv: $(MSTL_VENV)/.installed
$(MSTL_VENV)/.installed:
	test -d $(MSTL_VENV) || $(PYTHON) -m venv $(MSTL_VENV)
	$(MSTL_VENV)/bin/pip install --quiet 'statsforecast>=2.1,<2.2'
	touch $@

# The battery optimiser against EMHASS (in a virtual environment of its own, .bench-venvs/emhass, made on
# first use) and a greedy rule: bench/battery.py writes its section of bench/RESULTS.md.
.PHONY: bench-battery
bench-battery: $(STAMP)
	$(BIN)/python -m bench.battery

deploy: build
	SAM_CLI_TELEMETRY=0 $(BIN)/sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
