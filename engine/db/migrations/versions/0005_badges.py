"""badge keys and sightings (issue 5)

Revision ID: 0005
Revises: 0004
Reserved so that work on several issues can add its tables without forking the chain;
it changes nothing until that work fills it in.
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
