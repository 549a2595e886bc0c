"""Tables of the field sync protocol (migration 0006).

sync_op is the durable record of every op a device pushed, written in the same transaction
as the op's effect: its primary key (the device-made UUID) is what makes a retried or
concurrent op apply once. sync_op_wait lists the photos a 'waiting' op still needs;
sync_conflict keeps both sides of a conflict for a supervisor; sync_cursor remembers what
each device was sent, so a pull returns only the difference (and removals with a reason)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

__all__ = ["SyncConflict", "SyncCursor", "SyncOp", "SyncOpWait"]


class SyncOp(SQLModel, table=True):
    __tablename__ = "sync_op"
    __table_args__ = (Index("ix_sync_op_actor_time", "actor", "server_time"),)
    op_id: str = Field(primary_key=True, max_length=36)
    actor: str = Field(max_length=64)
    device: Optional[str] = Field(default=None, max_length=64)
    kind: str = Field(max_length=32)
    task_id: Optional[str] = Field(default=None, max_length=36, index=True)
    body_hash: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))          # canonical JSON of the op
    verdict: str = Field(max_length=16, index=True)                     # applied|conflict|invalid|waiting
    code: int
    result: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # the verdict to answer again
    device_time: Optional[datetime] = None
    server_time: datetime                                               # orders events
    skew_seconds: Optional[float] = None
    skew_flagged: bool = False
    lat: Optional[float] = None
    lon: Optional[float] = None
    accuracy: Optional[float] = None
    created_at: datetime
    settled_at: Optional[datetime] = None


class SyncOpWait(SQLModel, table=True):
    __tablename__ = "sync_op_wait"
    op_id: str = Field(foreign_key="sync_op.op_id", primary_key=True, max_length=36, ondelete="CASCADE")
    sha256: str = Field(primary_key=True, max_length=64, index=True)


class SyncConflict(SQLModel, table=True):
    __tablename__ = "sync_conflict"
    id: Optional[int] = Field(default=None, primary_key=True)
    op_id: str = Field(foreign_key="sync_op.op_id", max_length=36, unique=True)
    actor: str = Field(max_length=64, index=True)
    unit_code: Optional[str] = Field(default=None, max_length=40)
    kind: str = Field(max_length=32)
    task_id: Optional[str] = Field(default=None, max_length=36)
    reason: str = Field(max_length=32)
    device_side: str = Field(sa_column=Column(Text, nullable=False))    # the op as the device sent it
    server_side: str = Field(sa_column=Column(Text, nullable=False))    # what the server held instead
    created_at: datetime = Field(index=True)
    resolved_at: Optional[datetime] = None
    resolved_by: Optional[str] = Field(default=None, max_length=64)
    resolution: Optional[str] = Field(default=None, max_length=32)
    note: Optional[str] = Field(default=None, sa_column=Column(Text))


class SyncCursor(SQLModel, table=True):
    """Per person and device: the state acknowledged by the device and the one last sent."""
    __tablename__ = "sync_cursor"
    key: str = Field(primary_key=True, max_length=140)
    actor: str = Field(max_length=64, index=True)
    acked_gen: int = 0
    acked: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    pending_gen: int = 0
    pending: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    updated_at: datetime
