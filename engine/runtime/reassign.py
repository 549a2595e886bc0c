"""Reassigning an open human task to a person, with an audit event.

Only the open-task side table changes (assignee and claim): the workflow itself does not
record who works on a ready task, so the instance version is left alone. The task row is
locked (PostgreSQL) so a reassignment and a completion never interleave."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import update

from engine.db.models import OpenTask
from engine.runtime.audit import audit
from engine.runtime.errors import Actor, TaskGone
from engine.runtime.rows import fetch_instance, fetch_open_task, task_groups

__all__ = ["reassign"]


def reassign(engine, task_id: str, to: str, actor: Actor, reason: str | None = None,
             may: Callable[[object, dict, set[str]], None] | None = None) -> dict:
    """Give the task to `to` (assignee and claim). `may(session, open_task, groups)` is the caller's
    object-level check; it raises to refuse. Returns the task as it now stands."""
    with engine.transaction() as s:
        ot = fetch_open_task(s, task_id, lock=True)
        if ot is None:
            raise TaskGone(f"task {task_id} is not open (already completed, cancelled or unknown)")
        ot = dict(ot)
        groups = task_groups(s, task_id)
        if may is not None:
            may(s, ot, groups)
        before = {"assignee": ot["assignee"], "claimed_by": ot["claimed_by"]}
        s.connection().execute(update(OpenTask).where(OpenTask.id == task_id).values(assignee=to, claimed_by=to))
        row = fetch_instance(s, ot["instance_id"])
        audit(s, engine.clock(), ot["instance_id"], row.business_key if row else ot["business_key"], actor.id,
              "task_reassigned", ot["name"], {"from": before["claimed_by"] or before["assignee"], "to": to,
                                               "reason": reason, "title": ot["title"]})
        ot.update(assignee=to, claimed_by=to)
        return {**ot, "groups": sorted(groups)}
