"""bench/pgwire.py: the frontend-protocol parser that counts PostgreSQL round trips.

The first tests feed it hand-made byte streams (they run on every backend). The others pass a
real psycopg session through the proxy to the PostgreSQL server of CITYLOOP_TEST_DATABASE_URL
(they only read: SELECTs, no table) and assert the exact counts psycopg produces, with why."""
from __future__ import annotations

import os
import struct

import pytest

from bench.pgwire import SSL_REQUEST, FrontendParser, ProtocolError, Tally, WireProxy

PG_URL = os.environ.get("CITYLOOP_TEST_DATABASE_URL")
needs_pg = pytest.mark.postgresql_only     # (deselected in the SQLite pass: tests/conftest.py)


def msg(kind: str, payload: bytes = b"") -> bytes:
    return kind.encode() + struct.pack("!i", 4 + len(payload)) + payload


def startup() -> bytes:
    body = struct.pack("!i", 3 << 16) + b"user\x00postgres\x00database\x00test\x00\x00"
    return struct.pack("!i", 4 + len(body)) + body


def extended(sql: bytes) -> bytes:
    """One statement of the extended protocol without its Sync: Parse, Bind, Describe, Execute."""
    return (msg("P", b"\x00" + sql + b"\x00\x00\x00") + msg("B", b"\x00\x00" + b"\x00" * 6)
            + msg("D", b"P\x00") + msg("E", b"\x00" + b"\x00" * 4))


STREAM = b"".join([
    struct.pack("!ii", 8, SSL_REQUEST),                    # answered 'N' by the proxy; still untyped after it
    startup(),
    msg("Q", b"SELECT 1\x00"),                             # 1: simple query
    extended(b"SELECT $1") + msg("S"),                     # 2: one statement, one Sync
    extended(b"SELECT 2") + extended(b"SELECT 3") + msg("S") + msg("H"),   # 3: pipelined; Flush after Sync: no wait
    extended(b"SELECT 4") + msg("H"),                      # 4: a cursor fetching mid-pipeline
    extended(b"SELECT 5") + msg("S") + msg("H"),           # 5
    msg("d", b"x" * 70_000),                               # a large message (CopyData) is skipped, not counted
    msg("X"),
])


def counts(chunks) -> dict[str, int]:
    parser = FrontendParser()
    for chunk in chunks:
        parser.feed(chunk)
    return dict(parser.tally.snapshot())


def test_a_stream_counts_the_same_however_it_is_cut():
    whole = counts([STREAM])
    assert whole == {"encryption_request": 1, "startup": 1, "round_trips": 5, "Q": 1, "P": 5, "B": 5, "D": 5,
                     "E": 5, "S": 3, "H": 3, "d": 1, "X": 1}
    assert counts(STREAM[i:i + 1] for i in range(len(STREAM))) == whole
    assert counts(STREAM[i:i + 7] for i in range(0, len(STREAM), 7)) == whole


def test_a_tls_stream_is_refused_not_misread():
    parser = FrontendParser()
    parser.feed(struct.pack("!ii", 8, SSL_REQUEST))
    with pytest.raises(ProtocolError):
        parser.feed(bytes.fromhex("160301020001000001fc0303") + b"\x00" * 20)   # a TLS ClientHello


def test_a_typed_message_shorter_than_its_length_field_is_refused():
    parser = FrontendParser()
    parser.feed(startup())
    with pytest.raises(ProtocolError):
        parser.feed(b"S" + struct.pack("!i", 3))


def test_connections_share_one_tally():
    tally = Tally()
    for _ in range(2):
        FrontendParser(tally).feed(startup() + msg("Q", b"SELECT 1\x00"))
    assert tally.snapshot()["round_trips"] == 2


# ---- a real psycopg session through the proxy ----------------------------------------------------
@pytest.fixture
def proxy():
    url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with WireProxy(url) as p:
        yield p
    assert p.errors == []


def run(proxy, work, **connect) -> dict[str, int]:
    """The counts `work(conn)` adds, on a connection made (and counted) before it."""
    import psycopg
    with psycopg.connect(proxy.url, prepare_threshold=None, **connect) as conn:
        before = proxy.tally.snapshot()
        work(conn)
        return dict(proxy.tally.snapshot() - before)


SQL = ("SELECT %s::int", "SELECT %s::int + 1", "SELECT %s::int + 2")


@needs_pg
def test_three_statements_in_autocommit_are_three_round_trips(proxy):
    def work(conn):
        for q in SQL:
            conn.execute(q, (1,)).fetchone()
    # each statement with parameters: Parse, Bind, Describe, Execute, Sync, then wait
    assert run(proxy, work, autocommit=True) == {"round_trips": 3, "P": 3, "B": 3, "D": 3, "E": 3, "S": 3}


@needs_pg
def test_statements_without_parameters_go_as_simple_queries(proxy):
    def work(conn):
        for q in ("SELECT 1", "SELECT 2", "SELECT 3"):
            conn.execute(q).fetchone()
    assert run(proxy, work, autocommit=True) == {"round_trips": 3, "Q": 3}


@needs_pg
def test_three_statements_in_a_pipeline_are_one_round_trip(proxy):
    def work(conn):
        with conn.pipeline():
            for q in SQL:
                conn.execute(q, (1,))
    # one Sync when the block ends, and a Flush right after it (psycopg fetches with flush=True): one wait
    assert run(proxy, work, autocommit=True) == {"round_trips": 1, "P": 3, "B": 3, "D": 3, "E": 3, "S": 1, "H": 1}


@needs_pg
def test_fetching_inside_a_pipeline_costs_a_round_trip(proxy):
    def work(conn):
        with conn.pipeline():
            first = conn.execute(SQL[0], (1,))
            assert first.fetchone() == (1,)       # Flush, wait for the results so far
            conn.execute(SQL[1], (1,))
            conn.execute(SQL[2], (1,))
    assert run(proxy, work, autocommit=True) == {"round_trips": 2, "P": 3, "B": 3, "D": 3, "E": 3, "S": 1, "H": 2}


@needs_pg
def test_a_transaction_adds_begin_and_commit(proxy):
    def plain(conn):
        for q in SQL:
            conn.execute(q, (1,)).fetchone()
        conn.commit()
    # BEGIN and COMMIT go as simple queries: 1 + 3 + 1
    assert run(proxy, plain) == {"round_trips": 5, "Q": 2, "P": 3, "B": 3, "D": 3, "E": 3, "S": 3}

    def pipelined(conn):
        with conn.pipeline():
            for q in SQL:
                conn.execute(q, (1,))
        conn.commit()
    # In a pipeline psycopg sends BEGIN as a statement and syncs (waits) right after it
    # (Connection._start_query), then the three statements share the closing Sync; COMMIT
    # after the block is a simple query: 3 round trips for 3 statements in a transaction.
    assert run(proxy, pipelined) == {"round_trips": 3, "Q": 1, "P": 4, "B": 4, "D": 4, "E": 4, "S": 2, "H": 1}


@needs_pg
def test_preparing_a_statement_costs_one_round_trip_once(proxy):
    import psycopg
    with psycopg.connect(proxy.url, autocommit=True, prepare_threshold=1) as conn:
        seen = []
        for i in range(3):
            before = proxy.tally.snapshot()
            conn.execute(SQL[0], (i,)).fetchone()
            d = proxy.tally.snapshot() - before
            seen.append((d["round_trips"], d["P"]))
    # 1st: unprepared (Parse, Sync); 2nd: Parse of the named statement + Sync, wait, then
    # Bind/Execute + Sync; after that no Parse at all
    assert seen == [(1, 1), (2, 1), (1, 0)]


@needs_pg
def test_an_ssl_request_is_refused_by_the_proxy_and_the_session_goes_on(proxy):
    import psycopg
    url = proxy.url.replace("sslmode=disable", "sslmode=prefer&gssencmode=disable")
    before = proxy.tally.snapshot()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        assert conn.pgconn.ssl_in_use is False
    d = proxy.tally.snapshot() - before
    assert (d["encryption_request"], d["startup"], d["round_trips"]) == (1, 1, 1)
