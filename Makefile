# cityloop: `make run` and `make test` are the two commands (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cityloop-installed
PG_TEST_URL := $(or $(CITYLOOP_TEST_DATABASE_URL),postgresql://postgres@127.0.0.1:5432/test)
PYTEST_ARGS ?=

.PHONY: setup run field test test-sqlite test-pg lint bench system dbus fieldlibs console browser

setup: $(STAMP)

# System packages the tests need, installed with one apt-get run when any is missing:
#   dbus (dbus-daemon): tests/devices runs a private one (the fake BlueZ test bed);
#   fonts-wqy-microhei: the field app and the console's screenshots draw Chinese (Kivy's Roboto has no CJK);
#   libmtdev1: Kivy's touch input;
#   chromium: the console's browser tests drive it headless with Playwright.
# `make dbus`, `make fieldlibs` and `make browser` are this same step.
SYSTEM_CHECKS := command -v dbus-daemon >/dev/null || echo dbus; \
	test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || echo fonts-wqy-microhei; \
	ldconfig -p | grep -q libmtdev.so.1 || echo libmtdev1; \
	test -x /usr/bin/chromium || echo chromium
system dbus fieldlibs browser:
	@missing=$$({ $(SYSTEM_CHECKS); } | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
		echo "== installing $$missing(system packages the tests need)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
		|| { echo "could not install $$missing(Debian: apt-get install $$missing)" >&2; exit 1; }; \
	fi

# The web console (console/): npm packages pinned by console/package-lock.json, installed with
# npm ci when the lock file changes, and built into console/dist when a source changes.
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html console/vite.config.js
console: console/dist/index.html

console/node_modules/.installed: console/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: the web console is built with Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	@echo "== installing the web console's npm packages (console/package-lock.json)"
	cd console && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

console/dist/index.html: console/node_modules/.installed $(CONSOLE_SOURCES)
	@echo "== building the web console (console/dist)"
	cd console && npm run --silent build -- --logLevel warn

# Re-installs only when pyproject.toml changes (the install is editable).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,field]'
	@touch $@

run: setup console
	$(VENV)/bin/cityloop serve --demo

# Try the tablet app on a laptop: demo server, simulated badges, a tablet registered for a demo person.
ROLE ?= supervisor
field: setup system
	$(PY) -m fieldapp.tryout --role $(ROLE)

# Lint and types, then the whole suite on SQLite and, when configured or a local server answers, on
# PostgreSQL: there, the tests that open a database (marked `database` by tests/conftest.py; the others
# ran in the SQLite pass just as they would again). The two passes run side by side (tests/passes.sh).
# Fails if any step fails (including pytest's "no tests collected", exit 5).
# MARK narrows both passes (make test MARK="not slow"); PYTEST_ARGS goes to pytest as it is.
MARK ?=
test: setup system console
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	passes=sqlite; \
	if [ -n "$$CITYLOOP_TEST_DATABASE_URL" ] || $(PY) -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 2).close()' 2>/dev/null; then \
		passes="sqlite pg"; \
	else \
		echo "== PostgreSQL: not configured and nothing answers on 127.0.0.1:5432; skipped"; \
	fi; \
	tests/passes.sh $(MAKE) $$passes || status=1; \
	if [ $$status -ne 0 ]; then echo "== make test: FAILED"; else echo "== make test: passed"; fi; \
	exit $$status

test-sqlite: setup system console
	@echo "== pytest on SQLite"
	env -u CITYLOOP_TEST_DATABASE_URL $(PY) -m pytest $(if $(MARK),-m '$(MARK)') $(PYTEST_ARGS)

test-pg: setup system console
	@echo "== pytest on PostgreSQL ($(PG_TEST_URL)), the tests that open a database"
	@$(PY) -c 'import sys, psycopg; from psycopg.conninfo import conninfo_to_dict, make_conninfo; \
	url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://"); db = conninfo_to_dict(url).get("dbname"); \
	conn = psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=5); \
	exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone(); \
	exists or conn.execute("CREATE DATABASE " + psycopg.sql.Identifier(db).as_string(conn)); conn.close()' \
	'$(PG_TEST_URL)' || echo "   (could not check/create the test database; trying anyway)"
	CITYLOOP_TEST_DATABASE_URL='$(PG_TEST_URL)' $(PY) -m pytest -m 'database$(if $(MARK), and ($(MARK)))' $(PYTEST_ARGS)

# ruff (rules in pyproject.toml) on the code and tests; mypy on the typed packages ([tool.mypy] files).
lint: setup
	@echo "== ruff and mypy"
	$(VENV)/bin/ruff check engine sync devices fieldapp tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench.lifecycle
	$(PY) -m bench.badge_tokens
