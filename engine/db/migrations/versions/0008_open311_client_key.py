"""open311 requests remember a hash of the sender's address (anonymous rate limit)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('open311request') as batch:
        batch.add_column(sa.Column('client_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.create_index('ix_open311request_client_at', ['client_key', 'requested_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('open311request') as batch:
        batch.drop_index('ix_open311request_client_at')
        batch.drop_column('client_key')
