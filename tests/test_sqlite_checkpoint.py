"""SQLite's WAL is checkpointed by a thread of the engine's own (engine.db.sqlite_checkpoint), not
inside a writer's COMMIT: commits leave the WAL to it, it copies the WAL into the database
file, the WAL stays bounded if it stops, and it stops with its engine. (SQLite only: PostgreSQL
has its own checkpointer.)"""
from __future__ import annotations

import gc
import sqlite3

from sqlalchemy import text

from engine.db import sqlite_checkpoint
from engine.db.session import make_engine
from tests.waiting import wait_until

ROW = "x" * 3000        # about one page per row


def _write(db, rows: int) -> None:
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": ROW}] * rows)


def _wal_frames(path) -> tuple[int, int]:
    """(frames in the WAL, frames copied into the database) as SQLite reports them now."""
    with sqlite3.connect(path) as probe:
        _, frames, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied


def test_the_checkpointer_copies_what_commits_wrote(tmp_path):
    path = tmp_path / "c.db"
    db = make_engine(f"sqlite:///{path}")
    try:
        checkpointer = sqlite_checkpoint.checkpointer_of(db)
        assert checkpointer is not None and checkpointer.running
        with db.connect() as conn:       # every connection leaves checkpoints to it, up to the backstop
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == sqlite_checkpoint.BACKSTOP_PAGES
            assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == sqlite_checkpoint.JOURNAL_SIZE_LIMIT
        runs = checkpointer.runs
        _write(db, 200)
        wait_until(lambda: checkpointer.runs > runs and checkpointer.last is not None
                   and checkpointer.last[1] >= 200 and checkpointer.last[1] == checkpointer.last[2],
                   what="a checkpoint that copied the whole WAL")
        assert checkpointer.last[0] == 0, "a passive checkpoint never waits for anyone"
    finally:
        db.dispose()


def test_a_commit_past_sqlite_s_default_threshold_does_not_checkpoint(tmp_path):
    path = tmp_path / "c.db"
    db = make_engine(f"sqlite:///{path}")
    try:
        sqlite_checkpoint.checkpointer_of(db).stop()
        _write(db, 1500)                 # SQLite's own default would checkpoint past 1,000 pages
        assert path.stat().st_size < 1_000_000, "the pages are still only in the WAL"
        # ... but a commit that takes the WAL past the backstop checkpoints it
        _write(db, sqlite_checkpoint.BACKSTOP_PAGES)
        assert path.stat().st_size > 1500 * len(ROW), "the backstop checkpoint ran inside a commit"
        frames, copied = _wal_frames(path)
        assert frames >= sqlite_checkpoint.BACKSTOP_PAGES and copied == frames
    finally:
        db.dispose()


def test_it_stops_with_its_engine(tmp_path):
    db = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    checkpointer = sqlite_checkpoint.checkpointer_of(db)
    db.dispose()
    assert not checkpointer.running, "disposing the engine stops it"

    other = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    checkpointer = sqlite_checkpoint.checkpointer_of(other)
    del other
    gc.collect()
    wait_until(lambda: not checkpointer.running, what="the thread of a collected engine to end")

    third = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        _write(third, 1)
        checkpointer = sqlite_checkpoint.checkpointer_of(third)
        for leftover in tmp_path.glob("c.db*"):
            leftover.unlink()
        wait_until(lambda: not checkpointer.running, what="the thread of a removed database to end")
        assert not (tmp_path / "c.db").exists(), "it did not make the file again"
    finally:
        third.dispose()


def test_an_in_memory_database_has_none():
    db = make_engine("sqlite://")
    try:
        assert sqlite_checkpoint.checkpointer_of(db) is None
    finally:
        db.dispose()
