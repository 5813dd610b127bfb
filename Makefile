# The whole developer interface. Every target builds its own virtual environment from the
# package registries; nothing depends on what happens to be installed on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install develop demo test lint rust-test py-test stubtest wheel-check bench clean redis-server

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
	$(BIN)/python -m creds_core demo

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

# One abi3 wheel that installs and imports in a fresh virtual environment.
wheel-check: develop
	rm -rf dist target/wheel-venv
	$(BIN)/maturin build --release --quiet --out dist
	test $$(ls dist/*-abi3-*.whl | wc -l) -eq 1
	$(PYTHON) -m venv target/wheel-venv
	target/wheel-venv/bin/pip install --quiet dist/*.whl
	cd /tmp && $(CURDIR)/target/wheel-venv/bin/python -c "import creds_core, creds_core._core as m; \
	  c = creds_core.CredentialCache(lambda: creds_core.Credentials('AK', 's')); \
	  assert c.get().access_key_id == 'AK'; print('wheel ok:', m.__file__)"

# The shared-tier tests start their own redis-server (Debian's package; no service needed).
redis-server:
	@command -v redis-server >/dev/null || (apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server) || \
	  (echo "redis-server is needed by the tests: install Debian's redis-server package" && exit 1)

py-test: develop redis-server
	$(BIN)/python -m pytest -q

test: lint rust-test stubtest wheel-check py-test

# Benchmarks (about 6 minutes): writes docs/benchmarks.md and docs/benchmarks.png.
bench: develop redis-server
	$(BIN)/python benches/report.py

clean:
	rm -rf $(VENV) target
