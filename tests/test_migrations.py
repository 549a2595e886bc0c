"""The Alembic migrations build exactly the schema the models describe, on both databases."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine.db.migrate import alembic_config, current, upgrade
from engine.db.session import make_engine
from engine.schema import metadata


def test_migrations_match_the_models_and_go_both_ways(empty_db_url):
    db = make_engine(empty_db_url)
    assert current(db) is None, "the migrations start from an empty database"
    upgrade(db)
    upgrade(db)  # idempotent: a second worker starting finds nothing to do
    head = current(db)
    assert head is not None
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models changed without a migration: {diff}"
    with db.connect() as conn:
        command.downgrade(alembic_config(conn), "base")
        conn.commit()
    assert current(db) is None
    upgrade(db)
    assert current(db) == head
    db.dispose()


def test_audit_log_is_append_only(system):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    with system.db.begin() as conn:
        conn.execute(text("INSERT INTO audit_event (at, actor, kind, detail) "
                          "VALUES (CURRENT_TIMESTAMP, 'a', 'k', '{}')"))
    for statement in ("UPDATE audit_event SET actor = 'someone else'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            with system.db.begin() as conn:
                conn.execute(text(statement))
