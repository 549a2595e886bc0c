"""sync op kinds up to 32 characters (issue 12: "inspect_household" is 17)

Revision ID: 0012
Revises: 0011

sync_op.kind and sync_conflict.kind go from VARCHAR(16) to VARCHAR(32). PostgreSQL alters
the columns. SQLite never enforces a declared length and stores both as TEXT, so only the
declared type in the schema text changes: rewritten in place (SQLite's documented procedure
for schema changes that do not touch the stored data: writable_schema, then a new
schema_version), because recreating sync_op the batch way would drop it under its foreign
keys (sync_op_wait cascades, sync_conflict refuses) and lose or block rows.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ('sync_op', 'sync_conflict')


def _sqlite_declared(conn, old: str, new: str) -> None:
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
    conn.exec_driver_sql("PRAGMA writable_schema=ON")
    try:
        for table in TABLES:
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                       (table,)).scalar()
            if sql is None or sql.count(f"kind {old}") != 1:
                raise RuntimeError(f"{table}: expected one column 'kind {old}' in {sql!r}")
            conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                                 (sql.replace(f"kind {old}", f"kind {new}"), table))
        conn.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema=OFF")


def _change(old: int, new: int) -> None:
    conn = op.get_bind()
    if conn.dialect.name == 'sqlite':
        _sqlite_declared(conn, f"VARCHAR({old})", f"VARCHAR({new})")
        return
    for table in TABLES:
        op.alter_column(table, 'kind', existing_type=sa.String(length=old), type_=sa.String(length=new),
                        existing_nullable=False)


def upgrade() -> None:
    _change(16, 32)


def downgrade() -> None:
    _change(32, 16)
