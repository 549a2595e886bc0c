"""The tablet's own state, beside the sync outbox: who is signed in, settings, and form
drafts (savepoints).

A SQLite file in WAL mode with synchronous=FULL: every `put` and `save_draft` is on disk
when it returns, so a form answer the app has shown as typed survives a kill at any moment.
A draft remembers the form it belongs to (id and a digest of its JSON) and the task version
it was based on, so it is only ever reopened on that same form; the field that had focus is
kept to reopen at it. Plain Python, no Kivy."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

__all__ = ["Draft", "LocalStore", "form_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS draft (key TEXT PRIMARY KEY, title TEXT NOT NULL, form_id TEXT NOT NULL,
    form_digest TEXT NOT NULL, based_on_version INTEGER, data TEXT NOT NULL, focus TEXT, extra TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
"""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def form_digest(form: dict | None) -> str:
    """A short fingerprint of a form's JSON: a draft reopens only on the very same form."""
    text = json.dumps(form or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Draft:
    key: str                    # "task:<task id>" or "household:<id>" (an inspection started on the tablet)
    title: str
    form_id: str
    form_digest: str
    based_on_version: int | None
    data: dict
    focus: str | None           # the key of the field last edited
    extra: dict                 # what else the screen needs to reopen it (household, photos taken, ...)
    created_at: str
    updated_at: str

    def fits(self, form_id: str, digest: str, version: int | None) -> bool:
        """Only the same form, the same version of it, and the same task version."""
        return (self.form_id, self.form_digest, self.based_on_version) == (form_id, digest, version)


class LocalStore:
    def __init__(self, path: str | Path, clock: Callable[[], datetime] = _now):
        self.path, self.clock = Path(path), clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            self.db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ---- settings and session (JSON values) -------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if value is None:
                self.db.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                                (key, json.dumps(value, ensure_ascii=False)))

    # ---- drafts -----------------------------------------------------------------------------------
    def save_draft(self, key: str, *, title: str, form_id: str, digest: str, based_on_version: int | None,
                   data: dict, focus: str | None = None, extra: dict | None = None) -> Draft:
        now = self.clock().isoformat()
        with self._lock:
            self.db.execute(
                "INSERT INTO draft (key, title, form_id, form_digest, based_on_version, data, focus, extra, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET title = excluded.title, "
                "form_id = excluded.form_id, form_digest = excluded.form_digest, "
                "based_on_version = excluded.based_on_version, data = excluded.data, focus = excluded.focus, "
                "extra = excluded.extra, updated_at = excluded.updated_at",
                (key, title, form_id, digest, based_on_version, json.dumps(data, ensure_ascii=False), focus,
                 json.dumps(extra or {}, ensure_ascii=False), now, now))
        found = self.draft(key)
        assert found is not None
        return found

    def draft(self, key: str) -> Draft | None:
        with self._lock:
            row = self.db.execute("SELECT key, title, form_id, form_digest, based_on_version, data, focus, extra, "
                                  "created_at, updated_at FROM draft WHERE key = ?", (key,)).fetchone()
        return self._draft(row) if row else None

    def drafts(self) -> list[Draft]:
        with self._lock:
            rows = self.db.execute("SELECT key, title, form_id, form_digest, based_on_version, data, focus, extra, "
                                   "created_at, updated_at FROM draft ORDER BY updated_at DESC").fetchall()
        return [self._draft(r) for r in rows]

    def drop_draft(self, key: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM draft WHERE key = ?", (key,))

    @staticmethod
    def _draft(row) -> Draft:
        return Draft(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], json.loads(row[7]), row[8],
                     row[9])
