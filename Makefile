# The two commands of the README: `make up` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install up test lint typecheck unit integration compose-check bench bench-cost bench-baseline clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

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

bench: install
	$(BIN)/python -m bench.engine

bench-cost: install
	$(BIN)/python -m bench.cost --rate 200 --buffer-age 25 --seconds 100

bench-baseline: install
	$(BIN)/python -m bench.baseline

clean:
	rm -rf $(VENV) .telemetry .pytest_cache .mypy_cache .ruff_cache
