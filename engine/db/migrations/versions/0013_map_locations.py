"""map locations: where each crew musters (its depot) and where each badge gateway is fixed

Revision ID: 0013
Revises: 0012

crew.lat/lon: the depot (muster point) on the one-map view. device.lat/lon and
device.crew_code: a fixed badge gateway's place and the depot it serves (a plain code, no
foreign key: a gateway may be set up before its crew exists, and SQLite could only add a
foreign key by recreating device under the foreign keys that point at it). All nullable, so
ADD COLUMN and DROP COLUMN need no table rewrite on either database.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

COLUMNS = (('crew', 'lat', sa.Float()), ('crew', 'lon', sa.Float()),
           ('device', 'lat', sa.Float()), ('device', 'lon', sa.Float()),
           ('device', 'crew_code', sa.String(length=40)))


def upgrade() -> None:
    for table, name, type_ in COLUMNS:
        op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a plain column in place; a batch recreate of device would run
    # under the foreign keys that point at it.
    for table, name, _ in reversed(COLUMNS):
        op.drop_column(table, name)
