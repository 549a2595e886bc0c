"""Prebuilt Core statements run straight on the driver's cursor: the hot path's statements.

SQLAlchemy builds an execution context and a result object around every statement; for
the short statements of a workflow step that costs more than the driver and the round trip
together. Measured on PostgreSQL, CPU per select by id: 100-150 us through
`Connection.execute`, 50-55 us through `execute` here, 30-60 us on a bare psycopg cursor;
and `bench.floor`: a route running ten trivial selects answers 890/s through SQLAlchemy,
1341/s on the cursor.

`execute(conn, stmt, params)` keeps what SQLAlchemy is for here: the statement is still a
Core statement compiled by the connection's dialect (once per dialect and set of keys),
the column types still convert values both ways (the UTC datetime type included), and a
driver error still arrives as SQLAlchemy's exception (IntegrityError, a disconnect
invalidating the pooled connection). It runs on the DBAPI connection under the caller's
SQLAlchemy connection, so it is inside the caller's transaction. What it skips: execution
events and the result object. A statement it cannot run faithfully (expanding or literal
parameters, Python-side column defaults the parameters leave out) goes through
`conn.execute` as before.

Nothing is hidden from those who watch: when SQL logging is on (`echo`, or the
`sqlalchemy.engine` logger at INFO) or anything listens for cursor executions on the engine
(tracing, e.g. OpenTelemetry's SQLAlchemy instrumentation, or a test counting statements),
every statement goes through `conn.execute`, so it is logged and seen like any other.

Kept, not retired (issue 11): the measured saving is about half of SQLAlchemy's CPU per
statement (above). It is confined to this module. It reads SQLAlchemy internals, all named in
`INTERNALS`: tests/test_direct.py pins each one (present, of the expected kind) and checks the
rows against SQLAlchemy's own on both databases, so an upgrade that moves them fails there,
naming what moved.

Deferred writes (issue 14, below `defer`): on PostgreSQL a step's writes go out together in one
psycopg pipeline, an engine transaction's BEGIN goes with its first statement and its COMMIT with
its last writes, so a task completion waits on the server twice (the locked read, then the writes
with the COMMIT) where it waited eleven to thirteen times (counted on the wire by
bench.server_cpu). A write whose row count must be checked (the instance row's version) is
checked by the server, inside the statement, so the check too is ahead of the COMMIT in the same
round trip. What psycopg 3.3 does here, measured with strace: after its own BEGIN it syncs and
waits even inside a pipeline (hence the autocommit connection and our own BEGIN); leaving a
pipeline always sends a Sync; a cursor in a pipeline has no description until its results are
fetched, so SQLAlchemy's own execution cannot run inside one (hence writes are deferred, not the
connection put in pipeline mode); a row count is read after the sync (hence the check in SQL).
"""
from __future__ import annotations

import logging
import re
import weakref
from collections import namedtuple
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

from sqlalchemy import exc as sa_exc

__all__ = ["execute", "execute_many", "runs_on_cursor", "savepoint", "Result", "INTERNALS",
           "begin", "defer", "defer_many", "finish", "flush", "discard", "pending", "watch_deferred"]

# What this module reads of SQLAlchemy beyond its public API (pinned by tests/test_direct.py):
INTERNALS = {
    "SQLCompiler._bind_processors": "bind name -> function converting a value for the driver",
    "SQLCompiler._result_columns": "the result columns, each with .keyname and .type",
    "TypeEngine._cached_result_processor": "(dialect, driver type code) -> function or None",
    "SQLCompiler.positiontup / bind_names / literal_execute_params / post_compile_params / escaped_bind_names":
        "how parameters are laid out, and which statements cannot run as compiled",
    "SQLCompiler.construct_expanded_state": "the SQL with literal-execute constants written in",
}
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # dialect -> {key: (stmt, _Plan | None)}
_SQL_LOG = logging.getLogger("sqlalchemy.engine.Engine")


def _watched(conn) -> bool:
    """SQL logging is on, or something listens for this engine's cursor executions."""
    dispatch = conn.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute or conn.engine.echo
                or _SQL_LOG.isEnabledFor(logging.INFO))


class _Plan:
    """A statement compiled for one dialect and one set of parameter keys."""
    __slots__ = ("sql", "positions", "binds", "constants", "row", "types", "results")

    def __init__(self, compiled, dialect, keys: tuple):
        self.sql = compiled.string
        self.positions = tuple(compiled.positiontup) if compiled.positional else None
        written = {compiled.bind_names[p] for p in compiled.literal_execute_params}
        if written:
            # constants the dialect writes into the SQL text (aggregate_strings' separator):
            # written in once here, where SQLAlchemy would do it on every execution
            expanded = compiled.construct_expanded_state(dict.fromkeys(keys))
            self.sql = expanded.statement
            self.positions = tuple(expanded.positiontup) if compiled.positional else None
        processors = compiled._bind_processors
        self.binds = tuple((name, process) for name, process in processors.items() if name in keys)
        # values bound with the statement (a literal in a WHERE, a LIMIT): converted once
        self.constants = {name: processors[name](value) if name in processors else value
                          for name, value in compiled.params.items() if name not in keys and name not in written}
        columns = compiled._result_columns
        self.row = namedtuple("Row", [c.keyname for c in columns], rename=True) if columns else None
        self.types = tuple(c.type for c in columns)
        self.results = ()   # set on the first execution: a type may convert by the driver's column type code

    def processors(self, dialect, cursor) -> tuple | None:
        if self.results == ():   # (psycopg builds cursor.description anew on every read: only once here)
            found = tuple(t._cached_result_processor(dialect, d[1]) for t, d in zip(self.types, cursor.description))
            self.results = found if any(found) else None
        return self.results

    def parameters(self, params: dict):
        merged = {**self.constants, **params} if self.constants else dict(params)
        for name, process in self.binds:
            merged[name] = process(merged[name])
        if self.positions is not None:
            return tuple(merged[name] for name in self.positions)
        return merged


def _plan(dialect, stmt, keys: tuple, many: bool = False) -> _Plan | None:
    plans = _COMPILED.get(dialect)
    if plans is None:
        plans = _COMPILED[dialect] = {}
    key = (id(stmt), keys, many)
    found = plans.get(key)
    if found is not None:
        return found[1]
    # (many: as for executemany, without the RETURNING of a new row's key an INSERT gets implicitly)
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    faithful = (not any(compiled.bind_names[p] in keys or p.callable is not None
                        for p in compiled.literal_execute_params)
                and not compiled.post_compile_params
                and not compiled.escaped_bind_names
                and not getattr(compiled, "insert_prefetch", None) and not getattr(compiled, "update_prefetch", None))
    plan = _Plan(compiled, dialect, keys) if faithful else None
    plans[key] = (stmt, plan)   # (holding the statement keeps its id from being reused: pass prebuilt ones only)
    return plan


def runs_on_cursor(dialect, stmt, keys: tuple) -> bool:
    """Whether `stmt` with parameters `keys` runs on the cursor here (else SQLAlchemy runs it)."""
    return _plan(dialect, stmt, tuple(keys)) is not None


class Result:
    """What the hot path reads from a statement: rows (named tuples) and rowcount."""
    __slots__ = ("rows", "rowcount", "keys")

    def __init__(self, rows: list, rowcount: int, keys: tuple):
        self.rows, self.rowcount, self.keys = rows, rowcount, keys

    def first(self):
        return self.rows[0] if self.rows else None

    def all(self) -> list:
        return self.rows

    def __iter__(self):
        return iter(self.rows)

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    def scalar_one(self):
        if len(self.rows) != 1:
            raise sa_exc.NoResultFound("expected one row") if not self.rows else sa_exc.MultipleResultsFound(
                "expected one row")
        return self.rows[0][0]

    def scalars(self) -> "_Rows":
        return _Rows(r[0] for r in self.rows)

    def mappings(self) -> "_Rows":
        return _Rows(dict(zip(self.keys, r)) for r in self.rows)


class _Rows(list):
    """Scalars or mappings, read as SQLAlchemy's results are: .first(), .all() or iterated."""

    def first(self):
        return self[0] if self else None

    def all(self) -> list:
        return list(self)


def _cursor(conn):
    """The DBAPI connection and a cursor kept with it (in the pool record's info, so it goes
    when the connection is invalidated); making a psycopg cursor per statement cost ~7% of a
    completion's samples."""
    info = conn.connection.info
    cursor = info.get("direct_cursor")
    if cursor is None:
        cursor = info["direct_cursor"] = conn.connection.dbapi_connection.cursor()
    return conn.connection.dbapi_connection, cursor


def execute(conn, stmt, params: dict | None = None):
    """Run a prebuilt statement with one set of parameters on `conn` (a SQLAlchemy Connection)."""
    params = params or {}
    dialect = conn.dialect
    plan = _plan(dialect, stmt, tuple(params))
    if plan is None or _watched(conn):
        return conn.execute(stmt, params)   # (the before_execute listener flushes deferred writes first)
    args = plan.parameters(params)
    raw, cursor = _cursor(conn)
    if _PENDING in conn.connection.info:    # the deferred writes first, in the same round trip
        flush(conn, then=(plan.sql, args))
    else:
        try:
            cursor.execute(plan.sql, args)
        except dialect.loaded_dbapi.Error as error:
            _raise(conn, dialect, error, plan.sql, args, raw, cursor)
    try:
        if plan.row is None:
            return Result([], cursor.rowcount, ())
        fetched = cursor.fetchall()   # (all of it now: the cursor serves the next statement)
        processors = plan.processors(dialect, cursor)
    except dialect.loaded_dbapi.Error as error:
        _raise(conn, dialect, error, plan.sql, args, raw, cursor)
    make = plan.row._make
    if processors is None:
        rows = [make(r) for r in fetched]
    else:
        rows = [make([p(v) if p else v for p, v in zip(processors, r)]) for r in fetched]
    return Result(rows, len(rows), plan.row._fields)


def execute_many(conn, stmt, rows: list[dict]) -> None:
    """Run a prebuilt statement that returns nothing once per row (the driver's executemany);
    every row has the first one's keys."""
    dialect = conn.dialect
    plan = _plan(dialect, stmt, tuple(rows[0]), many=True) if rows else None
    if plan is None or plan.row is not None or _watched(conn):
        conn.execute(stmt, rows)
        return
    args = [plan.parameters(r) for r in rows]
    raw, cursor = _cursor(conn)
    if _PENDING in conn.connection.info:
        flush(conn)
    try:
        cursor.executemany(plan.sql, args)
    except dialect.loaded_dbapi.Error as error:
        _raise(conn, dialect, error, plan.sql, args, raw, cursor)


def _raise(conn, dialect, error, sql, args, raw, cursor):
    """The driver's error as SQLAlchemy raises it; a lost connection is invalidated, so the
    pool does not hand it out again."""
    gone = dialect.is_disconnect(error, raw, cursor)
    if gone:
        conn.invalidate(error)
    raise sa_exc.DBAPIError.instance(sql, args, error, dialect.loaded_dbapi.Error, connection_invalidated=gone,
                                     dialect=dialect) from error


@contextmanager
def savepoint(session, name: str = "step"):
    """A savepoint inside the session's transaction, on the driver's cursor: if the block
    raises, what it wrote is undone and the transaction goes on (the caller's own writes
    before it stay). `Session.begin_nested()` does the same through SQLAlchemy's transaction
    machinery and cost 0.3-0.4 ms per use on SQLite (measured with bench.lifecycle: a
    work-order start 1.51 -> 1.91 ms); this costs two short statements, and on PostgreSQL no
    round trip of its own: SAVEPOINT and RELEASE go with the deferred writes (below), and a
    block that fails before anything was sent is undone by dropping what it deferred. ORM
    objects the block added are expunged on failure, so the commit does not write them after all."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    conn = session.connection()
    if _watched(conn):        # (logged or traced: let SQLAlchemy run and show it)
        with session.begin_nested():
            yield
        return
    added = {id(obj) for obj in session.new}    # (table models are not hashable)
    _raw, cursor = _cursor(conn)
    deferring = conn.dialect.name == "postgresql"
    marker = _Raw(f"SAVEPOINT {name}")
    if deferring:
        _queue(conn, (marker, None, False, None))
    else:
        cursor.execute(marker.sql)
    try:
        yield
        if session.new or session.dirty or session.deleted:
            session.flush()
    except BaseException:
        waiting = conn.connection.info.get(_PENDING) or []
        unsent = next((i for i, entry in enumerate(waiting) if entry[0] is marker), None)
        if unsent is not None:      # nothing of the block reached the server: drop it all
            del waiting[unsent:]
            if not waiting:
                discard(conn)
        else:
            discard(conn)           # (deferred inside the savepoint: undone with it, never sent)
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
        for obj in [o for o in session.new if id(o) not in added]:
            session.expunge(obj)
        raise
    if deferring:
        _queue(conn, (_Raw(f"RELEASE SAVEPOINT {name}"), None, False, None))
    else:
        cursor.execute(f"RELEASE SAVEPOINT {name}")


# ---- deferred writes ---------------------------------------------------------------------------
#
# A step's writes (the instance row, its open tasks and their groups, awaited messages, the audit
# rows) return nothing the step needs, so on PostgreSQL they wait here and go to the server
# together in one psycopg pipeline: one round trip instead of one per statement (measured with
# bench.server_cpu's wire counter). They are sent before anything else runs on the connection
# (a read must see them; `execute`, `execute_many`, `savepoint`, and for statements SQLAlchemy
# runs the before_execute listener `watch_deferred` installs) and before the commit, and dropped
# on a rollback (to a savepoint or of the transaction). On SQLite, where a statement is a function
# call and no round trip, and whenever the connection is watched (SQL logging, tracing), a deferred
# write runs at once.

_PENDING = "cityloop.deferred_writes"   # DBAPI connection record's info: [(plan, args, many, check)]
_Raw = namedtuple("_Raw", "sql")        # a statement deferred as SQL text (a savepoint's)


def defer(conn, stmt, params: dict, expect: int | None = None,
          otherwise: Callable[[int], BaseException] | None = None) -> None:
    """Run a prebuilt statement that returns no rows, by the time anything else runs on `conn` or
    it commits. `expect`: how many rows it must change; if it changes another number, the
    transaction fails with `otherwise(count)` (the caller then rolls it back). On PostgreSQL the
    count is checked by the server, in the statement, so the COMMIT can go in the same round trip."""
    # (compiled as for executemany: an INSERT without the RETURNING of its new key)
    plan = _plan(conn.dialect, stmt, tuple(params), many=True)
    if not _deferrable(conn, plan):
        result = execute(conn, stmt, params)
        if expect is not None and result.rowcount != expect:
            raise (otherwise or _Unexpected)(result.rowcount)
        return
    check = (expect, otherwise or _Unexpected) if expect is not None else None
    _queue(conn, (plan, plan.parameters(params), False, check))


class _Unexpected(RuntimeError):
    def __init__(self, count: int):
        super().__init__(f"a checked write changed {count} rows")


# A checked write on PostgreSQL: the statement in a CTE, and a cast that fails with the entry's
# tag and the count in its message when the count is not the expected one (not a constant, so
# the planner cannot fold it into an error of every execution).
_CHECKED = ("WITH changed AS ({sql} RETURNING 1) SELECT CASE WHEN count(*) = {expect} THEN 1 ELSE "
            "('cityloop-expect ' || {tag}::text || ':' || count(*))::int END FROM changed")
_CHECK_FAILED = re.compile(r"cityloop-expect (\d+):(\d+)")


def _checked(plan, args, expect: int, tag: int):
    if isinstance(args, dict):
        return _CHECKED.format(sql=plan.sql, expect=int(expect), tag="%(cityloop_check)s"), {**args,
                                                                                           "cityloop_check": tag}
    return _CHECKED.format(sql=plan.sql, expect=int(expect), tag="%s"), (*args, tag)


def defer_many(conn, stmt, rows: list[dict]) -> None:
    """`defer` for several rows of one statement (every row has the first one's keys)."""
    if not rows:
        return
    if len(rows) == 1:
        defer(conn, stmt, rows[0])
        return
    plan = _plan(conn.dialect, stmt, tuple(rows[0]), many=True)
    if not _deferrable(conn, plan):
        execute_many(conn, stmt, rows)
        return
    _queue(conn, (plan, [plan.parameters(r) for r in rows], True, None))


def _deferrable(conn, plan) -> bool:
    """A statement that returns no rows, runs on the cursor, on PostgreSQL, with nobody watching."""
    return plan is not None and plan.row is None and conn.dialect.name == "postgresql" and not _watched(conn)


def _queue(conn, entry: tuple) -> None:
    conn.connection.info.setdefault(_PENDING, []).append(entry)


def pending(conn) -> int:
    """How many deferred statements wait on `conn`."""
    return len(conn.connection.info.get(_PENDING, ()))


def flush(conn, then: tuple | None = None) -> None:
    """Send the deferred writes of `conn` (several in one pipeline); a checked write that changed
    another number of rows than expected raises its error. `then`: (sql, args) of a statement
    to run last in the same round trip, its result left on the connection's cursor."""
    waiting = conn.connection.info.pop(_PENDING, None) or []
    if then is not None:
        waiting.append((_Raw(then[0]), then[1], False, None))
    if not waiting:
        return
    raw, cursor = _cursor(conn)
    sql, args = waiting[-1][0].sql, waiting[-1][1]
    try:
        with raw.pipeline() if len(waiting) > 1 else nullcontext():
            for tag, (plan, args, many, check) in enumerate(waiting):
                sql = plan.sql
                if check is not None:
                    sql, args = _checked(plan, args, check[0], tag)
                if many:
                    cursor.executemany(sql, args)
                else:
                    cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as error:
        failed = _CHECK_FAILED.search(str(getattr(getattr(error, "diag", None), "message_primary", None) or error))
        if failed is not None and int(failed[1]) < len(waiting) and waiting[int(failed[1])][3] is not None:
            raise waiting[int(failed[1])][3][1](int(failed[2])) from None
        _raise(conn, conn.dialect, error, sql, args, raw, cursor)


_BEGIN = _Raw("BEGIN ISOLATION LEVEL READ COMMITTED")
_COMMIT = ("COMMIT", None)


def begin(conn) -> None:
    """Open the transaction with the first statement sent, in its round trip, instead of on a
    round trip of its own (psycopg syncs after its own BEGIN, even in a pipeline). `conn` must
    be in autocommit (isolation_level="AUTOCOMMIT"): the driver then sends no BEGIN, and still
    sends COMMIT or ROLLBACK while the server says a transaction is open. PostgreSQL only."""
    _queue(conn, (_BEGIN, None, False, None))


def finish(conn, commit: bool = False) -> None:
    """`flush` before a commit; a transaction that never sent a statement is not opened at all.
    `commit`: the transaction was opened by `begin`, and its COMMIT goes in the same round trip
    as its last writes (the driver's commit then finds no transaction open and sends nothing).
    Nothing may run on the connection after that but the session's commit."""
    waiting = conn.connection.info.get(_PENDING)
    if not waiting:
        return
    if len(waiting) == 1 and waiting[0][0] is _BEGIN:
        discard(conn)
    else:
        flush(conn, then=_COMMIT if commit else None)


def discard(conn) -> None:
    """Drop the deferred writes of `conn` unsent (its transaction or savepoint rolled back)."""
    conn.connection.info.pop(_PENDING, None)


def watch_deferred(engine) -> None:
    """Make `engine`'s connections send deferred writes before any statement SQLAlchemy runs and
    before a commit, and drop them on a rollback. (Connection-level events: they do not count as
    watching cursor executions, so the hot path stays on the cursor.)"""
    from sqlalchemy import event

    @event.listens_for(engine, "before_execute")
    def _before_execute(conn, *_args):
        if _PENDING in conn.connection.info:
            flush(conn)

    @event.listens_for(engine, "commit")
    def _before_commit(conn):
        if _PENDING in conn.connection.info:
            finish(conn)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn):
        discard(conn)

    @event.listens_for(engine, "rollback_savepoint")
    def _on_rollback_savepoint(conn, *_args):
        discard(conn)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):    # (nothing deferred outlives its checkout)
        record.info.pop(_PENDING, None)
