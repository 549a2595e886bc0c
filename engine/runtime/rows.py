"""Plain rows for the step path: the engine reads and writes instances and open tasks with
SQL Core statements, not ORM objects (the ORM's per-object bookkeeping cost more than the
workflow step itself)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlmodel import Session

from engine.db.models import Instance, OpenTask, TaskGroup

_INSTANCE_COLUMNS = (Instance.id, Instance.process_key, Instance.definition_id, Instance.business_key,
                     Instance.state, Instance.version, Instance.workflow, Instance.next_timer_at, Instance.error,
                     Instance.created_at, Instance.updated_at, Instance.completed_at)


@dataclass
class InstanceRow:
    id: int
    process_key: str
    definition_id: int
    business_key: str | None
    state: str
    version: int
    workflow: str
    next_timer_at: datetime | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


def instance_query(*where, lock: bool = False, skip_locked: bool = False):
    q = select(*_INSTANCE_COLUMNS).where(*where)
    if lock:
        q = q.with_for_update(skip_locked=skip_locked)
    return q


def fetch_instance(s: Session, instance_id: int, lock: bool = False) -> InstanceRow | None:
    found = s.connection().execute(instance_query(Instance.id == instance_id, lock=lock)).first()
    return InstanceRow(*found) if found else None


def insert_instance(s: Session, **values) -> InstanceRow:
    new_id = s.connection().execute(insert(Instance).values(**values).returning(Instance.id)).scalar_one()
    return InstanceRow(id=new_id, **values)


def fetch_open_task(s: Session, task_id: str, lock: bool = False):
    q = select(OpenTask.__table__).where(OpenTask.id == task_id)
    if lock:
        q = q.with_for_update()
    return s.connection().execute(q).mappings().first()


def task_groups(s: Session, task_id: str) -> set[str]:
    return set(s.connection().execute(select(TaskGroup.group_name).where(TaskGroup.task_id == task_id)).scalars())
