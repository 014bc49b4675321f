# Two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built binaries, images and wheels are cached here, keyed by version, never in the repo.
export TORNADO_OPERATOR_CACHE ?= $(HOME)/.cache/tornado-operator

.PHONY: prereqs venv lint test test-unit cluster-up cluster-down demo demo-down

prereqs: ## host packages and binaries (needs root on Debian/Ubuntu for the local cluster)
	bash tests/cluster/prereqs.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv ## ruff and mypy (strict on the operator)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: venv ## tests that need no cluster
	$(PY) -m pytest -m "not cluster"

test: prereqs venv lint ## everything: lint, unit, service and cluster (e2e) tests
	$(PY) -m pytest

cluster-up: prereqs venv
	$(PY) -m tests.cluster up

cluster-down: venv
	$(PY) -m tests.cluster down

demo: prereqs venv ## cluster, images, operator, examples/hello.yaml answering
	$(PY) -m tests.cluster demo
