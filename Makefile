# The whole developer interface. Every target builds its own virtual environment from the
# package registries; nothing depends on what happens to be installed on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install develop demo test lint rust-test py-test stubtest dist wheel-check compat bench clean redis-server

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

# Rust targets added with rustup where missing (it needs its server only then).
define rustup-targets
	@for target in $(1); do \
	  rustup target list --installed | grep -qx $$target || rustup target add $$target || \
	  { echo "rustup cannot add the target $$target (see above)"; exit 1; }; \
	done
endef

# The wheels of other platforms are built by .github/workflows/release.yml; clippy checks here
# that the code compiles for them (no linker needed; PyO3 takes the abi3 floor as the version).
OTHER_TARGETS := x86_64-pc-windows-msvc x86_64-apple-darwin

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(call rustup-targets,$(OTHER_TARGETS))
	for target in $(OTHER_TARGETS); do PYO3_CROSS_PYTHON_VERSION=3.9 \
	  cargo clippy --workspace --all-targets --target $$target -- -D warnings || exit 1; done
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy

rust-test:
	cargo test -p creds-core

stubtest: develop
	$(BIN)/python -m mypy.stubtest creds_core._core --allowlist .stubtest-allowlist

# What users install (`make dist`): the sdist and a manylinux2014 abi3 wheel for each Linux
# target, linked by zig against glibc 2.17 (the build machine's own glibc would set the floor).
# zig builds with --target, into target/<triple>/: their own copy of the compiled dependencies.
DIST_STAMP := $(VENV)/.installed-dist
DIST_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu

$(DIST_STAMP): $(STAMP) requirements-dist.txt
	$(BIN)/pip install --quiet -r requirements-dist.txt
	touch $(DIST_STAMP)

dist: $(DIST_STAMP)
	$(call rustup-targets,$(DIST_TARGETS))
	rm -rf dist
	$(BIN)/maturin sdist --out dist
	@# maturin runs zig as `python -m ziglang`: the venv's python must come first.
	for target in $(DIST_TARGETS); do \
	  VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin build \
	    --release --locked --zig --compatibility manylinux2014 --target $$target --out dist \
	    || exit 1; \
	done
	ls -l dist

# The artifacts of `make dist`, checked (auditwheel, abi3audit, twine, check-wheel-contents,
# stripped, LICENSE and the metadata in each), then this machine's wheel installed into fresh virtual environments of the
# lowest and the newest CPython 3.9+ found (pyenv's too) and the sdist built from source in
# another, with a smoke test in each. The sdist's build shares target/ with `make develop`: it
# compiles only this project's two crates.
wheel-check: dist develop
	rm -rf target/wheel-venv*
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python tests/dist_check.py dist \
	  $(foreach target,$(DIST_TARGETS),$(firstword $(subst -, ,$(target))))
	$(PYTHON) -m zipfile -l dist/*-abi3-*$$(uname -m).whl
	@# The sdist's files are older than target/'s: without this, cargo would take this
	@# project's crates as built and compile nothing from the sdist.
	cargo clean --release --quiet -p creds-core -p creds-core-python
	CARGO_TARGET_DIR=$(abspath target) $(PYTHON) tests/wheel_check.py dist target

# The shared-tier tests start their own redis-server (Debian's package; no service needed).
redis-server:
	@command -v redis-server >/dev/null || (apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server) || \
	  (echo "redis-server is needed by the tests: install Debian's redis-server package" && exit 1)

py-test: develop redis-server
	$(BIN)/python -m pytest -q

# The parity suite (and the tests of the botocore glue) against the LOWEST botocore/boto3 that
# pyproject.toml declares, in a second virtual environment, on the wheel `make dist` built (pip
# picks this machine's one).
COMPAT_VENV ?= .venv-compat
COMPAT_PINS := botocore==1.34.0 boto3==1.34.0
COMPAT_STAMP := $(COMPAT_VENV)/.installed-1.34.0

$(COMPAT_STAMP):
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/pip install --quiet $(COMPAT_PINS) "pytest>=8" "pytest-timeout>=2.3" "moto[server]>=5" "tqdm>=4.66"
	touch $(COMPAT_STAMP)

compat: dist $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/pip install --quiet --force-reinstall --no-deps --no-index \
	  --find-links dist --only-binary creds_core creds_core
	$(COMPAT_VENV)/bin/python -c "import botocore, boto3; print('compat: botocore', botocore.__version__, 'boto3', boto3.__version__)"
	$(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_parity.py \
	  tests/test_identity_center.py tests/test_botocore_compat.py tests/test_memory.py \
	  tests/test_credentials.py tests/test_api_limits.py

test: lint rust-test stubtest wheel-check compat py-test

# Benchmarks (about 6 minutes): writes docs/benchmarks.md and docs/benchmarks.png.
bench: develop redis-server
	$(BIN)/python benches/report.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) target dist
