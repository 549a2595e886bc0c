"""One SQLite writer at a time, queued in the kernel rather than by SQLite's busy handler.

SQLite lets one transaction write at a time. A writer that finds the lock taken sleeps in
SQLite's busy handler (1, 2, 5, 10 ... 100 ms) and polls again, so under load the queue
turns into sleeps: with two server workers, completions waited hundreds of milliseconds
while the database sat idle. Here a writer first takes this process's thread lock, then
an exclusive flock on ``<database>-writer.lock``: the kernel wakes the next writer the
moment the previous one commits. The busy handler stays as the safety net for anything
that writes without this (it then simply waits as before).

Used by engine.db.session: the connection class releases the lock after COMMIT/ROLLBACK
has really finished, not when SQLAlchemy announces it."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading

__all__ = ["THREAD_WAIT_SECONDS", "WriterConnection", "WriterLock"]

THREAD_WAIT_SECONDS = 30.0   # as SQLite's busy_timeout: then "database is locked"


class WriterLock:
    """Process-wide for one database file: a thread lock plus a flock across processes."""

    _by_path: dict[str, "WriterLock"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: str):
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    @classmethod
    def for_database(cls, database: str) -> "WriterLock":
        path = os.path.abspath(database) + "-writer.lock"
        with cls._registry_lock:
            lock = cls._by_path.get(path)
            if lock is None:
                lock = cls._by_path[path] = cls(path)
            return lock

    def acquire(self) -> None:
        if not self._thread_lock.acquire(timeout=THREAD_WAIT_SECONDS):
            raise sqlite3.OperationalError("database is locked (waited for this process's writer)")
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)   # blocks in the kernel, GIL released
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():   # a forked child opens its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd


class WriterConnection(sqlite3.Connection):
    """A sqlite3 connection that holds the writer lock from BEGIN IMMEDIATE until its
    COMMIT or ROLLBACK has completed."""

    writer_lock: WriterLock | None = None
    _holding = False

    def begin_write(self) -> None:
        if self.writer_lock is not None and not self._holding:
            self.writer_lock.acquire()
            self._holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._let_go()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if self.in_transaction is False:
                self._let_go()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._let_go()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if self._holding:
            self._holding = False
            self.writer_lock.release()
