"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
CITYLOOP_TEST_DATABASE_URL points at one (CI runs both).

Every test that asks for a database gets its own, as if the server had just started on an
empty one: the schema migrated and the bundled processes deployed. Migrating and deploying
took 0.1-0.2 s per test on SQLite and about a second on PostgreSQL, so this is done once
per pytest session into a template, and each test gets a copy of it:

- SQLite: the template is a file (WAL checkpointed and switched off, so the one file is the
  whole database); each test copies it into its own tmp_path.
- PostgreSQL: the template is a database ``<name>_run<pid>_tmpl`` (no connections allowed
  once built); each test gets ``<name>_run<pid>_<n>`` made by ``CREATE DATABASE ...
  TEMPLATE``, dropped after the test (in a background thread: DROP DATABASE waits for a
  checkpoint). At the end of the session every database whose name starts with
  ``<name>_run<pid>_`` is dropped, whatever happened to the tests.

Every copy has its own URL (a new file, a new database name), so caches the engine keys on
the database URL (the token-signing key of engine.auth.service, the SQLite writer lock) never
carry over from one test to the next. Tests that need a database with nothing in it (the
migration tests, `cityloop` commands run on a new database) use ``empty_db_url`` or
``module_empty_db_url``.

A test that asks for any of these fixtures is marked ``database``; the PostgreSQL pass of
`make test` runs only those (``-m database``)."""
from __future__ import annotations

import itertools
import os
import queue
import shutil
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from engine.clock import ManualClock
from engine.db.session import normalize_url

PG_URL = os.environ.get("CITYLOOP_TEST_DATABASE_URL")
START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)   # where every test's clock starts
_serial = itertools.count(1)


# ---- PostgreSQL: this process's databases ------------------------------------------------------
class _PgDatabases:
    """The databases of this pytest process, all named ``<configured name>_run<pid>_...``
    beside the configured one, so that concurrent test runs never touch each other's."""

    def __init__(self, url: str):
        self.base = make_url(normalize_url(url))
        self.prefix = f"{self.base.database}_run{os.getpid()}_"
        self._admin = None
        self.template: str | None = None
        self._template_error: Exception | None = None
        self._to_drop: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def admin(self):
        if self._admin is None:
            self._admin = create_engine(self.base, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=2)
        return self._admin

    def url(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        clause = f' TEMPLATE "{template}"' if template else ""
        with self.admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        return self.url(name)

    def drop(self, name: str) -> None:
        with self.admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop_soon(self, name: str) -> None:
        """Drop in a background thread: DROP DATABASE waits for a checkpoint, which can take
        seconds on a busy server; the next test need not wait for it."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_queued, name="drop test databases", daemon=True)
            self._dropper.start()
        self._to_drop.put(name)

    def _drop_queued(self) -> None:
        while (name := self._to_drop.get()) is not None:
            try:
                self.drop(name)
            except Exception:      # still listed: drop_all drops it at the end, or says why not
                pass

    def build_template(self) -> str:
        """Migrate and deploy once into ``<prefix>tmpl``, then close it to connections: a
        database can be a template only while nobody is connected to it."""
        name = f"{self.prefix}tmpl"
        _build_template_at(self.create(name))
        with self.admin().connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        self.template = name
        return name

    def copy_of_template(self) -> str:
        if self.template is None:
            if self._template_error is not None:   # failed once: fail every test the same way, fast
                raise self._template_error
            try:
                self.build_template()
            except Exception as exc:
                self._template_error = exc
                raise
        return self.create(f"{self.prefix}{next(_serial)}", template=self.template)

    def empty(self) -> str:
        return self.create(f"{self.prefix}e{next(_serial)}")

    def drop_all(self) -> list[str]:
        """Drop every database this process made (templates last); returns their names."""
        if self._dropper is not None:
            self._to_drop.put(None)
            self._dropper.join()
            self._dropper = None
        if self._admin is None:
            return []
        with self.admin().connect() as conn:
            names = conn.execute(text("SELECT datname FROM pg_database WHERE starts_with(datname, :p)"),
                                 {"p": self.prefix}).scalars().all()
        failed = []
        for name in sorted(names, key=lambda n: n == self.template):
            try:
                self.drop(name)
            except Exception as exc:        # drop the others all the same, and say so
                failed.append(f"{name}: {exc}")
        self._admin.dispose()
        self._admin = None
        if failed:
            raise RuntimeError("could not drop test databases:\n" + "\n".join(failed))
        return names


_pg = _PgDatabases(PG_URL) if PG_URL else None


# Fixtures that give a test a database of this run: a test asking for one of them (directly or
# through another fixture) is marked `database`. The PostgreSQL pass of `make test` runs only those
# (-m database): the others open no database, so they ran in the SQLite pass exactly as they would
# again. (A test that reaches a database any other way must ask for one of these:
# tests/test_database_fixtures.py holds the test sources to that.)
DATABASE_FIXTURES = frozenset({"db_url", "module_db_url", "empty_db_url", "module_empty_db_url"})


@pytest.hookimpl(tryfirst=True)     # (before -m selects by the marks given here)
def pytest_collection_modifyitems(config, items):
    """Marks the tests that open a database `database` (PostgreSQL-only ones included).
    Without CITYLOOP_TEST_DATABASE_URL (the SQLite pass), tests marked postgresql_only are
    deselected, not skipped: they run in the PostgreSQL pass, and the summary says so."""
    for item in items:
        if DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())) \
                or item.get_closest_marker("postgresql_only"):
            item.add_marker(pytest.mark.database)
    if PG_URL:
        if config.getoption("markexpr").startswith("database"):
            config.stash[_NO_DATABASE] = sum(1 for item in items if not item.get_closest_marker("database"))
        return
    pg_only = [item for item in items if item.get_closest_marker("postgresql_only")]
    if pg_only:
        config.hook.pytest_deselected(items=pg_only)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql_only")]
        config.stash[_PG_ONLY] = len(pg_only)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    deselected = config.stash.get(_PG_ONLY, 0)
    if deselected:
        terminalreporter.write_line(f"{deselected} PostgreSQL-only tests deselected: they run in the PostgreSQL pass "
                                    "(set CITYLOOP_TEST_DATABASE_URL)")
    without = config.stash.get(_NO_DATABASE, 0)
    if without:
        terminalreporter.write_line(f"{without} tests that open no database deselected (-m database): "
                                    "they run in the SQLite pass")


_PG_ONLY = pytest.StashKey[int]()
_NO_DATABASE = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    if _pg is not None:
        _pg.drop_all()


# ---- the template --------------------------------------------------------------------------------
def _build_template_at(url: str) -> None:
    """What `engine.system.build` does when a server starts on an empty database: migrate,
    deploy the bundled files (at the clock fixture's start, as a test's own build did)."""
    from engine.db.models import ServerSecret
    from engine.system import build
    engine = build(url, clock=ManualClock(START))
    try:
        with engine.db.connect() as conn:
            secrets = conn.execute(text(f"SELECT count(*) FROM {ServerSecret.__tablename__}")).scalar_one()
    finally:
        engine.db.dispose()
    assert secrets == 0, "the template must not hold secrets: every test makes its own"


def _build_sqlite_template(path: Path) -> Path:
    _build_template_at(f"sqlite:///{path}")
    # The engine is disposed; fold the WAL into the file and leave WAL mode, so the file
    # alone is the whole database (each copy's engine switches WAL on again when it connects).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "something still holds the template open"
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    finally:
        conn.close()
    leftovers = [p.name for p in path.parent.iterdir() if p.name in (f"{path.name}-wal", f"{path.name}-shm")]
    assert not leftovers, leftovers
    return path


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    return _build_sqlite_template(tmp_path_factory.mktemp("template") / "cityloop.db")


# ---- databases for tests ---------------------------------------------------------------------------
def _fresh_database_url(tmp_path) -> str:
    """An empty database (no tables): a new SQLite file in tmp_path, or a new PostgreSQL
    database of this run (dropped at the end of the session)."""
    if _pg is None:
        return f"sqlite:///{Path(tmp_path) / 'cityloop.db'}"
    return _pg.empty()


def _empty(folder: Path):
    url = _fresh_database_url(folder)
    yield url
    if _pg is not None:
        _pg.drop_soon(make_url(url).database)


@pytest.fixture
def empty_db_url(tmp_path):
    """An empty database of this test's own (for tests of the migrations themselves, and of
    `cityloop` commands run on a new database)."""
    yield from _empty(tmp_path)


@pytest.fixture(scope="module")
def module_empty_db_url(tmp_path_factory):
    """An empty database for a whole test module (one seeded once, a server several tests share)."""
    yield from _empty(tmp_path_factory.mktemp("empty-db"))


def _template_copy(request, folder: Path):
    """A copy of the session's template (migrated, bundled processes deployed): a file in
    `folder`, or a database of this run; dropped when the generator is closed."""
    if _pg is None:
        path = folder / "cityloop.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = _pg.copy_of_template()
    yield url
    _pg.drop_soon(make_url(url).database)


@pytest.fixture
def db_url(request, tmp_path):
    """This test's own database, migrated and with the bundled processes deployed: a copy
    of the session's template."""
    yield from _template_copy(request, tmp_path)


@pytest.fixture(scope="module")
def module_db_url(request, tmp_path_factory):
    """A database for a whole test module (a server process several tests share), made as
    db_url makes one."""
    yield from _template_copy(request, tmp_path_factory.mktemp("module-db"))


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def system(db_url, clock):
    """A case engine with the domain operations and the bundled processes deployed."""
    from engine.system import build
    engine = build(db_url, clock=clock)     # as a server start: finds the schema current and the files deployed
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
