"""camera detections remember the device (or administrator) that posted them

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cameradetection') as batch:
        batch.add_column(sa.Column('posted_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.create_index('ix_cameradetection_posted_by', ['posted_by'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cameradetection') as batch:
        batch.drop_index('ix_cameradetection_posted_by')
        batch.drop_column('posted_by')
