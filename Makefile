# Two commands for a new user: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo component provider-demo wire-demo test lint wit bench chaos conformance clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the project with its dev extras"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The example guest component (componentize-py; skipped when its sources did not change).
component: $(STAMP)
	$(PY) components/build.py

demo: component
	$(PY) -m host_shim wadm.yaml

provider-demo: $(STAMP)
	$(PY) -m host_shim.provider_demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check provider host_shim tests bench components
	$(PY) -m ruff format --check provider host_shim tests bench components
	$(PY) -m mypy

# Re-resolve wit/ after editing it (the test suite fails while the stored copy is stale).
wit: $(STAMP)
	$(PY) -m provider.wrpc.wit_resolve

bench: $(STAMP)
	$(PY) -m bench.codec_bench
	$(PY) -m bench.transport_bench
	$(PY) -m bench.provider_bench
	$(PY) -m bench.shim_bench

# The long chaos run (tests/test_statements_chaos.py runs a short one in `make test`).
chaos: $(STAMP)
	$(PY) -m bench.chaos_run

# The conformance suite alone, with the differential report against wash 2.10.
conformance: component
	$(PY) -m pytest tests/conformance -s -q

wire-demo: $(STAMP)
	$(PY) -m host_shim.wire_demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
