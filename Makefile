# memdiet: every target makes its own virtualenv (.venv) from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test experiment clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

experiment: $(STAMP)
	$(VENV)/bin/memdiet matrix $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
