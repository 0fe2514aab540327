# The two commands: `make run` and `make test`, on a machine with Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test test-fast lint screenshots bench clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# mysqlclient (optional, faster than PyMySQL) is built only where the MariaDB/MySQL client headers
# and a C compiler are.
define install_mysqlclient
	@if { pkg-config --exists mariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null; } \
	    && command -v cc >/dev/null 2>&1; then \
	  $(BIN)/python -m pip install --quiet -r requirements-mysqlclient.txt \
	    || echo "mysqlclient did not build: MySQL URLs use PyMySQL (docs/settings.md)"; \
	else \
	  echo "No MariaDB/MySQL client headers or C compiler: MySQL URLs use PyMySQL (mysqlclient is optional, docs/settings.md)"; \
	fi
endef

$(VENV)/.runtime-installed: requirements.txt requirements-mysqlclient.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(install_mysqlclient)
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt requirements-mysqlclient.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(install_mysqlclient)
	touch $(VENV)/.runtime-installed $@

run: $(VENV)/.runtime-installed
	GATEWAY_ENV=development $(BIN)/flask --app wsgi dev-bootstrap --url http://127.0.0.1:$(PORT)/admin/
	GATEWAY_ENV=development GUNICORN_BIND=127.0.0.1:$(PORT) $(BIN)/gunicorn wsgi:app

test: $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest

# The layer rules (.importlinter) and ruff (ruff.toml); both run in `make test`.
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check --no-cache .
	$(BIN)/lint-imports

test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not slow and not browser"

# The README's screenshots, made by the browser test of the first five minutes (needs Chromium).
screenshots: $(VENV)/.dev-installed
	GATEWAY_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q tests/browser/test_first_five_minutes.py

# Benchmarks need a MariaDB/MySQL server (and PostgreSQL at BENCH_PG_URL for the webhook's new-pg
# target); they make their own scratch databases there (docs/performance.md).
BENCH_MYSQL_URL ?= mysql://root@127.0.0.1:3306/
bench: $(VENV)/.dev-installed
	BENCH_MYSQL_URL=$(BENCH_MYSQL_URL) $(BIN)/python bench/push.py
	BENCH_MYSQL_URL=$(BENCH_MYSQL_URL) $(BIN)/python bench/webhook.py
	BENCH_MYSQL_URL=$(BENCH_MYSQL_URL) $(BIN)/python bench/sql_floor.py

clean-venv:
	rm -rf $(VENV)
