"""resumable uploads (issue 4)

Revision ID: 0007
Revises: 0006
Intentionally empty: resumable uploads keep their state in files, not a table. An upload is
a part file plus a JSON sidecar under the data directory (see sync/uploads.py); the part
file's length *is* the offset, so a row beside it could only disagree with it after a crash.
Kept in the chain so that the revision ids stay as reserved.
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
