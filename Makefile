# Anvil peering: one development environment (.venv) for the whole workspace.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
MEMBERS := libs/anvil_wire libs/anvil_common services/registry services/bundle-worker services/push-gateway clients/cli clients/python-runtime
PYPROJECTS := $(addsuffix /pyproject.toml,$(MEMBERS))

.DEFAULT_GOAL := help
.PHONY: help venv run run-registry run-worker run-gateway test test-sqlite test-postgres lint fmt migrate bench bench-registry bench-bundles bench-push bench-runtime clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Anvil needs Python 3.11+ (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP) ## Create or update the development environment

run: $(STAMP) ## The whole stack (registry, bundle worker, push gateway, a demo client) until Ctrl-C
	@$(PY) scripts/stack.py

run-registry: $(STAMP) ## Only the registry on the embedded SQLite default, seeded with a demo project
	$(PY) -m anvil_registry run --seed-demo

run-worker: $(STAMP) ## Only the bundle worker (API on :8010 + one job loop), beside `make run-registry`
	$(PY) -m anvil_bundle_worker migrate
	@$(PY) -m anvil_bundle_worker work & worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(PY) -m anvil_bundle_worker api

run-gateway: $(STAMP) ## Only the push gateway (API + /v1/stream on :8020), beside `make run-registry`
	$(PY) -m anvil_push_gateway migrate
	ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN_FILE=$${ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN_FILE:-.anvil/admin.token} \
	$(PY) -m anvil_push_gateway serve

migrate: $(STAMP) ## Apply every service's migrations (each to its own database/schema)
	$(PY) -m anvil_registry migrate
	$(PY) -m anvil_bundle_worker migrate
	$(PY) -m anvil_push_gateway migrate

test: $(STAMP) ## Every suite on SQLite, then on Postgres (required when CI=true)
	$(PY) scripts/run_tests.py

test-sqlite: $(STAMP) ## Every suite on SQLite only
	$(PY) scripts/run_tests.py --only sqlite

test-postgres: $(STAMP) ## Every suite on Postgres only
	$(PY) scripts/run_tests.py --only postgres

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-registry bench-bundles bench-push bench-runtime ## All benchmarks (ratios against baselines measured in the same run)

bench-registry: $(STAMP) ## Registry benchmarks
	$(PY) bench/registry_bench.py

bench-bundles: $(STAMP) ## Bundle export/import benchmarks (Postgres at 127.0.0.1:5432)
	$(PY) bench/bundle_bench.py

bench-push: $(STAMP) ## Push gateway benchmarks against a bare websockets server (Postgres at 127.0.0.1:5432)
	$(PY) bench/push_bench.py

bench-runtime: $(STAMP) ## Runtime SDK: get_prompt().render() vs str.format, memory of a 1 MiB revision
	$(PY) bench/runtime_bench.py

clean: ## Remove the environment and local data
	rm -rf $(VENV) .anvil .pytest_cache .mypy_cache .ruff_cache
