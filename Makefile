# The two commands a new user needs: `make run` (embedded demo) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PKGS := $(patsubst %/__init__.py,%,$(wildcard */__init__.py))
# Development tooling that lives in the checkout, not in the installed package: linted too.
DEVTOOLS := $(patsubst %/__init__.py,%,$(wildcard devtools/*/__init__.py))
TYPECHECK := build/typecheck

.PHONY: run test lint unit integration e2e bench-small services venv clean soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

## run: install, load the demo district into the embedded ledger, serve API + projector on :8000
run: venv
	$(BIN)/tutorledger demo
	$(BIN)/tutorledger serve --port $${PORT:-8000}

## services: install the real servers the integration tests use (PostgreSQL, ClickHouse, tansu)
services: venv
	$(BIN)/python -m devtools.services install

## lint: ruff (lint + format check), the layering contracts (import-linter), mypy --strict over the package and devtools/
lint: venv
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(TYPECHECK)/tutorledger
	for p in $(PKGS); do ln -sfn ../../../$$p $(TYPECHECK)/tutorledger/$$p; done
	MYPYPATH=$(TYPECHECK):. $(BIN)/mypy $(foreach p,$(PKGS),-p tutorledger.$(p)) \
		$(foreach p,$(DEVTOOLS),-p $(subst /,.,$(p)))

unit: venv
	$(BIN)/pytest tests/unit -q

integration: services
	TUTORLEDGER_REQUIRE_SERVICES=1 $(BIN)/pytest tests/integration -q

e2e: venv
	$(BIN)/pytest tests/e2e -q

## bench-small: the performance suite at its smallest size (numbers, no assertions)
bench-small: venv
	$(BIN)/tutorledger bench --size small --with-local-services --report build/bench-report.json

## test: everything CI runs, on a fresh machine
test: services lint
	TUTORLEDGER_REQUIRE_SERVICES=1 $(BIN)/pytest tests -q --durations=15
	$(MAKE) bench-small

## soak: the fault-and-load soak for SOAK_SECONDS (default 1800) offering SOAK_RATE events/s (600: the reference keeps each event in memory); SOAK_SEED=N replays a run
SOAK_SECONDS ?= 1800
SOAK_RATE ?= 600
soak: services
	TUTORLEDGER_REQUIRE_SERVICES=1 TUTORLEDGER_SOAK_DURATION=$(SOAK_SECONDS) \
		TUTORLEDGER_SOAK_RATE=$(SOAK_RATE) TUTORLEDGER_SOAK_SEED=$(SOAK_SEED) \
		$(BIN)/pytest tests/integration/test_soak.py -m soak -q -s

clean:
	rm -rf $(VENV) build var .pytest_cache .mypy_cache .ruff_cache
