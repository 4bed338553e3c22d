# Waveline developer commands. `make up` and `make test` are the two that matter.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up down status test lint unit integration docs schemas bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)          ## start Kafka, PostgreSQL and the five services (safe to repeat)
	$(BIN)/waveline dev up

down:                 ## stop everything `make up` started
	@if [ -x $(BIN)/waveline ]; then $(BIN)/waveline dev down; fi

status: $(STAMP)
	$(BIN)/waveline dev status

lint: $(STAMP)        ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint            ## lint, then the whole suite against real Kafka, PostgreSQL and git
	$(BIN)/python -m tests.suite

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

schemas: $(STAMP)     ## regenerate schemas/ from the message models
	$(BIN)/python -m waveline.shared.schemas schemas

docs: $(STAMP)        ## AsyncAPI document of the FastStream apps
	$(BIN)/python -m waveline.cli.docs docs/asyncapi.json

bench: $(STAMP)       ## benchmarks (results: docs/benchmarks.md); needs `make up` or WAVELINE_* env
	$(BIN)/python -m bench.git_writer

clean: down
	rm -rf .run $(VENV)
