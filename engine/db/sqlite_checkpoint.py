"""WAL checkpoints of a SQLite database, off the commit path.

By default SQLite checkpoints inside a COMMIT: the write that takes the WAL over 1000 pages
copies them into the database file and syncs it, while it still holds the write lock (ours,
engine.db.sqlite_writer, and SQLite's), so every writer of the process waits behind it.
Measured on this machine in bench.lifecycle's SQLite run: a commit took 97 us at the median
and 3.5 ms at the 99th percentile, and those checkpointing commits were a fifth of all commit
time. Here a thread per engine checkpoints instead, PASSIVE (never blocking a reader or a
writer), a few times a second, so a page written by many commits meanwhile is copied once.
The connections keep an automatic checkpoint at a far larger WAL (`BACKSTOP_PAGES`), so the
WAL stays bounded even if this thread falls behind, and `journal_size_limit` trims the file
after a reset.

The thread stops when its engine is disposed or garbage-collected, or its file removed.

In bench.lifecycle's SQLite scenario (0 loops, the engine alone, three alternating runs of
900 lifecycles against the commit before this): 5.41 -> 5.13 ms per lifecycle."""
from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["BACKSTOP_PAGES", "INTERVAL_SECONDS", "JOURNAL_SIZE_LIMIT", "Checkpointer", "checkpointer_of",
           "connection_pragmas", "start"]

log = logging.getLogger("cityloop.db")

INTERVAL_SECONDS = 0.25
BACKSTOP_PAGES = 16_000                  # (64 MB of 4 KB pages: SQLite's default is 1,000)
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024    # what a reset WAL file is cut back to, in bytes


_BY_ENGINE: "weakref.WeakKeyDictionary[Engine, Checkpointer]" = weakref.WeakKeyDictionary()


def start(engine: Engine, path: str, interval: float = INTERVAL_SECONDS) -> "Checkpointer":
    """Checkpoint `engine`'s database file `path` from a thread of its own (see the module)."""
    checkpointer = _BY_ENGINE[engine] = Checkpointer(engine, path, interval)
    return checkpointer


def checkpointer_of(engine: Engine) -> "Checkpointer | None":
    return _BY_ENGINE.get(engine)


def connection_pragmas() -> tuple[str, ...]:
    """What every connection of a checkpointed database runs when it opens."""
    return (f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}", f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")


class Checkpointer:
    """A daemon thread running `PRAGMA wal_checkpoint(PASSIVE)` on `path` every `interval`
    seconds, on a connection of its own, until `stop()`, until `engine` is disposed or gone, or
    until the file is.
    `runs` counts the checkpoints made; `last` is SQLite's answer to the last one (busy,
    pages in the WAL, pages copied)."""

    def __init__(self, engine: Engine, path: str, interval: float = INTERVAL_SECONDS):
        self.path, self.interval = path, interval
        self.runs = 0
        self.last: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._engine = weakref.ref(engine)
        event.listen(engine, "engine_disposed", self._disposed)
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint {path}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _disposed(self, _engine) -> None:
        self.stop()

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.wait(self.interval):
                if self._engine() is None or not Path(self.path).exists():
                    return      # (the engine is gone, or its database file is)
                try:
                    if conn is None:    # (mode=rw: a database file that is gone is not made again)
                        conn = sqlite3.connect(Path(self.path).absolute().as_uri() + "?mode=rw", uri=True,
                                               isolation_level=None, check_same_thread=False, timeout=1)
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:    # (the commits' backstop checkpoint remains)
                    log.warning("checkpoint of %s failed, retrying in %s s: %s", self.path, self.interval, exc)
                    continue
                self.last = tuple(row) if row else None
                self.runs += 1
        finally:
            if conn is not None:
                conn.close()
