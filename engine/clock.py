"""Time for the engine: one injectable clock, and the UTC convention for storage."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import overload

__all__ = ["ManualClock", "from_db", "to_db", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ManualClock:
    """A clock tests move by hand: `clock.advance(hours=5)`. Thread-safe."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta) -> datetime:
        with self._lock:
            self._now += timedelta(**delta)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


@overload
def to_db(dt: datetime) -> datetime: ...


@overload
def to_db(dt: None) -> None: ...


def to_db(dt: datetime | None) -> datetime | None:
    """Datetimes go to the database aware, in UTC (SQLModel's UTCDateTime column type
    refuses naive values); a naive value here is taken as UTC already."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@overload
def from_db(dt: datetime) -> datetime: ...


@overload
def from_db(dt: None) -> None: ...


def from_db(dt: datetime | None) -> datetime | None:
    """Aware UTC whatever the backend returned."""
    return to_db(dt)
