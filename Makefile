# The two commands of the README: `make up` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install up test lint typecheck unit integration compose-check bench bench-engine bench-cost \
	bench-baseline bench-reports bench-store clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

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

integration: install
	$(BIN)/pytest tests/integration

test: lint typecheck
	$(BIN)/pytest

compose-check:
	docker-compose -f docker-compose.yml config --quiet

# The whole stack at rising rates: bench/results/report.md and its plots (about 10 minutes).
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.pipeline

bench-engine: install
	$(BIN)/python -m bench.engine

bench-cost: install
	$(BIN)/python -m bench.cost --rate 200 --buffer-age 25 --seconds 100

bench-baseline: install
	$(BIN)/python -m bench.baseline

# The ticket store's cost per batch at 0, 30 and 365 days of history (about 20 minutes).
bench-store: install
	$(BIN)/python -m bench.store

# Report latency over 10 M tickets (first run: about 25 minutes and 20 GB in .telemetry/).
# It loads the rollup dimensions the measured reports read; --dims all of them: ~1.5 h.
bench-reports: install
	$(BIN)/python -m bench.report_latency --dims all,group,agent

clean:
	rm -rf $(VENV) .telemetry .pytest_cache .mypy_cache .ruff_cache
