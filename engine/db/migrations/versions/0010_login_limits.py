"""failed log-ins are counted per address as well as per account at an address

The old table keyed rows on "username|address", which cannot be counted per address.
Its rows only matter for 15 minutes, so they are dropped with it rather than converted.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('loginattempt') as batch:
        batch.drop_index('ix_login_attempt_key_at')
    op.drop_table('loginattempt')
    op.create_table('loginattempt',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
                    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
                    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('loginattempt') as batch:
        batch.create_index('ix_login_attempt_address_at', ['address', 'at'], unique=False)
        batch.create_index('ix_login_attempt_at', ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('loginattempt') as batch:
        batch.drop_index('ix_login_attempt_at')
        batch.drop_index('ix_login_attempt_address_at')
    op.drop_table('loginattempt')
    op.create_table('loginattempt',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
                    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('loginattempt') as batch:
        batch.create_index('ix_login_attempt_key_at', ['key', 'at'], unique=False)
