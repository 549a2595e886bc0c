"""The gateway's on-disk outbox: check-ins wait here until the server has taken them.

One SQLite file (WAL, synchronous=FULL: a check-in that `add` returned for survives a power
cut). Sending is in batches with a stable id: a batch is fixed (its rows marked with the id)
*before* it goes out, so after a crash the same batch is sent again, never a re-mix; rows are
deleted only when the server has answered for them. What the server refuses as a whole
(4xx other than auth) is moved aside to `rejected`, with the server's reason, so that one bad
batch cannot block the rest; nothing is silently dropped."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

__all__ = ["Buffer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL,
    batch TEXT,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_batch ON pending (batch);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    item TEXT NOT NULL,
    batch TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tally (
    name TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
"""


class Buffer:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "gateway-outbox.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Tx(self._db, self._lock)

    def add(self, items: list[dict]) -> None:
        """Store check-ins (one transaction, durable when this returns)."""
        if not items:
            return
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT INTO pending (item, added_at) VALUES (?, ?)",
                           [(json.dumps(i, separators=(",", ":")), now) for i in items])

    def next_batch(self, limit: int) -> tuple[str, list[dict]] | None:
        """The batch to send: an unanswered one first (after a restart), else a new one of up
        to `limit` oldest check-ins. None when empty."""
        with self._tx() as db:
            row = db.execute("SELECT batch FROM pending WHERE batch IS NOT NULL ORDER BY id LIMIT 1").fetchone()
            if row is None:
                batch = uuid.uuid4().hex
                cur = db.execute("UPDATE pending SET batch = ? WHERE id IN "
                                 "(SELECT id FROM pending WHERE batch IS NULL ORDER BY id LIMIT ?)", (batch, limit))
                if cur.rowcount == 0:
                    return None
            else:
                batch = row[0]
            items = [json.loads(r[0]) for r in
                     db.execute("SELECT item FROM pending WHERE batch = ? ORDER BY id", (batch,))]
        return batch, items

    def ack(self, batch: str, tally: dict[str, int] | None = None) -> int:
        """The server answered for this batch: forget it. Returns how many rows went."""
        with self._tx() as db:
            n = db.execute("DELETE FROM pending WHERE batch = ?", (batch,)).rowcount
            for name, count in {"sent": n, **(tally or {})}.items():
                db.execute("INSERT INTO tally (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET n = n + ?",
                           (name, count, count))
        return n

    def reject(self, batch: str, reason: str) -> int:
        with self._tx() as db:
            db.execute("INSERT INTO rejected (id, item, batch, reason, rejected_at) "
                       "SELECT id, item, batch, ?, ? FROM pending WHERE batch = ?", (reason[:2000], time.time(), batch))
            return db.execute("DELETE FROM pending WHERE batch = ?", (batch,)).rowcount

    def pending(self) -> int:
        with self._tx() as db:
            return db.execute("SELECT count(*) FROM pending").fetchone()[0]

    def rejected(self) -> list[tuple[dict, str]]:
        with self._tx() as db:
            return [(json.loads(i), r) for i, r in db.execute("SELECT item, reason FROM rejected ORDER BY id")]

    def tally(self) -> dict[str, int]:
        with self._tx() as db:
            return dict(db.execute("SELECT name, n FROM tally").fetchall())


class _Tx:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
