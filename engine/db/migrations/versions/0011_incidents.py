"""incidents: a process step that failed, with what the caller submitted, for administrators

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

_T = sqlmodel.sql.sqltypes.UTCDateTime


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'incident',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('process_key', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('business_key', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('definition_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('step', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('element', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('submission', sa.Text(), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', _T(), nullable=False),
        sa.Column('last_failed_at', _T(), nullable=False),
        sa.Column('resolved_at', _T(), nullable=True),
        sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['instance.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('incident') as batch:
        batch.create_index('ix_incident_instance_id', ['instance_id'], unique=False)
        batch.create_index('ix_incident_open', ['resolved_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('incident') as batch:
        batch.drop_index('ix_incident_open')
        batch.drop_index('ix_incident_instance_id')
    op.drop_table('incident')
