"""Ops the server holds as 'waiting' for their photos, for the people who follow them up.

A tablet pushes its ops before their photos; an op whose photo never arrives (the tablet
lost or broken, the file deleted) would otherwise wait unseen. Listed oldest first, with
the photos still missing. Scope as for conflicts: administrators and dispatchers see all,
a unit leader the ops of their unit's people, a supervisor badge check-ins."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, bindparam, exists, false, select, true

from engine.clock import from_db, to_db
from engine.domain.models import Staff
from engine.domain.records import Attachment
from sync.server.models import SyncOp, SyncOpWait
from sync.server.ops import Pusher

__all__ = ["list_waiting"]

_MISSING = (select(SyncOpWait.op_id, SyncOpWait.sha256)
            .where(SyncOpWait.op_id.in_(bindparam("ids", expanding=True)),
                   ~exists().where(Attachment.sha256 == SyncOpWait.sha256))
            .order_by(SyncOpWait.op_id, SyncOpWait.sha256))


def _scope(who: Pusher):
    if who.role in ("admin", "dispatcher"):
        return true()
    if who.role == "unit_leader" and who.unit_code:
        return SyncOp.actor.in_(select(Staff.id).where(Staff.unit_code == who.unit_code))
    if who.role == "supervisor":
        return SyncOp.kind == "check_in"
    return false()


def list_waiting(engine, who: Pusher, older_than: timedelta = timedelta(0), limit: int = 50,
                 offset: int = 0) -> tuple[list[dict], bool]:
    """(a page of waiting ops, whether there are more): those recorded at least `older_than` ago."""
    now = engine.clock()
    q = (select(SyncOp.op_id, SyncOp.actor, SyncOp.device, SyncOp.kind, SyncOp.task_id, SyncOp.created_at,
                SyncOp.device_time)
         .where(and_(SyncOp.verdict == "waiting", SyncOp.created_at <= to_db(now - older_than), _scope(who)))
         .order_by(SyncOp.created_at, SyncOp.op_id).limit(limit + 1).offset(offset))
    with engine.reading() as conn:
        rows = conn.execute(q).all()
        missing: dict[str, list[str]] = {}
        if rows:
            for op_id, sha in conn.execute(_MISSING, {"ids": [r.op_id for r in rows[:limit]]}):
                missing.setdefault(op_id, []).append(sha)
    items = [{"op_id": r.op_id, "actor": r.actor, "device": r.device, "kind": r.kind, "task_id": r.task_id,
              "waiting_since": from_db(r.created_at), "device_time": from_db(r.device_time),
              "waiting_minutes": int((now - from_db(r.created_at)).total_seconds() // 60),
              "missing": missing.get(r.op_id, [])}
             for r in rows[:limit]]
    return items, len(rows) > limit
