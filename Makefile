# Two commands for a new user: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo component par release-par release-test provider-demo wire-demo test lattice-test demo-lattice lint wit bench bench-quick soak chaos conformance clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the project with its dev extras"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The example guest component (componentize-py; skipped when its sources did not change).
component: $(STAMP)
	$(PY) components/build.py

# The provider as a wasmCloud 1.x host starts it: a self-contained executable (PyInstaller,
# ~30 s, in a runtime-only venv under build/) in a signed provider archive, for this machine's
# target. Rebuilt only when the provider's sources change.
EXECUTABLE := build/sqldb-postgres
PAR := build/sqldb-postgres.par
EXECUTABLE_INPUTS := $(shell find provider provider_archive/pyinstaller provider_archive/executable.py \
	provider_archive/build_env.py \
	-name '*.py' -o -name '*.json') pyproject.toml

$(EXECUTABLE): $(STAMP) $(EXECUTABLE_INPUTS)
	$(PY) -m provider_archive executable --output $@

build/world.wasm: $(STAMP) $(wildcard wit/*.wit)
	$(PY) -m provider_archive world --output $@

$(PAR): $(EXECUTABLE) build/world.wasm
	$(PY) -m provider_archive create --binary $(EXECUTABLE) --world build/world.wasm --output $@

par: $(PAR)

# The release archive: x86_64-linux (the executable above) and aarch64-linux, built in an
# emulated arm64 root cached outside the clone (needs root, mmdebstrap, qemu-user-static).
RELEASE_PAR := build/release/sqldb-postgres.par
release-par: $(EXECUTABLE) build/world.wasm
	$(PY) -m provider_archive release --native $(EXECUTABLE) --world build/world.wasm --output $(RELEASE_PAR)

# The release archive checked, and its aarch64 executable put through the executable suite
# under qemu-user, started as a host starts it (needs libc6:arm64 and zlib1g:arm64, multiarch).
release-test: release-par
	RELEASE_TESTS=1 PROVIDER_PAR=$(RELEASE_PAR) $(PY) -m pytest tests/release -v
	HOST_SHIM_TARGET=aarch64-linux PROVIDER_PAR=$(RELEASE_PAR) $(PY) -m pytest -v -s \
		tests/e2e/test_provider_executable.py

# DEMO_FLAGS=--show-traces: the shim starts an OTLP receiver and prints each invocation's trace.
DEMO_FLAGS ?=
demo: component par
	$(PY) -m host_shim wadm.yaml $(DEMO_FLAGS)

provider-demo: $(STAMP)
	$(PY) -m host_shim.provider_demo

test: $(STAMP) par
	$(PY) -m pytest

# The real wasmCloud 1.9.2 host, wadm 0.21.1 and secrets-nats-kv 0.2.0 (tests/lattice), built
# from crates.io into a cache outside the clone: 12-25 min the first time, seconds after.
lattice-test: $(STAMP) component par
	$(PYTHON) tests/lattice/build.py
	LATTICE_TESTS=1 $(PY) -m pytest tests/lattice -v -s

# `make demo`'s deployment on the real host, wadm and secrets backend (same harness and cache).
demo-lattice: $(STAMP) component par
	$(PY) -m tests.lattice.demo

lint: $(STAMP)
	$(PY) -m ruff check provider provider_archive host_shim devkit tests bench components
	$(PY) -m ruff format --check provider provider_archive host_shim devkit tests bench components
	$(PY) -m mypy

# Re-resolve wit/ after editing it (the test suite fails while the stored copy is stale).
wit: $(STAMP)
	$(PY) -m provider.wit.resolve

# The provider's CPU per call against asyncpg's own (bench/results/latest.json, latest.png).
bench-quick: $(STAMP)
	$(PY) -m bench.fair_bench --quick

# Two replicas for SOAK_MINUTES (default 20) under load, churn and faults: what they hold.
soak: $(STAMP)
	$(PY) -m bench.soak

bench: $(STAMP) component
	$(PY) -m bench.fair_bench
	$(PY) -m bench.wash_compare
	$(PY) -m bench.codec_bench
	$(PY) -m bench.transport_bench
	$(PY) -m bench.shim_bench
	$(PY) -m bench.transactions_bench
	$(PY) -m bench.isolation_bench
	$(PY) -m bench.tracing_bench

# The long chaos run (tests/integration/test_statements_chaos.py runs a short one in `make test`).
chaos: $(STAMP)
	$(PY) -m bench.chaos_run

# The conformance suite alone, with the differential report against wash 2.10.
conformance: component
	$(PY) -m pytest tests/e2e/conformance -s -q

wire-demo: $(STAMP)
	$(PY) -m host_shim.wire_demo

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
