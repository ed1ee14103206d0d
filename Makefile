# Quick start: `make run` and `make test` each set themselves up on a fresh machine
# (only Python 3.11 and pip needed): they create .venv and install Liquid into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser run test test-all lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	touch $(STAMP)

run: install
	$(BIN)/liquid up

# The dashboard's browser test needs Debian's chromium: installed here when missing and this is
# root with apt; never fails the run (without chromium that one test skips and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the dashboard's browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "no chromium and no root apt: the browser test will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest

test-all: install browser
	$(BIN)/python -m pytest -m ''

lint: install
	$(BIN)/ruff check liquid daemon dashboard tests benchmarks
	$(BIN)/ruff format --check liquid daemon dashboard tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks.core_io

clean:
	rm -rf $(VENV) .liquid .pytest_cache .mypy_cache .ruff_cache
