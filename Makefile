# advisoros-hub developer commands. Two matter most:
#
#   make run    create .venv if needed, install the hub, start it on its defaults
#   make test   install test dependencies, then ruff, ruff format --check, mypy and pytest
#
# Installs are recorded by stamp files in .venv, so a second run skips pip entirely unless
# pyproject.toml (or the example plugin's) changed. `make clean` drops the stamps.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.stamp-run
DEV_STAMP := $(VENV)/.stamp-dev
EXAMPLE := examples/custom_accounting
BENCH_ARGS ?=
PYTEST_ARGS ?=
SYSTEMD_ANALYZE ?= systemd-analyze
# apt-get needs root; use sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help run demo test test-deps python-deps system-deps azurite lint pytest bench clean distclean

help:
	@echo "make run        install (if needed) and start the hub on 127.0.0.1:8700"
	@echo "make test       test-deps + lint + pytest (what CI runs: .ci/run)"
	@echo "make demo       the hub with local sandbox providers, pre-connected, offline"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make bench      python bench/sync.py (BENCH_ARGS=--million for 1M records)"
	@echo "make test-deps  everything the tests need (Python packages, systemd-analyze)"
	@echo "make clean      remove caches, build output and install stamps (keeps .venv, hub.db)"
	@echo "make distclean  clean + remove .venv"

# ---------------------------------------------------------------- environment

$(PY):
	$(PYTHON) -m venv $(VENV)

# The daemon only.
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

# The daemon, test tools and the example third-party plugin (used by tests, bench, demo).
$(DEV_STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml | $(PY)
	$(PIP) install -e '.[test]' -e $(EXAMPLE)
	touch $(RUN_STAMP) $@

# ---------------------------------------------------------------- running

run: $(RUN_STAMP)
	$(BIN)/advisoros-hub serve

demo: $(DEV_STAMP)
	$(BIN)/advisoros-hub demo

bench: $(DEV_STAMP)
	$(PY) bench/sync.py $(BENCH_ARGS)

# ---------------------------------------------------------------- tests

# Everything `make test` needs installed: Python packages, Debian tools, and Azurite (npm),
# the local Blob Storage emulator the Azure Storage plugin's tests run against.
test-deps: python-deps system-deps azurite

AZURITE_DIR := .cache/azurite
AZURITE_STAMP := $(AZURITE_DIR)/.stamp-3.37
azurite: $(AZURITE_STAMP)

# Run from the repository root (npm misbehaves beside a folder named azurite).
$(AZURITE_STAMP):
	npm install --prefix $(AZURITE_DIR) --no-audit --no-fund azurite@3.37
	touch $@

python-deps: $(DEV_STAMP)

# Debian packages the tests use: systemd-analyze verifies deploy/advisoros-hub.service
# (tests/test_deploy.py), chromium runs the admin page's browser tests through Playwright
# (which must never download its own browsers), wrk drives bench/webhooks.py.
SYSTEM_TOOLS := $(SYSTEMD_ANALYZE):systemd chromium:chromium wrk:wrk
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# `python -m pytest` puts the repository root on sys.path (tests import tests.conftest).
pytest: test-deps
	timeout 1500 $(PY) -m pytest -q $(PYTEST_ARGS)  # a hang fails CI in 25 min, not 90

test: test-deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory pytest

# ---------------------------------------------------------------- cleaning

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . \( -path ./.venv -o -path ./.git -o -path ./node_modules \) -prune -o \
		-type d -name __pycache__ -exec rm -rf {} +
	rm -f $(RUN_STAMP) $(DEV_STAMP)

distclean: clean
	rm -rf $(VENV) $(AZURITE_DIR)
