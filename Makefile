# Two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built binaries, images and wheels are cached here, keyed by version, never in the repo.
export TORNADO_OPERATOR_CACHE ?= $(HOME)/.cache/tornado-operator

.PHONY: prereqs venv lint test test-unit test-chart cluster-up cluster-down demo demo-down \
	kind-up kind-images kind-install kind-example kind-test kind-down

prereqs: ## host packages and binaries (needs root on Debian/Ubuntu for the local cluster)
	bash hack/prereqs.sh

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
	$(VENV)/bin/mypy --strict hack service_template/scaffold.py benchmarks tests/template
	cd service_template && ../$(VENV)/bin/mypy

test-unit: venv ## tests that need no cluster
	$(PY) -m pytest -m "not cluster"

test: prereqs venv lint ## everything: lint, unit, service and cluster (e2e) tests
	$(PY) -m pytest

cluster-up: prereqs venv
	$(PY) -m hack.cluster up

cluster-down: venv
	$(PY) -m hack.cluster down

demo: prereqs venv ## cluster, images, operator, examples/hello.yaml answering
	$(PY) -m hack.demo

demo-down: venv ## remove the demo's service and operator release (the cluster stays)
	$(PY) -m hack.demo down

test-chart: venv
	$(PY) -m pytest tests/chart

# The kind path, for machines where kind and its node image work.
KIND_CLUSTER ?= tornado-operator
KIND_KUBECONFIG = $(TORNADO_OPERATOR_CACHE)/kind.kubeconfig
HELM ?= helm
KUBECTL ?= kubectl

kind-up: venv ## a kind cluster from kind-config.yaml
	$(PY) -m hack.cluster up --provider kind

kind-images: venv ## build both images and kind-load them
	KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m hack.cluster build-images

kind-install: ## helm install the operator
	KUBECONFIG=$(KIND_KUBECONFIG) $(HELM) upgrade --install tornado-operator charts/tornado-operator \
		-n tornado-operator --create-namespace --wait

kind-example: ## apply examples/hello.yaml and wait for Ready
	KUBECONFIG=$(KIND_KUBECONFIG) $(KUBECTL) apply -f examples/hello.yaml
	KUBECONFIG=$(KIND_KUBECONFIG) $(KUBECTL) wait --for=condition=Ready tsvc/hello --timeout=3m

kind-test: venv ## the e2e suite against the kind cluster
	KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m pytest -m cluster

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)
