"""an index on open_task.business_key (issue 14)

Revision ID: 0014
Revises: 0013

The open tasks of one case are looked up by its business key (a work order's number: the
console's order page, the field app, engine.tasks.for_actor(business_key=...)); without an
index PostgreSQL scanned the whole table for it (seen in EXPLAIN), harmless in a test and not
with a district's open tasks. A plain CREATE INDEX: open_task holds only open tasks, so the
build is short, and it runs at `cityloop db upgrade` before the servers take requests.
"""
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_open_task_business_key', 'open_task', ['business_key'])


def downgrade() -> None:
    op.drop_index('ix_open_task_business_key', table_name='open_task')
