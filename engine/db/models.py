"""Engine tables: definitions, instances, and the side tables queries run on.

All datetimes are stored aware in UTC (SQLModel UTCDateTime; see engine.clock.to_db), the same on
SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["AuditEvent", "AwaitedMessage", "Definition", "Incident", "Instance", "OpenTask", "OperationEffect",
           "ServerSecret", "TaskGroup"]


class Definition(SQLModel, table=True):
    """One deployed version of a BPMN process, DMN decision or form-js form."""
    __tablename__ = "definition"
    __table_args__ = (
        UniqueConstraint("kind", "key", "version", name="uq_definition_version"),
        Index("ix_definition_kind_key", "kind", "key"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)            # bpmn | dmn | form
    key: str = Field(max_length=128)           # process id / decision id / form id
    version: int
    sha256: str = Field(max_length=64)
    filename: str = Field(max_length=255)
    content: str = Field(sa_column=Column(Text, nullable=False))
    # For a process: the definition ids of the decisions and forms it was deployed with,
    # as JSON {"dmn": {...}, "form": {...}}. Running instances keep exactly these.
    pins: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    deployed_at: datetime
    deployed_by: str = Field(max_length=128)


class Instance(SQLModel, table=True):
    __tablename__ = "instance"
    __table_args__ = (
        Index("ix_instance_next_timer", "next_timer_at"),
        Index("ix_instance_business_key", "process_key", "business_key"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    process_key: str = Field(max_length=128)
    definition_id: int = Field(foreign_key="definition.id", index=True)
    business_key: Optional[str] = Field(default=None, max_length=128)
    state: str = Field(default="running", max_length=16, index=True)  # running|completed|failed|cancelled
    version: int = Field(default=1)            # optimistic lock: every write bumps it
    workflow: str = Field(sa_column=Column(Text, nullable=False))
    next_timer_at: Optional[datetime] = None
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    created_at: datetime
    updated_at: datetime
    completed_at: Optional[datetime] = None


class OpenTask(SQLModel, table=True):
    """A ready human task, mirrored from the workflow for queries."""
    __tablename__ = "open_task"
    id: str = Field(primary_key=True, max_length=36)       # SpiffWorkflow task UUID
    instance_id: int = Field(foreign_key="instance.id", index=True)
    process_key: str = Field(max_length=128)
    business_key: Optional[str] = Field(default=None, max_length=128, index=True)   # a case's tasks by its key
    name: str = Field(max_length=128)                       # BPMN element id
    title: str = Field(max_length=255)
    form_ref: Optional[str] = Field(default=None, max_length=128)
    form_definition_id: Optional[int] = None
    assignee: Optional[str] = Field(default=None, max_length=128, index=True)
    claimed_by: Optional[str] = Field(default=None, max_length=128, index=True)
    due_at: Optional[datetime] = None
    created_at: datetime


class TaskGroup(SQLModel, table=True):
    __tablename__ = "task_group"
    task_id: str = Field(foreign_key="open_task.id", primary_key=True, max_length=36, ondelete="CASCADE")
    group_name: str = Field(primary_key=True, max_length=128, index=True)


class AwaitedMessage(SQLModel, table=True):
    __tablename__ = "awaited_message"
    instance_id: int = Field(foreign_key="instance.id", primary_key=True)
    name: str = Field(primary_key=True, max_length=128, index=True)
    business_key: Optional[str] = Field(default=None, max_length=128, index=True)


class AuditEvent(SQLModel, table=True):
    """Append-only: who did what to which instance, when and why."""
    __tablename__ = "audit_event"
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: Optional[int] = Field(default=None, index=True)
    business_key: Optional[str] = Field(default=None, max_length=128, index=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    element: Optional[str] = Field(default=None, max_length=128)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class OperationEffect(SQLModel, table=True):
    """Service-task side effects done, keyed by instance + task, so a retried step never
    repeats one."""
    __tablename__ = "operation_effect"
    key: str = Field(primary_key=True, max_length=200)
    topic: str = Field(max_length=64)
    result: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    at: datetime


class ServerSecret(SQLModel, table=True):
    """Keys made by the server and shared by every worker on the database (token signing,
    badge-key sealing)."""
    name: str = Field(primary_key=True, max_length=32)
    value: str = Field(max_length=128)


class Incident(SQLModel, table=True):
    """A step a deployed process could not take (Camunda's incident): the failing element,
    the error and the definition version, with what the caller submitted, kept so that it
    can be retried once the definition is fixed, or resolved by an administrator. Open
    while `resolved_at` is empty."""
    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_open", "resolved_at", "id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instance.id", index=True)
    process_key: str = Field(max_length=128)
    business_key: Optional[str] = Field(default=None, max_length=128)
    definition_id: int
    version: int                                  # the process version that failed
    step: str = Field(max_length=16)              # start | task | message | timer
    element: Optional[str] = Field(default=None, max_length=128)
    message: str = Field(sa_column=Column(Text, nullable=False))          # for administrators only
    submission: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON: what the caller sent
    actor: str = Field(max_length=64)
    attempts: int = 1
    created_at: datetime
    last_failed_at: datetime
    resolved_at: Optional[datetime] = None
    resolved_by: Optional[str] = Field(default=None, max_length=64)
    resolution: Optional[str] = Field(default=None, max_length=16)        # retried | resolved
