# The two set-up commands of the README: `make run` and `make test`.
# Each creates .venv and installs the project into it on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
S3_PORTS ?= 8001,8002

.PHONY: run run-s3 test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/tooltool-gateway --host $(HOST) --port $(PORT)

# The production topology on this machine (deploy/topology.py): SeaweedFS as S3 in two
# regions, `tooltool-indexer init --create`, two gateways (S3_PORTS) and one indexer `watch`.
run-s3: $(BIN)/.installed
	$(BIN)/python -m deploy.topology --host $(HOST) --ports $(S3_PORTS)

test: $(BIN)/.installed
	$(BIN)/pytest --cov=gateway --cov=indexer --cov=tooltool_client --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# One table of ratios measured side by side (bench/fastpath.py: about 8 minutes; needs wrk).
bench: $(BIN)/.installed
	$(BIN)/python bench/fastpath.py $(BENCH_ARGS)

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Keeps the local store: it holds the uploaded files, the development client's
# credentials and the signing keys. `make clean-data` removes it.
clean:
	rm -rf $(VENV) .pytest_cache .coverage .ruff_cache .mypy_cache .hypothesis
	@if [ -d tooltool-data ]; then \
		echo "kept the local store ./tooltool-data; 'make clean-data' deletes it"; \
	fi

.PHONY: clean-data
clean-data:
	rm -rf tooltool-data
	@echo "deleted the local store ./tooltool-data (stored files, credentials, signing keys)"
