"""engine.db.direct's deferred writes: a step's writes wait and go to PostgreSQL together (one
pipeline), yet every read sees them, a rollback drops them and a check on a row count still
stops the commit. On SQLite a deferred write runs at once: the same outcomes, checked on the
backend this run uses."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import bindparam, insert, literal, null, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from engine.db import direct
from engine.db.models import AuditEvent
from engine.domain.models import Staff, Unit

AT = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)
_ADD_UNIT = insert(Unit)
_UNIT_NAME = select(Unit.name).where(Unit.code == bindparam("code"))
_RENAME = update(Unit).where(Unit.code == bindparam("code_of")).values(name=bindparam("new_name"))
_ADD_AUDIT = insert(AuditEvent)
_ADD_STAFF = insert(Staff)
# an audit row whose kind is a unit's name: a write that reads another table
_AUDIT_UNIT_NAME = insert(AuditEvent).from_select(
    ["instance_id", "business_key", "at", "actor", "kind", "element", "detail"],
    select(null(), literal("K-read"), bindparam("at", type_=AuditEvent.__table__.c.at.type), literal("t"), Unit.name,
           null(), literal("{}")).where(Unit.code == bindparam("code")))


def unit(code: str, name: str = "Unit") -> dict:
    return {"code": code, "name": name, "name_zh": name, "kind": "test", "leader_id": None}


def audit(kind: str) -> dict:
    return {"instance_id": None, "business_key": "K", "at": AT, "actor": "t", "kind": kind, "element": None,
            "detail": "{}"}


def names(system) -> dict[str, str]:
    with Session(system.db) as s:
        return {u.code: u.name for u in s.exec(select(Unit)).all()}


def deferring(conn) -> bool:
    return conn.dialect.name == "postgresql"


def test_reads_see_deferred_writes_and_the_commit_sends_them(system):
    with Session(system.db) as s, s.begin():
        conn = s.connection()
        direct.defer(conn, _ADD_UNIT, unit("d1", "first"))
        direct.defer(conn, _RENAME, {"code_of": "d1", "new_name": "renamed"})
        assert direct.pending(conn) == (2 if deferring(conn) else 0)
        # a read on the cursor sends them first (same round trip) and sees them
        assert direct.execute(conn, _UNIT_NAME, {"code": "d1"}).scalar() == "renamed"
        assert direct.pending(conn) == 0
        direct.defer_many(conn, _ADD_AUDIT, [audit("a"), audit("b")])
        # a statement SQLAlchemy runs (here the ORM) sees them too
        assert sorted(e.kind for e in s.exec(select(AuditEvent).where(AuditEvent.business_key == "K"))) == ["a", "b"]
        direct.defer(conn, _ADD_UNIT, unit("d2", "second"))
    assert names(system)["d2"] == "second", "sent before the commit"


def test_a_rollback_drops_what_was_deferred(system):
    with pytest.raises(RuntimeError):
        with Session(system.db) as s, s.begin():
            conn = s.connection()
            direct.defer(conn, _ADD_UNIT, unit("gone"))
            raise RuntimeError("the step failed")
    assert "gone" not in names(system)
    with Session(system.db) as s, s.begin():     # (the pooled connection carries nothing over)
        conn = s.connection()
        assert direct.pending(conn) == 0
        direct.defer(conn, _ADD_UNIT, unit("kept"))
    assert "gone" not in names(system) and "kept" in names(system)


def test_a_failed_check_stops_the_commit(system):
    """A checked write that changes another number of rows than expected raises the caller's
    error before anything commits; on PostgreSQL the server checks it, in the same round trip
    as the writes around it and the COMMIT."""
    class Changed(LookupError):
        def __init__(self, count: int):
            super().__init__(f"{count} rows changed")
    with pytest.raises(Changed, match="0 rows changed"):
        with Session(system.db) as s, s.begin():
            conn = s.connection()
            direct.defer(conn, _ADD_UNIT, unit("with-check"))
            direct.defer(conn, _RENAME, {"code_of": "nobody", "new_name": "x"}, expect=1, otherwise=Changed)
            direct.flush(conn)
    assert "with-check" not in names(system), "the check rolled the transaction back"
    with pytest.raises(Changed, match="1 rows changed"):   # the second of two checks fails
        with system.transaction() as s:
            conn = s.connection()
            direct.defer(conn, _ADD_UNIT, unit("checked-twice"))
            direct.defer(conn, _RENAME, {"code_of": "checked-twice", "new_name": "ok"}, expect=1, otherwise=Changed)
            direct.defer(conn, _RENAME, {"code_of": "checked-twice", "new_name": "no"}, expect=2, otherwise=Changed)
    assert "checked-twice" not in names(system)
    with system.transaction() as s:       # checks that hold: all of it commits (with the COMMIT on PostgreSQL)
        conn = s.connection()
        direct.defer(conn, _ADD_UNIT, unit("checked"))
        direct.defer(conn, _RENAME, {"code_of": "checked", "new_name": "ok"}, expect=1, otherwise=Changed)
        direct.defer(conn, _RENAME, {"code_of": "nobody", "new_name": "x"}, expect=0)
    assert names(system)["checked"] == "ok"


def test_writes_to_several_tables_in_one_flush_see_each_other(system):
    """Deferred writes to several tables sent together: a row and a row referring to it both
    stand, a write reading a table written before it in the same flush sees that write, and a
    check among them still stops the commit with its own count."""
    with system.transaction() as s:
        conn = s.connection()
        direct.defer(conn, _ADD_UNIT, unit("together", "Together"))
        direct.defer(conn, _ADD_STAFF, {"id": "staff-together", "name": "S", "role": "unit_worker",
                                        "unit_code": "together", "phone": None, "active": True})
        direct.defer(conn, _AUDIT_UNIT_NAME, {"at": AT, "code": "together"})
        direct.defer(conn, _ADD_AUDIT, audit("after-the-read"))
        direct.defer(conn, _RENAME, {"code_of": "together", "new_name": "Renamed"}, expect=1)
    assert names(system)["together"] == "Renamed"
    with Session(system.db) as s:
        assert s.get(Staff, "staff-together").unit_code == "together"
        kinds = [e.kind for e in s.exec(select(AuditEvent).where(AuditEvent.business_key.in_(["K", "K-read"]))
                                        .order_by(AuditEvent.id))]
    assert kinds == ["Together", "after-the-read"], "the read saw the unit written before it, in the same flush"

    class Changed(LookupError):
        def __init__(self, count: int):
            super().__init__(f"{count} rows changed")
    with pytest.raises(Changed, match="0 rows changed"):
        with system.transaction() as s:
            conn = s.connection()
            direct.defer(conn, _ADD_AUDIT, audit("not-kept"))
            direct.defer(conn, _RENAME, {"code_of": "nobody", "new_name": "x"}, expect=1, otherwise=Changed)
            direct.defer(conn, _ADD_STAFF, {"id": "staff-not-kept", "name": "S", "role": "unit_worker",
                                            "unit_code": None, "phone": None, "active": True})
    with Session(system.db) as s:
        assert s.get(Staff, "staff-not-kept") is None
        assert not s.exec(select(AuditEvent).where(AuditEvent.kind == "not-kept")).all()


def test_an_engine_transaction_sends_its_commit_with_its_writes(system):
    """On PostgreSQL the COMMIT of an engine write transaction goes in the pipeline of its last
    writes: after them nothing is left open on the server, and what the session's ORM added
    went before the COMMIT, inside the transaction."""
    with system.transaction() as s:
        conn = s.connection()
        direct.defer(conn, _ADD_UNIT, unit("deferred-one"))
        s.add(Unit(**unit("orm-one")))
    kept = names(system)
    assert {"deferred-one", "orm-one"} <= kept.keys()
    with pytest.raises(IntegrityError):     # the ORM's write fails: the deferred one is not committed either
        with system.transaction() as s:
            direct.defer(s.connection(), _ADD_UNIT, unit("deferred-two"))
            s.add(Unit(**unit("orm-one")))
    assert "deferred-two" not in names(system)


def test_a_database_error_in_a_deferred_write_is_sqlalchemys(system):
    with Session(system.db) as s, s.begin():
        direct.execute(s.connection(), _ADD_UNIT, unit("dup"))
    with pytest.raises(IntegrityError):
        with Session(system.db) as s, s.begin():
            conn = s.connection()
            direct.defer(conn, _ADD_UNIT, unit("before-dup"))
            direct.defer(conn, _ADD_UNIT, unit("dup"))
            direct.defer(conn, _ADD_UNIT, unit("after-dup"))
            direct.flush(conn)
    assert not {"before-dup", "after-dup"} & names(system).keys()


def test_savepoint_undoes_its_block_and_keeps_what_came_before(system):
    with Session(system.db) as s, s.begin():
        conn = s.connection()
        direct.defer(conn, _ADD_UNIT, unit("outer"))
        with pytest.raises(RuntimeError):
            with direct.savepoint(s, "unsent"):     # fails before anything of it reached the server
                direct.defer(conn, _ADD_UNIT, unit("inner-unsent"))
                raise RuntimeError("step failed")
        with pytest.raises(RuntimeError):
            with direct.savepoint(s, "sent"):       # fails after a read sent its writes
                direct.defer(conn, _ADD_UNIT, unit("inner-sent"))
                assert direct.execute(conn, _UNIT_NAME, {"code": "inner-sent"}).scalar() == "Unit"
                direct.defer(conn, _ADD_UNIT, unit("inner-late"))
                raise RuntimeError("step failed")
        with direct.savepoint(s, "ok"):
            direct.defer(conn, _ADD_UNIT, unit("inner-ok"))
        direct.defer(conn, _ADD_UNIT, unit("after"))
    kept = names(system).keys()
    assert {"outer", "inner-ok", "after"} <= kept
    assert not {"inner-unsent", "inner-sent", "inner-late"} & kept


def test_an_engine_transaction_is_one_transaction_from_its_first_statement(system):
    """On PostgreSQL the engine's write transactions run on an autocommit connection with their
    BEGIN sent along with the first statement: a write sent at once, a lock taken by raw SQL and
    a deferred write must all still be undone together by a rollback."""
    from engine.domain.common import exclusive
    with pytest.raises(RuntimeError):
        with system.transaction() as s:
            conn = s.connection()
            direct.execute(conn, _ADD_UNIT, unit("sent-at-once"))
            exclusive(s, "test-lock")
            direct.defer(conn, _ADD_UNIT, unit("deferred"))
            raise RuntimeError("the step failed")
    assert not {"sent-at-once", "deferred"} & names(system).keys()
    with system.transaction() as s:     # raw SQL first: the BEGIN goes before it
        exclusive(s, "test-lock")
        direct.execute(s.connection(), _ADD_UNIT, unit("after-lock"))
    with system.transaction():          # nothing sent: nothing to open or commit
        pass
    assert "after-lock" in names(system)


def test_a_transactions_audit_events_are_stored_in_order_in_one_batch(system):
    """flush_audit writes a transaction's events in one batch (on PostgreSQL one statement of
    arrays, rows.INSERT_AUDIT_ROWS): every value as stored by event_row, NULLs and non-ASCII text
    included, and the ids in the order the events were recorded."""
    from engine.runtime.audit import audit as record
    from engine.runtime.audit import flush_audit
    events = [(7, "WO-1", "w1", "task_completed", "Task_rectify", {"note": "修好了", "n": 1}),
              (None, None, "system", "deployed", None, {}),
              (7, "WO-1", "r1", "call_completed", "Call_rectification", {"version": 2, "none": None}),
              (8, "WO-2", "d1" * 80, "k" * 40, "e" * 200, {"list": [1, "二"]})]
    with system.transaction() as s:
        for i, (instance_id, key, actor, kind, element, detail) in enumerate(events):
            record(s, AT.replace(second=i), instance_id, key, actor, kind, element, detail)
        conn = s.connection()
        before = direct.pending(conn)    # (on PostgreSQL the transaction's BEGIN waits there too)
        flush_audit(s)
        assert direct.pending(conn) - before == (1 if deferring(conn) else 0), "they wait with the step's writes"
    with Session(system.db) as s:
        stored = s.exec(select(AuditEvent).where(AuditEvent.at >= AT).order_by(AuditEvent.id)).all()
    assert [(e.instance_id, e.business_key, e.actor, e.kind, e.element, e.at.replace(tzinfo=timezone.utc))
            for e in stored] == [
        (7, "WO-1", "w1", "task_completed", "Task_rectify", AT),
        (None, None, "system", "deployed", None, AT.replace(second=1)),
        (7, "WO-1", "r1", "call_completed", "Call_rectification", AT.replace(second=2)),
        (8, "WO-2", ("d1" * 80)[:128], "k" * 32, "e" * 128, AT.replace(second=3))]
    assert [e.detail for e in stored] == ['{"note": "修好了", "n": 1}', "{}", '{"version": 2, "none": null}',
                                          '{"list": [1, "二"]}']
