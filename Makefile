# memdiet: every target makes its own virtualenv (.venv) from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test experiment soak notebooks lab regress baseline bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The suite, then the memory ceilings, which pytest-memray enforces only under --memray.
test: $(STAMP)
	$(PY) -m pytest -m "not memray_ceiling" $(PYTEST_ARGS)
	$(PY) -m pytest --memray -m memray_ceiling -q $(PYTEST_ARGS)

# The full study (QUICK=1: a reduced matrix in well under a minute); writes reports/latest/.
experiment: $(STAMP)
	$(VENV)/bin/memdiet matrix $(if $(QUICK),--quick)

# Long versions of the reliability tests (hostile clients, leak checks at full size).
soak: $(STAMP)
	MEMDIET_SOAK=1 $(PY) -m pytest -q -m soak tests/

# Execute every notebook on real results into reports/notebooks/ (outputs never go in notebooks/).
notebooks: $(STAMP)
	$(PY) -m experiments.notebook_runner notebooks reports/notebooks

lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,lab]'
	$(VENV)/bin/jupyter lab notebooks/

# Quick matrix against the committed baseline; writes reports/regression.md, exit 1 on a regression.
regress: $(STAMP)
	$(VENV)/bin/memdiet regress --quick

# Write a new baseline from a fresh quick matrix, deliberately.
baseline: $(STAMP)
	$(VENV)/bin/memdiet baseline --quick

# Side-by-side with uvicorn, aiohttp and plain asyncio (QUICK=1: one trial, N = 1,000), then one
# throughput run per subject under cProfile (--profile: where each server's time goes, in bench.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(VENV)/bin/memdiet bench --profile $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
