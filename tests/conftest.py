"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
CITYLOOP_TEST_DATABASE_URL points at one (CI runs both)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from engine.clock import ManualClock
from engine.db.session import normalize_url

PG_URL = os.environ.get("CITYLOOP_TEST_DATABASE_URL")


def fresh_database_url(tmp_path) -> str:
    """An empty database: a new SQLite file, or the test PostgreSQL with its schema reset."""
    if not PG_URL:
        return f"sqlite:///{tmp_path / 'cityloop.db'}"
    url = normalize_url(PG_URL)
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
