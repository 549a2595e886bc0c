"""resumable uploads (issue 4)

Revision ID: 0007
Revises: 0006
Reserved so that work on several issues can add its tables without forking the chain;
it changes nothing until that work fills it in.
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
