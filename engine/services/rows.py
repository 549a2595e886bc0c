"""New rows whose key someone else may take at the same moment."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from engine.runtime.errors import Conflict

__all__ = ["insert_new"]


def insert_new(s: Session, row, taken: str):
    """Add `row` and write it now. The caller checked that its key was free, but another
    request may have taken it since (on PostgreSQL the check does not lock anything): then
    the database's unique key refuses it, and that is a Conflict (409) saying `taken`, not a
    bug. The transaction is then over; the caller's context rolls it back."""
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"{taken} (created by someone else just now)") from None
    return row
