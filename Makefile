# modeldrop: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: install test lint format bench demo up clean bundle browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the 2.13.0 CPU build (see pyproject's local-serving extra)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard's browser tests drive Debian's Chromium (playwright cannot download browsers
# here): installed with apt-get when it is missing and this user can; else those tests skip.
browser:
	@if [ -x $(CHROMIUM) ]; then \
	  :; \
	elif command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; } \
	    || echo "Chromium could not be installed: the browser tests will skip"; \
	else \
	  echo "no Chromium at $(CHROMIUM), and apt-get needs root: the browser tests will skip"; \
	fi

test: $(STAMP) browser
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
	$(VENV)/bin/modeldrop up --demo-model

bench: $(STAMP)
	$(PY) -m tests.bench

# The Cloud Functions source archive (build/modeldrop-functions.zip) Terraform deploys.
bundle: $(STAMP)
	$(PY) -m modeldrop.bundle

clean:
	rm -rf $(VENV) build dist .modeldrop shared/*.egg-info
