"""Conflicts kept for a supervisor: both sides of each, listed per scope and resolved once.

Scope: administrators and dispatchers see all; a unit leader the conflicts of their unit's
people; a supervisor those of badge check-ins (their crews' attendance)."""
from __future__ import annotations

import json

from sqlalchemy import false, true
from sqlmodel import select

from engine.clock import from_db, to_db
from engine.runtime.errors import Conflict, NotFound
from sync.server.models import SyncConflict
from sync.server.ops import Pusher

__all__ = ["RESOLUTIONS", "STATUSES", "list_conflicts", "out", "resolve"]

RESOLUTIONS = ("kept_server", "redone", "dismissed")
STATUSES = ("open", "resolved", "all")


def _scope(who: Pusher):
    if who.role in ("admin", "dispatcher"):
        return true()
    if who.role == "unit_leader":
        return SyncConflict.unit_code == who.unit_code if who.unit_code else false()
    if who.role == "supervisor":
        return SyncConflict.kind == "check_in"
    return false()


def out(c: SyncConflict) -> dict:
    return {"id": c.id, "op_id": c.op_id, "actor": c.actor, "unit_code": c.unit_code, "kind": c.kind,
            "task_id": c.task_id, "reason": c.reason, "device_side": json.loads(c.device_side),
            "server_side": json.loads(c.server_side), "created_at": from_db(c.created_at),
            "resolved_at": from_db(c.resolved_at), "resolved_by": c.resolved_by, "resolution": c.resolution,
            "note": c.note}


def list_conflicts(engine, who: Pusher, status: str = "open", limit: int = 50,
                   offset: int = 0) -> tuple[list[dict], bool]:
    q = select(SyncConflict).where(_scope(who))
    if status == "open":
        q = q.where(SyncConflict.resolved_at.is_(None))
    elif status == "resolved":
        q = q.where(SyncConflict.resolved_at.is_not(None))
    with engine.transaction(write=False) as s:
        rows = s.exec(q.order_by(SyncConflict.created_at, SyncConflict.id).limit(limit + 1).offset(offset)).all()
        return [out(c) for c in rows[:limit]], len(rows) > limit


def resolve(engine, who: Pusher, conflict_id: int, resolution: str, note: str | None) -> dict:
    with engine.transaction() as s:
        c = s.exec(select(SyncConflict).where(SyncConflict.id == conflict_id, _scope(who))
                   .with_for_update()).first()
        if c is None:
            raise NotFound(f"no sync conflict {conflict_id} for you")
        if c.resolved_at is not None:
            raise Conflict(f"conflict {conflict_id} was already resolved by {c.resolved_by}")
        c.resolved_at, c.resolved_by, c.resolution, c.note = to_db(engine.clock()), who.id, resolution, note
        s.add(c)
        s.flush()
        return out(c)
