# relayguard — the two commands of the README, plus the benchmark.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/relayguard: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# Analyze the bundled incident. Exit code 1 only means "high findings present": that is the demo.
demo: $(BIN)/relayguard
	$(BIN)/relayguard analyze examples/incident.log --year 2026 || [ $$? -eq 1 ]

# Install what the tests need (Debian packages included), then run the whole suite.
test: $(BIN)/relayguard
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: $(BIN)/relayguard
	bash scripts/install-test-deps.sh
	$(BIN)/python bench/run.py

lint: $(BIN)/relayguard
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
