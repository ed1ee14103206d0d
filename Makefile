# Quick start: `make run` and `make test` each set themselves up on a fresh machine
# (only Python 3.11 and pip needed): they create .venv and install Liquid into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser pgbouncer run test test-all lint typecheck bench clean

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

# The catalog-behind-PgBouncer tests need Debian's pgbouncer (no PyPI wheel): installed the same way,
# never failing the run (without it those tests skip and say why).
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing pgbouncer for the pooled-catalog tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer) >/dev/null 2>&1 \
	      || echo "could not install pgbouncer: the pooled-catalog tests will be skipped"; \
	  else echo "no pgbouncer and no root apt: the pooled-catalog tests will be skipped"; fi; }

test: install browser pgbouncer
	$(BIN)/python -m pytest

test-all: install browser pgbouncer
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
