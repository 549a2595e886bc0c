"""INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""
from __future__ import annotations

import functools

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from engine.db import direct

__all__ = ["insert_if_new", "insert_later"]


@functools.lru_cache(maxsize=None)
def _statement(model, pg: bool, conflict: tuple[str, ...] | None, returning: bool = True):
    dialect = postgresql if pg else sqlite
    pk = next(iter(model.__table__.primary_key.columns))
    stmt = dialect.insert(model).on_conflict_do_nothing(index_elements=list(conflict) if conflict else None)
    return stmt.returning(pk) if returning else stmt


def insert_if_new(session: Session, model, values: dict, conflict: tuple[str, ...] | None = None) -> bool:
    """Insert a row unless it (or one with the same `conflict` key) exists. True if it was new.

    Newness is told by RETURNING, which both databases report reliably (a row count is -1 on
    PostgreSQL for some inserts). Statements are built once per model and database."""
    stmt = _statement(model, session.get_bind().dialect.name == "postgresql", conflict)
    return direct.execute(session.connection(), stmt, values).first() is not None


def insert_later(session: Session, model, values: dict, conflict: tuple[str, ...] | None = None) -> None:
    """`insert_if_new` for a caller that need not know whether the row was new: sent with the
    transaction's other deferred writes (engine.db.direct.defer; at once on SQLite)."""
    stmt = _statement(model, session.get_bind().dialect.name == "postgresql", conflict, returning=False)
    direct.defer(session.connection(), stmt, values)
