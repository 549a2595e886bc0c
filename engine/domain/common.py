"""Small helpers the domain operations share."""
from __future__ import annotations

import calendar
import json
from datetime import datetime

from sqlmodel import Session

from engine.clock import to_db
from engine.db import direct
from engine.db.upsert import insert_if_new, insert_later
from engine.domain.models import Notification
from engine.runtime.operations import OperationError

__all__ = ["add_months", "dumps", "exclusive", "load", "need", "notify", "notify_once", "parse_time"]


def add_months(when: datetime, months: int) -> datetime:
    """Calendar months, clamping the day (31 Oct + 4 months = 28/29 Feb)."""
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def notify(session: Session, key: str, recipient: str, subject: str, body: str, now: datetime) -> None:
    """Queue a notification once per key (INSERT ... ON CONFLICT DO NOTHING, sent with the
    step's other writes)."""
    insert_later(session, Notification, _notification(key, recipient, subject, body, now), conflict=("key",))


def notify_once(session: Session, key: str, recipient: str, subject: str, body: str, now: datetime) -> bool:
    """`notify`, saying whether it was new: False if a notification with this key was already queued."""
    return insert_if_new(session, Notification, _notification(key, recipient, subject, body, now), conflict=("key",))


def _notification(key: str, recipient: str, subject: str, body: str, now: datetime) -> dict:
    return {"key": key[:200], "recipient": recipient[:120], "subject": subject[:200], "body": body,
            "created_at": to_db(now)}


def need(data, name: str, kind=None):
    """A variable an operation cannot work without."""
    if name not in data or data[name] is None:
        raise OperationError(f"process variable {name!r} is missing")
    value = data[name]
    if kind is not None and not isinstance(value, kind):
        raise OperationError(f"process variable {name!r} has the wrong type ({type(value).__name__})")
    return value


def exclusive(session: Session, name: str) -> None:
    """Hold a database-wide lock on `name` until this transaction ends (PostgreSQL advisory
    lock; SQLite writers are already serialized by BEGIN IMMEDIATE). For calendar jobs that
    every worker runs at the same minute."""
    if session.get_bind().dialect.name == "postgresql":
        conn = session.connection()
        direct.flush(conn)     # (exec_driver_sql does not send deferred writes, the transaction's BEGIN among them)
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%(n)s))", {"n": name})


def load(session: Session, model, data, name: str):
    """The record a process variable names (e.g. household_id), or an OperationError."""
    row = session.get(model, need(data, name, int))
    if row is None:
        raise OperationError(f"{model.__name__.lower()} {data[name]} does not exist")
    return row


def parse_time(value) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        raise OperationError(f"not an ISO date-time: {value!r}") from None
    if dt.tzinfo is None:
        raise OperationError(f"date-time without an offset: {value!r}")
    return dt


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
