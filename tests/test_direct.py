"""engine.db.direct runs prebuilt statements on the driver's cursor: it must give what
SQLAlchemy's own execution gives (values converted both ways, errors translated), on the
backend this run uses."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from engine.db import direct
from engine.db.models import AuditEvent
from engine.domain.models import Staff, Unit

AT = datetime(2026, 3, 2, 8, 30, 15, 123456, tzinfo=timezone.utc)
_AUDIT_BY_ACTOR = (select(AuditEvent.id, AuditEvent.at, AuditEvent.kind, AuditEvent.detail)
                   .where(AuditEvent.actor == bindparam("actor"), AuditEvent.kind != "hidden")  # a constant too
                   .order_by(AuditEvent.id).limit(2))                                          # and a LIMIT
_STAFF = select(Staff.id, Staff.active, Staff.unit_code).where(Staff.id == bindparam("id"))
_STAFF_IN = select(Staff.id).where(Staff.id.in_(bindparam("ids", expanding=True))).order_by(Staff.id)
_ROLES_JOINED = (select(func.aggregate_strings(Staff.id, "|")).where(Staff.role == bindparam("role"))
                 .group_by(Staff.role))                        # its separator is written into the SQL
_LIMIT_WRITTEN = select(Staff.id).order_by(Staff.id).limit(bindparam("n", type_=Integer, literal_execute=True))
_DEACTIVATE = update(Staff).where(Staff.role == bindparam("role_of")).values(active=False)
_INSERT_AUDIT, _INSERT_STAFF = insert(AuditEvent), insert(Staff)


@pytest.fixture
def conn(system):
    with Session(system.db) as s, s.begin():
        s.add(Unit(code="u1", name="Unit 1", name_zh="一号", kind="test"))
        s.flush()
        yield s.connection()


def test_rows_match_sqlalchemy_execution_with_converted_values(conn):
    for i, kind in enumerate(("a", "hidden", "b", "c")):
        direct.execute(conn, _INSERT_AUDIT, {"instance_id": None, "business_key": None, "at": AT + timedelta(seconds=i),
                                            "actor": "ann", "kind": kind, "element": None, "detail": "{}"})
    mine = direct.execute(conn, _AUDIT_BY_ACTOR, {"actor": "ann"}).all()
    theirs = conn.execute(_AUDIT_BY_ACTOR, {"actor": "ann"}).all()
    assert [tuple(r) for r in mine] == [tuple(r) for r in theirs]
    assert [r.kind for r in mine] == ["a", "b"]                  # the constant and the LIMIT were bound
    assert mine[0].at == AT and mine[0].at.tzinfo is not None     # the UTC type converted both ways
    assert mine[1].at == AT + timedelta(seconds=2)


def test_booleans_nulls_rowcount_and_mappings(conn):
    direct.execute(conn, _INSERT_STAFF, {"id": "w1", "name": "W", "role": "unit_worker", "unit_code": "u1",
                                         "phone": None, "active": True})
    direct.execute(conn, _INSERT_STAFF, {"id": "w2", "name": "W2", "role": "reviewer", "unit_code": None,
                                         "phone": None, "active": True})
    assert direct.execute(conn, _STAFF, {"id": "w1"}).first() == ("w1", True, "u1")
    assert direct.execute(conn, _STAFF, {"id": "w2"}).mappings().first() == {"id": "w2", "active": True,
                                                                             "unit_code": None}
    assert direct.execute(conn, _STAFF, {"id": "nobody"}).first() is None
    assert direct.execute(conn, _DEACTIVATE, {"role_of": "unit_worker"}).rowcount == 1
    assert direct.execute(conn, _STAFF, {"id": "w1"}).first().active is False


def test_an_expanding_statement_goes_through_sqlalchemy(conn):
    for sid in ("s1", "s2", "s3"):
        direct.execute(conn, _INSERT_STAFF, {"id": sid, "name": sid, "role": "reviewer", "unit_code": None,
                                             "phone": None, "active": True})
    assert direct.execute(conn, _STAFF_IN, {"ids": ["s3", "s1", "zz"]}).scalars().all() == ["s1", "s3"]


def test_a_driver_error_arrives_as_sqlalchemys_exception(conn):
    row = {"id": "dup", "name": "D", "role": "reviewer", "unit_code": None, "phone": None, "active": True}
    direct.execute(conn, _INSERT_STAFF, row)
    with pytest.raises(IntegrityError) as caught:
        direct.execute(conn, _INSERT_STAFF, row)
    assert "dup" in str(caught.value) and caught.value.orig is not None


def test_many_rows_in_one_call_and_a_cursor_kept_per_connection(conn):
    rows = [{"id": f"m{i}", "name": f"M{i}", "role": "reviewer", "unit_code": "u1" if i % 2 else None,
             "phone": None, "active": bool(i % 2)} for i in range(5)]
    direct.execute_many(conn, _INSERT_STAFF, rows)
    audit = [{"instance_id": None, "business_key": None, "at": AT, "actor": "many", "kind": k, "element": None,
              "detail": "{}"} for k in ("x", "y")]   # (a table whose key the database makes)
    direct.execute_many(conn, _INSERT_AUDIT, audit)
    assert [r.kind for r in direct.execute(conn, _AUDIT_BY_ACTOR, {"actor": "many"})] == ["x", "y"]
    got = [direct.execute(conn, _STAFF, {"id": r["id"]}).first() for r in rows]
    assert got == [(r["id"], r["active"], r["unit_code"]) for r in rows]
    assert conn.connection.info["direct_cursor"] is not None


def test_constants_written_into_the_sql_run_on_the_cursor_and_callers_values_do_not(conn):
    for sid in ("r2", "r1"):
        direct.execute(conn, _INSERT_STAFF, {"id": sid, "name": sid, "role": "reviewer", "unit_code": None,
                                             "phone": None, "active": True})
    assert direct.runs_on_cursor(conn.dialect, _ROLES_JOINED, ("role",))     # written in once, kept
    joined = direct.execute(conn, _ROLES_JOINED, {"role": "reviewer"}).scalar()
    assert sorted(joined.split("|")) == ["r1", "r2"]
    assert joined == conn.execute(_ROLES_JOINED, {"role": "reviewer"}).scalar()
    assert not direct.runs_on_cursor(conn.dialect, _LIMIT_WRITTEN, ("n",))            # the caller's value:
                                                                                      # SQLAlchemy's way
    assert direct.execute(conn, _LIMIT_WRITTEN, {"n": 1}).scalars().all() == ["r1"]


def test_the_sqlalchemy_internals_it_reads_are_where_it_expects_them(conn):
    """Fails naming the internal an upgrade of SQLAlchemy moved (see direct.INTERNALS)."""
    compiled = _AUDIT_BY_ACTOR.compile(dialect=conn.dialect, column_keys=["actor"])
    processors = compiled._bind_processors
    assert isinstance(processors, dict), "SQLCompiler._bind_processors is no longer a dict"
    assert all(callable(p) for p in processors.values()), "SQLCompiler._bind_processors holds non-callables"
    columns = compiled._result_columns
    assert [c.keyname for c in columns] == ["id", "at", "kind", "detail"], "SQLCompiler._result_columns changed"
    at_type = columns[1].type
    assert hasattr(at_type, "_cached_result_processor"), "TypeEngine._cached_result_processor is gone"
    assert at_type._cached_result_processor(conn.dialect, None) is None or callable(
        at_type._cached_result_processor(conn.dialect, None))
    for name in ("positiontup", "bind_names", "literal_execute_params", "post_compile_params",
                 "escaped_bind_names", "construct_expanded_state", "positional", "params", "string"):
        assert hasattr(compiled, name), f"SQLCompiler.{name} is gone"
    assert set(direct.INTERNALS) and all(isinstance(v, str) for v in direct.INTERNALS.values())


def test_statements_are_not_hidden_from_those_who_watch(system, conn):
    """With a cursor listener on the engine (tracing, a statement counter), every statement
    goes through SQLAlchemy and is seen; without one it runs on the cursor."""
    from sqlalchemy import event
    seen = []

    def count(conn_, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    direct.execute(conn, _STAFF, {"id": "nobody"})
    assert seen == []
    event.listen(system.db, "before_cursor_execute", count)
    try:
        direct.execute(conn, _STAFF, {"id": "nobody"})
        direct.execute_many(conn, _DEACTIVATE, [{"role_of": "nobody"}])
    finally:
        event.remove(system.db, "before_cursor_execute", count)
    assert len(seen) == 2 and "staff" in seen[0].lower(), seen


@pytest.mark.parametrize("watched", [False, True])
def test_a_savepoint_undoes_only_its_block(system, watched):
    """What the block wrote (Core statements and ORM objects alike) is undone when it raises;
    what came before it, and the transaction, go on. Traced or not, the same."""
    from sqlalchemy import event

    def count(*args):
        pass

    if watched:
        event.listen(system.db, "before_cursor_execute", count)
    try:
        with Session(system.db) as s, s.begin():
            s.add(Unit(code="kept", name="Kept", name_zh="保留", kind="test"))
            with pytest.raises(RuntimeError):
                with direct.savepoint(s):
                    direct.execute(s.connection(), _INSERT_STAFF, {"id": "gone", "name": "Gone", "role": "dispatcher",
                                                                 "active": True})
                    s.add(Unit(code="gone", name="Gone", name_zh="撤销", kind="test"))
                    s.flush()
                    s.add(Unit(code="pending", name="Pending", name_zh="未写", kind="test"))
                    raise RuntimeError("the step failed")
            with direct.savepoint(s):
                s.add(Unit(code="after", name="After", name_zh="之后", kind="test"))
    finally:
        if watched:
            event.remove(system.db, "before_cursor_execute", count)
    with Session(system.db) as s:
        assert s.get(Staff, "gone") is None
        assert {u.code for u in s.exec(__import__("sqlmodel").select(Unit))} >= {"kept", "after"}
        assert s.get(Unit, "gone") is None and s.get(Unit, "pending") is None
