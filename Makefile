# Two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
# `make help` lists the targets: the `##@` lines are its sections, a target's `## ` text its line.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built binaries, images, wheels and build logs are cached here, keyed by version, never in the repo.
export TORNADO_OPERATOR_CACHE ?= $(HOME)/.cache/tornado-operator
.DEFAULT_GOAL := help

.PHONY: help prereqs venv lint test test-unit test-chart test-kind cluster-up cluster-down demo \
	demo-down kind-up kind-images kind-install kind-example kind-test kind-down

##@ Start here

demo: prereqs venv ## cluster, images, operator, examples/hello.yaml answering (one line per step)
	@$(PY) -m hack.demo

demo-down: venv ## remove the demo's service and operator release (the cluster stays)
	@$(PY) -m hack.demo down

# The kind subset runs whatever the first run's result; either one failing fails the target.
test: prereqs venv lint ## everything: lint, unit, service and cluster (e2e) tests, a subset on kind
	$(PY) -m pytest; s=$$?; $(PY) -m hack.kind_subset || s=1; exit $$s

help: ## this list
	@awk 'BEGIN { FS = ":.*## " } \
	  /^##@ / { printf "\n%s\n", substr($$0, 5) } \
	  /^[a-zA-Z0-9_-]+:.*## / { printf "  make %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Steps of those

prereqs: ## host packages and binaries (needs root on Debian/Ubuntu for the local cluster)
	@bash hack/prereqs.sh

$(VENV)/.installed: pyproject.toml
	@bash hack/venv.sh $(PYTHON) $(VENV)
	@touch $@

venv: $(VENV)/.installed ## the Python virtualenv .venv with the project and its dev tools

lint: venv ## ruff, mypy (strict on the operator and the dev tooling), the operator's import contract
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy --strict hack service_template/scaffold.py benchmarks tests/template
	cd service_template && ../$(VENV)/bin/mypy
	cd service_template/consumer && ../../$(VENV)/bin/mypy

test-unit: venv ## tests that need no cluster
	$(PY) -m pytest -m "not cluster"

test-chart: venv ## the chart's tests (offline rendering and on the cluster)
	$(PY) -m pytest tests/chart

test-kind: venv ## e2e subset on a kind cluster made (and deleted) around it (hack/kind_subset.py)
	$(PY) -m hack.kind_subset

##@ The local cluster (python -m hack.cluster)

cluster-up: prereqs venv ## start it (or say it is up) and print its kubeconfig path
	$(PY) -m hack.cluster up

cluster-down: venv ## stop it and remove everything it added to the host
	$(PY) -m hack.cluster down

##@ kind: the pinned kindest/node where it can be pulled, else the project's offline node image

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

kind-down: venv ## delete the kind cluster (and stop the project's Docker engine if it ran it)
	$(PY) -m hack.cluster down --provider kind
