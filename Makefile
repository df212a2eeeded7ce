# memdiet: every target makes its own virtualenv (.venv) from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The extras .venv gets: dev (the tests); CI adds bench (EXTRAS=dev,bench), so the peers uvicorn and
# aiohttp are tested too. One stamp per set of extras: asking for more installs them.
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
# What .ci/run installs through apt (Debian): valgrind (ms_print reads our massif.out exports), wrk
# (the bench's throughput path); nginx-light, chromium and chromium-driver are for coming work and
# not used yet.
SYSTEM_PACKAGES := valgrind wrk nginx-light chromium chromium-driver

.PHONY: venv system-deps test experiment soak notebooks lab regress baseline bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# System tools the tests use that pip cannot install (as root, on Debian or Ubuntu).
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null

# The suite, then the memory ceilings, which pytest-memray enforces only under --memray.
test: $(STAMP)
	$(PY) -m pytest -m "not memray_ceiling" $(PYTEST_ARGS)
	$(PY) -m pytest --memray -m memray_ceiling -q $(PYTEST_ARGS)

# The full study into reports/latest/ (committed). QUICK=1: a reduced matrix in well under a minute,
# into reports/quick/ (git-ignored, so it leaves the committed report and git status alone).
experiment: $(STAMP)
	$(VENV)/bin/memdiet matrix $(if $(QUICK),--quick)

# Long versions of the reliability tests (hostile clients, leak checks at full size).
soak: $(STAMP)
	MEMDIET_SOAK=1 $(PY) -m pytest -q -m soak tests/ $(PYTEST_ARGS)

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
