"""SQLite writers queue on the writer lock (engine.db.sqlite_writer): concurrent writers in
threads and in other processes all get through, none fails with "database is locked", and
a transaction that rolls back or whose connection is dropped lets the next writer in."""
from __future__ import annotations

import multiprocessing
import threading

from sqlalchemy import text

from engine.db.session import make_engine
from engine.db.sqlite_writer import WriterLock

ROUNDS = 200


def _counter_db(path) -> str:
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    with eng.connect().execution_options(write=True) as c, c.begin():
        c.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        c.execute(text("INSERT INTO counter VALUES (0)"))
    eng.dispose()
    return url


def _bump(url: str, rounds: int, fail_every: int = 0) -> int:
    """Read-modify-write `rounds` times (lost updates would show in the total)."""
    eng = make_engine(url)
    done = 0
    for i in range(rounds):
        try:
            with eng.connect().execution_options(write=True) as c, c.begin():
                n = c.execute(text("SELECT n FROM counter")).scalar_one()
                c.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
                if fail_every and i % fail_every == 0:
                    raise RuntimeError("rolled back on purpose")
            done += 1
        except RuntimeError:
            pass
    eng.dispose()
    return done


def _total(url: str) -> int:
    eng = make_engine(url)
    with eng.connect() as c:
        n = c.execute(text("SELECT n FROM counter")).scalar_one()
    eng.dispose()
    return n


def test_threads_and_processes_write_in_turn_without_lost_updates(tmp_path):
    url = _counter_db(tmp_path / "c.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        others = pool.starmap_async(_bump, [(url, ROUNDS), (url, ROUNDS)])
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(_bump(url, ROUNDS, fail_every=5)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counted = sum(others.get(120)) + sum(results)
    assert counted == 2 * ROUNDS + 4 * (ROUNDS - ROUNDS // 5)
    assert _total(url) == counted


def test_a_dropped_connection_lets_the_next_writer_in(tmp_path):
    url = _counter_db(tmp_path / "d.db")
    eng = make_engine(url)
    conn = eng.connect().execution_options(write=True)
    conn.begin()
    conn.execute(text("UPDATE counter SET n = 41"))
    lock = WriterLock.for_database(str(tmp_path / "d.db"))
    assert not lock._thread_lock.acquire(blocking=False)   # held by the open transaction
    conn.invalidate()                                       # the DBAPI connection is closed
    conn.close()
    assert _bump(url, 1) == 1                               # next writer gets in at once
    assert _total(url) == 1                                 # the dropped write never landed
    eng.dispose()
