# modeldrop: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint format bench demo up clean bundle

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the 2.13.0 CPU build (see pyproject's local-serving extra)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check shared functions tests
	$(PY) -m ruff format --check shared functions tests
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check shared functions tests

format: $(STAMP)
	$(PY) -m ruff format shared functions tests
	$(PY) -m ruff check --fix shared functions tests

demo: $(STAMP)
	$(VENV)/bin/modeldrop demo

up: $(STAMP)
	$(VENV)/bin/modeldrop up

bench: $(STAMP)
	$(PY) -m tests.bench

# The Cloud Functions source archive (build/modeldrop-functions.zip) Terraform deploys.
bundle: $(STAMP)
	$(PY) -m modeldrop.bundle

clean:
	rm -rf $(VENV) build dist .modeldrop shared/*.egg-info
