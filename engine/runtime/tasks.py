"""The open-task side table: kept in step with the workflow, queried by person and group."""
from __future__ import annotations

import functools
import json
from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from sqlalchemy import String, bindparam, func, literal_column, or_
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, select

from engine import forms
from engine.bpmn.calls import business_key_of
from engine.clock import from_db, to_db
from engine.db import direct
from engine.db.models import OpenTask, TaskGroup
from engine.runtime import state
from engine.runtime.errors import Actor, Forbidden, TaskGone, TaskTaken
from engine.runtime.rows import (
    DELETE_AWAITED,
    DELETE_TASK,
    DELETE_TASKS,
    GROUP_SEPARATOR,
    GROUPS_JOINED,
    INSERT_AWAITED,
    INSERT_GROUPS,
    INSERT_TASKS,
    fetch_instance,
    fetch_open_task,
    fetch_task_with_instance,
)

__all__ = ["FormsOf", "TaskIndex", "user_group"]


def user_group(person: str) -> str:
    """The group a task's camunda:candidateUsers entry offers it to: `user:<person id>`."""
    return f"user:{person}"


def _resolve(wf, task, text: str | None):
    if text is None or not text.strip():
        return None
    if text.strip().startswith("${"):
        value = wf.script_engine.evaluate(task, text)
        return None if value is None else value
    return text.strip()


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return TimerEventDefinition.get_datetime(str(value))


class TaskIndex:
    def __init__(self, engine):
        self.engine = engine

    def sync(self, s: Session, row, wf, before: state.Scan, after: state.Scan) -> None:
        """Bring open tasks and awaited messages in line with the workflow: `before` is what
        they held for the version just replaced, `after` the new one; only the difference is written."""
        ready = after.ready
        gone = before.ready.keys() - ready.keys()
        conn = s.connection()
        if len(gone) == 1:  # their task_group rows go with them (ON DELETE CASCADE)
            direct.defer(conn, DELETE_TASK, {"id": next(iter(gone))})
        elif gone:          # (an expanding IN is compiled on every call: only when several go)
            conn.execute(DELETE_TASKS, {"ids": sorted(gone)})
        new_ids = ready.keys() - before.ready.keys()
        if new_ids:
            self._open(s, row, wf, [ready[i] for i in sorted(new_ids)])
        awaited = after.awaited
        if awaited != before.awaited:
            direct.defer(conn, DELETE_AWAITED, {"id": row.id})
            if awaited:
                direct.defer_many(conn, INSERT_AWAITED, [{"instance_id": row.id, "name": n,
                                                    "business_key": row.business_key} for n in sorted(awaited)])

    def reopen(self, s: Session, row, wf, task) -> None:
        """List a ready task again (its row was taken out while a completion of it was parked)."""
        self._open(s, row, wf, [task])

    def _open(self, s: Session, row, wf, tasks: list) -> None:
        now = to_db(self.engine.clock())
        rows, group_rows = [], []
        for task in tasks:
            spec = task.task_spec
            form_id = (self.engine.definitions.pinned_form(s, row.definition_id, spec.form_ref)
                       if spec.form_ref else None)
            assignee = _resolve(wf, task, spec.assignee)
            groups = set()
            for g in spec.candidate_groups:
                value = _resolve(wf, task, g)
                if isinstance(value, (list, tuple, set)):
                    groups.update(str(v) for v in value if v)
                elif value:
                    groups.add(str(value))
            for u in spec.candidate_users:      # a candidate user is offered it as the group user:<id>
                value = _resolve(wf, task, u)
                people = value if isinstance(value, (list, tuple, set)) else [value]
                groups.update(user_group(str(p)) for p in people if p)
            task_id = str(task.id)
            rows.append({"id": task_id, "instance_id": row.id, "process_key": row.process_key,
                         "business_key": business_key_of(task, row.business_key), "name": spec.bpmn_id or spec.name,
                         "title": (spec.bpmn_name or spec.bpmn_id or spec.name)[:255], "form_ref": spec.form_ref,
                         "form_definition_id": form_id, "assignee": str(assignee)[:128] if assignee else None,
                         "claimed_by": None, "due_at": to_db(_as_datetime(_resolve(wf, task, spec.due_date))),
                         "created_at": now})
            group_rows.extend({"task_id": task_id, "group_name": g[:128]} for g in sorted(groups)
                              if GROUP_SEPARATOR not in g)
        conn = s.connection()
        direct.defer_many(conn, INSERT_TASKS, rows)
        direct.defer_many(conn, INSERT_GROUPS, group_rows)
        for listener in self.engine.task_listeners:
            for r in rows:
                listener(s, row, r)

    def authorized(self, s: Session, task_id: str, actor: Actor):
        """(open task as a row mapping, its instance) if `actor` may work on the task.

        One query, locking the task's instance row (PostgreSQL), as every step locks it first:
        concurrent completions queue here, and the losers then find the task no longer ready
        in the workflow (TaskGone) or gone from the table (TaskGone, or a claim's count of 0)."""
        found = fetch_task_with_instance(s, task_id)
        if found is None:
            raise TaskGone(f"task {task_id} is not open (already completed, cancelled or unknown)")
        ot, row, groups = found
        if actor.id in (ot["assignee"], ot["claimed_by"]):
            return ot, row
        mine = groups & (actor.groups | {user_group(actor.id)})
        if ot["claimed_by"] is None and mine:
            return ot, row
        if ot["claimed_by"] is not None and mine:
            raise TaskTaken(f"task is claimed by {ot['claimed_by']}")
        raise Forbidden("this task is not assigned to you or your groups")

    def for_actor(self, actor: Actor | None = None, *, process_key: str | None = None,
                  business_key: str | None = None, instance_id: int | None = None,
                  limit: int = 100, offset: int = 0) -> list[dict]:
        """Open tasks a person may work on: assigned to them, claimed by them, or unclaimed
        in one of their groups; optionally narrowed to a process, business key or instance."""
        pg = self.engine.db.dialect.name == "postgresql"
        params: dict = {"limit": max(0, min(limit, 1000)), "offset": max(0, offset)}
        if actor is not None:
            groups = sorted(actor.groups | {user_group(actor.id)})
            params.update(actor=actor.id, groups=groups if pg else json.dumps(groups))
        for name, value in (("process_key", process_key), ("business_key", business_key),
                            ("instance_id", instance_id)):
            if value is not None:
                params[name] = value
        q = _task_query(pg, actor is not None, process_key is not None, business_key is not None,
                        instance_id is not None)
        with self.engine.reading() as conn:     # (one statement: the groups come joined with each task)
            rows = direct.execute(conn, q, params).mappings()
        out = []
        for r in rows:
            task = dict(r)
            joined = task.pop("groups_joined")
            task.update(groups=sorted(joined.split(GROUP_SEPARATOR)) if joined else [],
                        due_at=from_db(task["due_at"]), created_at=from_db(task["created_at"]))
            out.append(task)
        return out

    def form(self, task_id: str):
        """The form-js schema a task needs, or None."""
        with self.engine.transaction(write=False) as s:
            ot = fetch_open_task(s, task_id)
            if ot is None or not ot["form_ref"]:
                return None
            row = fetch_instance(s, ot["instance_id"])
            found = self.engine.definitions.form_for(s, row.definition_id, ot["form_ref"])
            return found[1] if found else None


class FormsOf:
    """The form-js schema (as a dict) of each task of a page, each deployed form read and
    parsed once: `FormsOf(engine)(task)`; None for a task without a form."""

    def __init__(self, engine):
        self.engine, self.seen = engine, {}

    def __call__(self, task: dict) -> dict | None:
        if not task.get("form_ref"):
            return None
        key = task.get("form_definition_id") or task["id"]
        if key not in self.seen:
            form = self.engine.tasks.form(task["id"])
            self.seen[key] = forms.form_to_dict(form) if form is not None else None
        return self.seen[key]


@functools.lru_cache(maxsize=None)
def _task_query(pg: bool, by_actor: bool, by_process: bool, by_key: bool, by_instance: bool):
    """One prebuilt statement per database and combination of filters (32 at most). The
    person's groups are one parameter (an array on PostgreSQL, a JSON list on SQLite), not an
    expanding IN, so the statement is compiled once and runs on the cursor (engine.db.direct)."""
    q = select(OpenTask.__table__, GROUPS_JOINED.label("groups_joined"))
    if by_actor:
        if pg:
            mine = TaskGroup.group_name == func.any(bindparam("groups", type_=postgresql.ARRAY(String)))
        else:
            mine = TaskGroup.group_name.in_(select(literal_column("value"))
                                            .select_from(func.json_each(bindparam("groups", type_=String))))
        if by_key or by_instance:
            # A few candidate tasks: each checked on task_group's primary key (task_id, group_name).
            # (`id IN (the group's tasks)` reads every open task of the person's groups first:
            # bench.task_lookup, 30,000 open tasks, 1.9 ms on PostgreSQL and 3.3 ms on SQLite.)
            offered = select(TaskGroup.task_id).where(TaskGroup.task_id == OpenTask.id, mine).exists()
        else:
            # A page of everything offered to the person: the groups' tasks looked up once.
            offered = OpenTask.id.in_(select(TaskGroup.task_id).where(mine))
        q = q.where(or_(OpenTask.assignee == bindparam("actor"), OpenTask.claimed_by == bindparam("actor"),
                        OpenTask.claimed_by.is_(None) & offered))
    if by_process:
        q = q.where(OpenTask.process_key == bindparam("process_key"))
    if by_key:
        q = q.where(OpenTask.business_key == bindparam("business_key"))
    if by_instance:
        q = q.where(OpenTask.instance_id == bindparam("instance_id"))
    return q.order_by(OpenTask.created_at, OpenTask.id).limit(bindparam("limit")).offset(bindparam("offset"))
