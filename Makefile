# memdiet: every target makes its own virtualenv (.venv) from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The extras .venv gets: dev (the tests); CI adds bench (EXTRAS=dev,bench), so the peers uvicorn and
# aiohttp are tested too. One stamp per set of extras: asking for more installs them.
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
# What .ci/run installs through apt (Debian): valgrind (the massif probe; ms_print reads our massif.out
# exports), wrk (the bench's throughput path), nginx-light (a native subject), chromium and
# chromium-driver (tests/browser: the interactive report in a real browser), gcc (the massif reader's
# test compiles a C program whose allocations are known), iproute2 (ss: the kernel's socket memory).
SYSTEM_PACKAGES := valgrind wrk nginx-light chromium chromium-driver gcc iproute2

.PHONY: venv system-deps test subjects experiment soak notebooks lab screenshots regress baseline bench sweep clean

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

# The suite on two workers (pytest-xdist; 7.5 min here instead of 12.4 serially); then, with nothing
# beside them, the tests that measure how much identical runs differ (marked alone: a test on the
# other worker moved heap per held connection by 2.8 B where 2 B is allowed); then the memory
# ceilings, one at a time, which pytest-memray enforces only under --memray.
test: $(STAMP)
	$(PY) -m pytest -n 2 -m "not memray_ceiling and not alone and not subjects" $(PYTEST_ARGS)
	$(PY) -m pytest -m "alone and not memray_ceiling and not subjects" -q $(PYTEST_ARGS)
	$(PY) -m pytest --memray -m memray_ceiling -q $(PYTEST_ARGS)

# Real servers (the subjects extra: sanic, hypercorn, gunicorn) through the scenario, each figure checked
# against an outside measurement, or empty with its reason (about 5 minutes, one at a time: the checks
# compare RSS).
comma := ,
subjects:
	$(MAKE) venv EXTRAS=$(if $(findstring subjects,$(EXTRAS)),$(EXTRAS),$(EXTRAS)$(comma)subjects)
	$(VENV)/bin/python -m pytest -m subjects -q -p no:randomly $(PYTEST_ARGS)

# The full study into reports/latest/ (committed): the five layouts, then the peers uvicorn, aiohttp
# and asyncio (the bench extra, installed here), each under rss, tracemalloc and memray. QUICK=1: the
# layouts only, rss and tracemalloc, in about a minute, into reports/quick/ (git-ignored, so it leaves
# the committed report and git status alone).
experiment: $(STAMP)
	$(if $(QUICK),,$(MAKE) venv EXTRAS=dev,bench)
	$(VENV)/bin/memdiet matrix $(if $(QUICK),--quick)

# README's screenshots of reports/latest/index.html, retaken by the browser test in headless chromium.
screenshots: $(STAMP)
	MEMDIET_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/browser -k committed

# Long versions of the reliability tests (hostile clients, leak checks at full size).
soak: $(STAMP)
	MEMDIET_SOAK=1 $(PY) -m pytest -q -m soak tests/ $(PYTEST_ARGS)

# Execute every notebook on real results into reports/notebooks/ (outputs never go in notebooks/).
notebooks: $(STAMP)
	$(PY) -m experiments.notebook_runner notebooks reports/notebooks

lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,lab]'
	$(VENV)/bin/jupyter lab notebooks/

# Quick matrix against the committed baseline; writes reports/regression.md and .json, appends a record
# to reports/history.jsonl (`memdiet history` draws it), exit 1 on a regression. REGRESS_FORMAT=github
# (the workflow) prints one ::error annotation per failing figure; json prints regression.json.
REGRESS_FORMAT ?= markdown
regress: $(STAMP)
	$(VENV)/bin/memdiet regress --quick --format $(REGRESS_FORMAT)

# Write a new baseline deliberately: three quick matrices, tolerances learned from their spread.
baseline: $(STAMP)
	$(VENV)/bin/memdiet baseline --quick --repeat 3

# The scaling laws (RSS = a + b·slots + c·held per layout, from a grid of real runs within RLIMIT_NOFILE)
# into reports/latest/sweep/ (about 4 minutes); QUICK=1: two sizes × two C, into reports/quick/sweep/ (2 minutes).
sweep: $(STAMP)
	$(VENV)/bin/memdiet sweep $(if $(QUICK),--quick)

# Side-by-side with uvicorn, aiohttp and plain asyncio (QUICK=1: one trial, N = 1,000), then one
# throughput run per subject under cProfile (--profile: where each server's time goes, in bench.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(VENV)/bin/memdiet bench --profile $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
