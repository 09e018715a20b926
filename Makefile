# One command each: `make test` (set up everything, then run the whole suite) and `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test demo lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
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

clean:
	rm -rf $(VENV) .cache .pytest_cache
