"""Migration 0012 widens sync_op.kind and sync_conflict.kind (an "inspect_household" op is 17
characters) without touching the rows already there: waiting ops keep their photo waits,
conflicts keep their op, on SQLite (schema text rewritten in place) and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import text

from engine.db.migrate import upgrade
from engine.db.session import make_engine

ROWS = [
    "INSERT INTO sync_op (op_id, actor, kind, body_hash, body, verdict, code, result, server_time, skew_flagged, "
    "created_at) VALUES ('00000000-0000-4000-8000-000000000001', 'a', 'complete_task', 'h', '{}', 'waiting', 202, "
    "'{}', '2026-03-02 00:00:00', false, '2026-03-02 00:00:00')",
    "INSERT INTO sync_op (op_id, actor, kind, body_hash, body, verdict, code, result, server_time, skew_flagged, "
    "created_at) VALUES ('00000000-0000-4000-8000-000000000002', 'a', 'check_in', 'h', '{}', 'conflict', 409, "
    "'{}', '2026-03-02 00:00:00', false, '2026-03-02 00:00:00')",
    "INSERT INTO sync_op_wait (op_id, sha256) VALUES ('00000000-0000-4000-8000-000000000001', 'ab')",
    "INSERT INTO sync_conflict (op_id, actor, kind, reason, device_side, server_side, created_at) VALUES "
    "('00000000-0000-4000-8000-000000000002', 'a', 'check_in', 'shift_closed', '{}', '{}', '2026-03-02 00:00:00')",
]


def test_the_kind_columns_widen_and_every_row_stays(empty_db_url):
    db = make_engine(empty_db_url)
    upgrade(db, "0011")
    with db.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement))
    upgrade(db)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO sync_op (op_id, actor, kind, body_hash, body, verdict, code, result, "
                          "server_time, skew_flagged, created_at) VALUES ('00000000-0000-4000-8000-000000000003', "
                          "'a', 'inspect_household', 'h', '{}', 'applied', 200, '{}', '2026-03-02 00:00:00', false, "
                          "'2026-03-02 00:00:00')"))
        assert conn.execute(text("SELECT count(*) FROM sync_op")).scalar() == 3
        assert conn.execute(text("SELECT op_id FROM sync_op_wait")).scalar().endswith("0001")
        assert conn.execute(text("SELECT op_id FROM sync_conflict")).scalar().endswith("0002")
        if db.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
            assert "kind VARCHAR(32)" in conn.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'sync_op'")).scalar()
    db.dispose()
