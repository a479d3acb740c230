# Two commands do everything on a fresh machine:
#   make run    set up, build the demo app (unless RECONCILE_APP_DB_URL is set), reconcile once
#   make test   set up, run the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
# Dagster's switches for runs over many partitions (reconcile_pipeline/dagster_env.py): the code
# location sets them for its own processes; the daemon and webserver take them from here.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

.PHONY: setup services run dev test test-fast lint bench

$(BIN)/reconcile-pipeline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/reconcile-pipeline

run: setup
	@if [ -z "$$RECONCILE_APP_DB_URL" ]; then $(BIN)/reconcile-pipeline demo --if-missing --workspaces 200; fi
	@$(BIN)/reconcile-pipeline reconcile

dev: setup
	@if [ -z "$$RECONCILE_APP_DB_URL" ]; then $(BIN)/reconcile-pipeline demo --if-missing --workspaces 200; fi
	$(BIN)/reconcile-pipeline dev

# What the end-to-end tests talk to: the local PostgreSQL, Redis and RabbitMQ (started when down) and a
# headless Chromium for the UI screenshots (installed with apt when missing; needs root).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || rabbitmq-server -detached
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The suite on pytest-xdist workers: the slow tests first, longest first, everything else beside
# them (reconcile_pipeline_tests/conftest.py says how; `make test` takes about 10 minutes on 2 cores).
# Two workers a core: many end-to-end tests spend their time waiting on a daemon, a retry or a sleep.
TEST_WORKERS ?= 4
XDIST = --dist loadgroup --no-loadscope-reorder

test: setup services
	$(BIN)/ruff format --check reconcile_pipeline reconcile_pipeline_tests scripts
	$(BIN)/ruff check reconcile_pipeline reconcile_pipeline_tests scripts
	$(BIN)/dg check defs
	$(BIN)/pytest -n $(TEST_WORKERS) $(XDIST) --durations=25

# Every test not marked slow, in under 2 minutes.
test-fast: setup
	$(BIN)/pytest -m "not slow" -n 3 $(XDIST)

lint: setup
	$(BIN)/ruff format reconcile_pipeline reconcile_pipeline_tests scripts
	$(BIN)/ruff check --fix reconcile_pipeline reconcile_pipeline_tests scripts

bench: setup
	$(BIN)/python scripts/benchmark.py --sizes 100,1000,5000
	$(BIN)/python scripts/idle_meter.py --workspaces 100 --minutes 3 --launchers dagster,preloaded --servers dg,direct
