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

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/frostfed demo

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/crypto.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
