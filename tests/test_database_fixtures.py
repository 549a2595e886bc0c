"""The database fixtures of tests/conftest.py: each test's database is what a server start on
an empty database leaves, of its own, and an empty one really is empty."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, func, select

from engine.db.migrate import current
from engine.db.models import AuditEvent, Definition, Instance, ServerSecret
from engine.db.session import make_engine
from engine.system import bundled_files
from tests.conftest import START

_seen_urls: list[str] = []


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    from engine.db.migrate import alembic_config
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_its_own_copy_migrated_with_the_bundled_processes_and_nothing_else(db_url, turn):
    """Run twice: the second turn must not see the first one's write, nor its URL (caches keyed
    on the URL start empty)."""
    assert db_url not in _seen_urls
    _seen_urls.append(db_url)
    db = make_engine(db_url)
    try:
        assert current(db) == _alembic_head()
        with Session(db) as s:
            definitions = s.exec(select(Definition)).all()
            assert len(definitions) == len(bundled_files())
            assert {d.version for d in definitions} == {1}
            assert {d.deployed_at.replace(tzinfo=START.tzinfo) for d in definitions} == {START}
            assert s.exec(select(func.count()).select_from(Instance)).one() == 0
            assert s.exec(select(func.count()).select_from(ServerSecret)).one() == 0, "secrets are made per test"
            assert s.exec(select(AuditEvent).where(AuditEvent.actor == "fixture-test")).first() is None
            s.connection().execute(text("INSERT INTO audit_event (at, actor, kind, detail) "
                                        "VALUES (CURRENT_TIMESTAMP, 'fixture-test', 'k', '{}')"))
            s.commit()
    finally:
        db.dispose()


def test_an_empty_database_has_no_tables(empty_db_url):
    db = make_engine(empty_db_url)
    try:
        assert inspect(db).get_table_names() == []
        assert current(db) is None
    finally:
        db.dispose()


# ---- the `database` mark: what the PostgreSQL pass runs (make test-pg is -m database) ----------------
def test_a_test_asking_for_a_database_is_marked_database(db_url, request):
    assert request.node.get_closest_marker("database") is not None


@pytest.fixture
def _through_a_fixture(empty_db_url):
    return empty_db_url


def test_a_database_asked_for_through_another_fixture_counts(_through_a_fixture, request):
    assert request.node.get_closest_marker("database") is not None


def test_a_test_without_a_database_is_not_marked(tmp_path, request):
    assert request.node.get_closest_marker("database") is None


def test_no_test_reaches_a_database_around_the_fixtures():
    """The PostgreSQL pass skips tests that ask for no database fixture: a test that made its own
    database (conftest's helpers, the configured URL) would never run on PostgreSQL."""
    from tests import conftest
    tests_dir = Path(conftest.__file__).parent
    offenders = []
    for path in sorted(tests_dir.rglob("*.py")):
        if path == Path(__file__) or (path.name == "conftest.py" and path.parent == tests_dir):
            continue
        source = path.read_text()
        if "_fresh_database_url" in source or "_PgDatabases" in source or "conftest import PG_URL" in source:
            offenders.append(f"{path.relative_to(tests_dir)}: uses conftest's database helpers, not a fixture")
        if "CITYLOOP_TEST_DATABASE_URL" in source and "postgresql_only" not in source:
            offenders.append(f"{path.relative_to(tests_dir)}: reads CITYLOOP_TEST_DATABASE_URL outside "
                             "postgresql_only tests")
    assert offenders == []
