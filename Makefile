# EMS: `make dev` runs the whole system locally, `make test` runs every check. Both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first Python 3.11+ that actually runs (a pyenv shim can exist for a version that is not active).
PYTHON ?= $(shell for c in python3.12 python3.11 python3.13 python3; do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$c; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline, fake-credential settings for the AWS tooling in `make test` (no account is ever touched).
AWS_OFFLINE := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

.PHONY: help install dev test lint typecheck cfn unit integration e2e browser build bench deploy clean

help:
	@echo "make dev     run the local cloud with the demo building (http://127.0.0.1:8000)"
	@echo "make test    lint, type-check, validate the template, run every test"
	@echo "make bench   run the benchmarks and write bench/RESULTS.md"
	@echo "make build   sam build (needs a python3.12 on PATH)"
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
test: lint typecheck cfn browser
	$(BIN)/pytest tests

build: $(STAMP)
	@PY312=$$(command -v python3.12 || PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null); \
	if [ -z "$$PY312" ]; then echo "sam build needs python3.12 on PATH (the Lambda runtime's version); none found"; exit 1; fi; \
	echo "sam build with $$PY312"; \
	PATH="$$(dirname $$PY312):$$PATH" SAM_CLI_TELEMETRY=0 $(BIN)/sam build --template template.yaml

bench: $(STAMP)
	$(BIN)/python -m bench

deploy: build
	SAM_CLI_TELEMETRY=0 $(BIN)/sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
