"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
CITYLOOP_TEST_DATABASE_URL points at one (CI runs both)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, make_url, text

from engine.clock import ManualClock
from engine.db.session import normalize_url

PG_URL = os.environ.get("CITYLOOP_TEST_DATABASE_URL")
_run_database: str | None = None


def _pg_run_url() -> str:
    """This pytest process's own PostgreSQL database, created beside the configured one
    (``<name>_run<pid>``), so that concurrent test runs never reset each other's schema."""
    global _run_database
    base = make_url(normalize_url(PG_URL))
    if _run_database is None:
        name = f"{base.database}_run{os.getpid()}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        _run_database = name
    return base.set(database=_run_database).render_as_string(hide_password=False)


def pytest_sessionfinish(session, exitstatus):
    if _run_database is None:
        return
    base = make_url(normalize_url(PG_URL))
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_run_database}" WITH (FORCE)'))
    admin.dispose()


def fresh_database_url(tmp_path) -> str:
    """An empty database: a new SQLite file, or this run's PostgreSQL database with its
    schema reset."""
    if not PG_URL:
        return f"sqlite:///{tmp_path / 'cityloop.db'}"
    url = _pg_run_url()
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()
    return url


@pytest.fixture
def db_url(tmp_path):
    return fresh_database_url(tmp_path)


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc))


@pytest.fixture
def system(db_url, clock):
    """A case engine with the domain operations and the bundled processes deployed."""
    from engine.system import build
    engine = build(db_url, clock=clock)
    yield engine
    engine.db.dispose()


@pytest.fixture
def district(system):
    """The system with the tiny test district of tests/district.py seeded."""
    from tests.district import seed
    seed(system)
    return system


@pytest.fixture
def setenv(monkeypatch):
    """Change the server's settings (engine.settings) for one test: `setenv(NAME="value")`,
    None deletes; read again at once, and as before after the test."""
    from engine import settings

    def apply(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        settings.reset()

    yield apply
    monkeypatch.undo()
    settings.reset()
