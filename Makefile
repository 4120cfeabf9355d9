# certmodel — run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Shared, clone-independent caches (Go-built control plane, tools, prepared base models).
CACHE ?= $(HOME)/.cache/certmodel
export CERTMODEL_CACHE := $(CACHE)
VENV := .venv
PYTHON := $(VENV)/bin/python
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CACHE)/uv/bin/uv)
PYTEST_ARGS ?=

-include hack/kube/cluster.mk

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CACHE)/uv/bin/uv:
	python3 -m venv $(CACHE)/uv
	$(CACHE)/uv/bin/pip install -q uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## create .venv from uv.lock (torch, transformers, peft, kopf, dev tools)

.PHONY: lock
lock: | $(UV) ## re-resolve uv.lock after a change to pyproject.toml
	$(UV) lock

.PHONY: lint
lint: venv ## ruff, mypy --strict, import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports .importlinter
	$(VENV)/bin/lint-imports .importlinter-operator

.PHONY: fmt
fmt: venv ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: venv lint check-generated kube-bins browser ## set up everything and run the whole suite (unit, runtime, control plane)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: test-faults
test-faults: venv kube-bins browser ## the reliability scenarios (faults, bad input, signing, security); writes docs/reliability.md
	$(VENV)/bin/pytest -m reliability --reliability-report=docs/reliability.md $(PYTEST_ARGS)

# Debian's Chromium for the console's browser test (never a test tool's own browser download).
CHROMIUM ?= /usr/bin/chromium
.PHONY: browser
browser: ## install Debian's chromium for the console's browser test (needs root and apt)
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian's chromium for the browser test"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else sudo apt-get install -y -q chromium >/dev/null; fi; \
	fi
	@test -x "$(CHROMIUM)" || { echo "FAILED: $(CHROMIUM) is missing; the console test needs it" >&2; exit 1; }

.PHONY: test-unit
test-unit: venv ## the fast unit tests without torch or a cluster (seconds)
	$(VENV)/bin/pytest tests/unit -m "not torch and not cluster" $(PYTEST_ARGS)

.PHONY: demo
demo: venv kube-bins ## set up and run the main job end to end (see README)
	$(PYTHON) hack/demo.py

.PHONY: clean
clean: ## remove build outputs in this clone (keeps the shared cache)
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .import_linter_cache out

GENERATED_DIRS := crds charts/certmodel/crds

.PHONY: generate
generate: venv ## regenerate the CRDs (and the chart's copy) from the typed API models
	$(PYTHON) -m certmodel.operator.crdgen $(GENERATED_DIRS)

.PHONY: check-generated
check-generated: venv ## fail if generated files differ from the API models (drift)
	$(PYTHON) -m certmodel.operator.crdgen --check $(GENERATED_DIRS)

.PHONY: chart-test
chart-test: venv kube-bins ## helm lint/template, manifest validation, RBAC and install checks
	$(VENV)/bin/pytest tests/chart $(PYTEST_ARGS)

.PHONY: e2e-kind
e2e-kind: ## for users with Docker: kind cluster, build and load images, helm install, run the sample
	hack/e2e-kind.sh

BENCH_OUT := benchmarks/out

.PHONY: bench
bench: venv kube-bins ## run every benchmark side by side with its baseline; tables in benchmarks/out/
	@mkdir -p $(BENCH_OUT)
	$(PYTHON) benchmarks/bench_training.py | tee $(BENCH_OUT)/training.md
	$(PYTHON) benchmarks/bench_serving.py --threads 1 | tee $(BENCH_OUT)/serving.md
	PYTHONPATH=hack:tests $(PYTHON) benchmarks/bench_operator.py --out $(BENCH_OUT)/operator.md
	@echo "tables written to $(BENCH_OUT)/; docs/benchmarks.md records them with their commands"
