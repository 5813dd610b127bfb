# The whole developer interface. Every target builds its own virtual environment from the
# package registries; nothing depends on what happens to be installed on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install develop demo test lint rust-test py-test stubtest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# Rebuild the extension in place (release mode: the hot path is what users run).
develop: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --quiet

demo: develop
	$(BIN)/python -m creds_core.demo

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy

rust-test:
	cargo test -p creds-core

stubtest: develop
	$(BIN)/python -m mypy.stubtest creds_core._core --allowlist .stubtest-allowlist

py-test: develop
	$(BIN)/python -m pytest -q

test: lint rust-test stubtest py-test

bench: develop
	$(BIN)/python -m pytest benches -q --benchmark-only

clean:
	rm -rf $(VENV) target
