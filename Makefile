# One command each: `make test` (set up everything, then run the whole suite) and `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test demo lint bench clean pythons

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The exact tested set (constraints.txt) within the ranges pyproject.toml declares.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

# bitcoind for the regtest tests: from PATH or BITCOIND/BITCOIN_CLI, else unpacked into .cache/bitcoin/.
setup: $(VENV)/.installed
	@sh regtest/install-bitcoind.sh >/dev/null

# The real-node tests take lightningd from PATH, else unpack ../shared/cln/cln-v26.06.6-x86_64.tar.xz into
# .cache/cln/ (tests/lightningd_bundle.py checks its sha256). That build has no Rust plugins: RUST=0 tells
# pyln-testing not to ask for cln-grpc.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	RUST=0 $(BIN)/python -m pytest -q

demo: setup
	$(BIN)/frostfed demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/crypto.py

# Each supported Python: with an interpreter that runs (on PATH, or pyenv's), a virtual environment in
# .cache/, the project installed from constraints.txt and the quick suite run under it; without one,
# whether every pinned package has a wheel for it (tools/check_wheels.py).
PYTHONS ?= 3.11 3.12 3.13
pythons: setup
	@set -e; for v in $(PYTHONS); do \
	  py=$$(for c in python$$v $$HOME/.pyenv/versions/$$v*/bin/python$$v; do \
	    if $$c -c pass 2>/dev/null; then echo $$c; break; fi; done); \
	  if [ -n "$$py" ]; then \
	    echo "== Python $$v ($$py): install and quick suite"; \
	    $$py -m venv .cache/py$$v && .cache/py$$v/bin/pip install -q --upgrade pip && \
	    .cache/py$$v/bin/pip install -q -c constraints.txt -e '.[test]' && \
	    RUST=0 .cache/py$$v/bin/python -m pytest -q -m "not slow" -p no:cacheprovider; \
	  else \
	    echo "== Python $$v: no interpreter here, checking the wheels"; \
	    $(BIN)/python tools/check_wheels.py $$v; \
	  fi; \
	done

clean:
	rm -rf $(VENV) .cache .pytest_cache
