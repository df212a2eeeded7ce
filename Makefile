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
# test compiles a C program whose allocations are known), iproute2 (ss: the kernel's socket memory);
# git, cmake, pkgconf, zlib1g-dev and libsqlite3-dev build Lwan's revisions (make lwan, lwan-quick);
# lighttpd and nodejs (make subjects: real servers memdiet never saw, a daemonizing one among them).
SYSTEM_PACKAGES := valgrind wrk nginx-light chromium chromium-driver gcc iproute2 git cmake pkgconf zlib1g-dev libsqlite3-dev lighttpd nodejs

.PHONY: venv system-deps test docs subjects experiment soak notebooks lab screenshots regress baseline bench sweep lwan lwan-quick clean

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

# The documentation site (mkdocs.yml, docs/), served with live reload on DOCS_ADDR; make test builds it
# with --strict (tests/test_docs.py).
DOCS_ADDR ?= 127.0.0.1:8000
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr $(DOCS_ADDR)

# Real servers memdiet never saw (the subjects extra from PyPI, lighttpd and node from Debian), each
# through memdiet run --cmd at C = 200 and checked against an outside measurement, or a figure left
# empty with its reason: one test at a time (their RSS is compared with the test's own reading), about
# 12 minutes. The subjects extra is installed if EXTRAS does not hold it.
comma := ,
subjects:
	$(MAKE) venv EXTRAS=$(if $(findstring subjects,$(EXTRAS)),$(EXTRAS),$(EXTRAS)$(comma)subjects)
	$(VENV)/bin/python -m pytest -m "subjects and not soak" -q -p no:randomly $(PYTEST_ARGS)

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

# Lwan's own history (issue 22): Lwan built at the commits of its 2013 memory diet and at today's head
# (experiments/revisions/lwan/), each run through the scenario under rss and massif, into reports/lwan/
# (committed): struct sizes from DWARF, idle RSS at this machine's RLIMIT_NOFILE, the curves on one
# scale. The bundle is ../shared/lwan.bundle unless LWAN_BUNDLE names another; builds are cached in
# build/revisions/ (about 20 minutes the first time, mostly massif). Massif's idle phases are 0.4 s
# before valgrind's 10x stretch: Lwan's 2013 keep-alive timeout is 5 s.
LWAN_BUNDLE ?=
LWAN_ENV := $(if $(LWAN_BUNDLE),MEMDIET_LWAN_BUNDLE=$(LWAN_BUNDLE))
# Then two bisections on the same build cache, kept beside the report (bisect-*.json) and tabled in it:
# the first commit whose lwan_request_t is under 170 B (c9117ee7 has 176, f9f5ce00 144), and the one
# that dropped idle RSS below 47 MiB (halfway between 58c4bd8b's 83.8 and ebda2aaf's 10.1), 3 runs a step.
lwan: $(STAMP)
	$(LWAN_ENV) $(VENV)/bin/memdiet revisions --preset lwan --probes rss,massif --massif-idle 0.4 -o reports/lwan
	$(LWAN_ENV) $(VENV)/bin/memdiet bisect --preset lwan --good c9117ee7 --bad f9f5ce00 \
		--figure 'struct:lwan_request_t|lwan_request' --threshold 170 -o reports/lwan/bisect-struct.json
	$(LWAN_ENV) $(VENV)/bin/memdiet bisect --preset lwan --good 58c4bd8b --bad e871417e --figure idle_rss_bytes \
		--threshold 47MiB --repeat 3 --connections 100 --idle 1 --load 0.5 -o reports/lwan/bisect-idle-rss.json
	$(VENV)/bin/memdiet revisions --report-only -o reports/lwan

# CI's bounded form (a few minutes): three of the post's commits under rss with 100 clients into
# reports/lwan-quick/ (git-ignored), then a bisection of lwan_request_t's size between two of them,
# on the builds just cached.
lwan-quick: $(STAMP)
	$(LWAN_ENV) $(VENV)/bin/memdiet revisions --preset lwan 58c4bd8b ebda2aaf e871417e --connections 100 \
		--idle 0.5 --load 0.5 -o reports/lwan-quick
	$(LWAN_ENV) $(VENV)/bin/memdiet bisect --preset lwan --good ebda2aaf --bad 892017e6 \
		--figure 'struct:lwan_request_t|lwan_request' --threshold 236 -o reports/lwan-quick/bisect-struct.json

clean:
	rm -rf $(VENV) build *.egg-info
