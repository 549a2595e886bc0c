"""The append-only audit log. Rows are buffered per transaction and written in one batch
just before it commits (with the step's other writes, engine.db.direct.defer), so a step with
many events costs one INSERT: on PostgreSQL one statement of arrays (rows.INSERT_AUDIT_ROWS),
on SQLite one executemany."""
from __future__ import annotations

import json
from datetime import datetime

from sqlmodel import Session

from engine.clock import to_db
from engine.db import direct
from engine.runtime.rows import AUDIT_FIELDS, INSERT_AUDIT, INSERT_AUDIT_ROWS

__all__ = ["audit", "event_row", "flush_audit", "forget_since", "mark"]


def event_row(now: datetime, instance_id: int | None, business_key: str | None, actor: str, kind: str,
              element: str | None, detail: dict) -> dict:
    """An audit row's values as stored (lengths cut, detail as JSON text)."""
    return {"instance_id": instance_id, "business_key": business_key, "at": to_db(now), "actor": actor[:128],
            "kind": kind[:32], "element": element[:128] if element else None,
            "detail": json.dumps(detail, ensure_ascii=False, default=str)}


def audit(s: Session, now: datetime, instance_id: int | None, business_key: str | None, actor: str, kind: str,
          element: str | None, detail: dict) -> None:
    s.info.setdefault("audit", []).append(event_row(now, instance_id, business_key, actor, kind, element, detail))


def flush_audit(s: Session) -> None:
    rows = s.info.pop("audit", None)
    if not rows:
        return
    conn = s.connection()
    if len(rows) > 1 and conn.dialect.name == "postgresql":
        direct.defer(conn, INSERT_AUDIT_ROWS, {f: [r[f] for r in rows] for f in AUDIT_FIELDS})
    else:
        direct.defer_many(conn, INSERT_AUDIT, rows)


def mark(s: Session) -> int:
    """Where the transaction's buffered events stand (for forget_since)."""
    return len(s.info.get("audit", ()))


def forget_since(s: Session, at: int) -> None:
    """A step failed inside a transaction that goes on: the events it buffered did not happen."""
    rows = s.info.get("audit")
    if rows:
        del rows[at:]
