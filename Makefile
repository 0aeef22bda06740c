# relayguard — the two commands of the README (demo, test), plus the benchmark.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A regular (not editable) install: the hot path is compiled with mypyc (see setup.py), so the
# install is redone whenever a source file changes. pip shows the build's own output only with
# -v, so `relayguard --version` then says whether the hot path was compiled (or why not).
SOURCES := pyproject.toml setup.py $(shell find src -name '*.py' -o -name '*.toml' 2>/dev/null)
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): $(SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '.[test]'
	@$(BIN)/relayguard --version
	@touch $@

# Analyze the bundled incident. Exit code 1 only means "high findings present": that is the demo.
demo: $(STAMP)
	$(BIN)/relayguard analyze examples/incident.log --year 2026 || [ $$? -eq 1 ]

# Install what the tests need (Debian packages included), then run the whole suite.
test: $(STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Every benchmark in bench/: log analysis vs pflogsumm and grep, queue control, watch, policy.
bench: $(STAMP)
	bash scripts/install-test-deps.sh
	@for b in run queue_bench watch_bench policy_bench; do \
	  if [ -f bench/$$b.py ]; then echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
