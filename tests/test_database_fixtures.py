"""The database fixtures of tests/conftest.py: each test's database is what a server start on
an empty database leaves, of its own, and an empty one really is empty."""
from __future__ import annotations

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
