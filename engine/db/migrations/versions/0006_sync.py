"""field sync ops and conflicts (issue 4)

Revision ID: 0006
Revises: 0005
sync_op (one row per device op, written with its effect), sync_op_wait (photos a waiting op
still needs), sync_conflict (both sides, for a supervisor), sync_cursor (what each device
was sent).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table('sync_op',
    sa.Column('op_id', _S(length=36), nullable=False),
    sa.Column('actor', _S(length=64), nullable=False),
    sa.Column('device', _S(length=64), nullable=True),
    sa.Column('kind', _S(length=16), nullable=False),
    sa.Column('task_id', _S(length=36), nullable=True),
    sa.Column('body_hash', _S(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('verdict', _S(length=16), nullable=False),
    sa.Column('code', sa.Integer(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('device_time', _T(), nullable=True),
    sa.Column('server_time', _T(), nullable=False),
    sa.Column('skew_seconds', sa.Float(), nullable=True),
    sa.Column('skew_flagged', sa.Boolean(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('accuracy', sa.Float(), nullable=True),
    sa.Column('created_at', _T(), nullable=False),
    sa.Column('settled_at', _T(), nullable=True),
    sa.PrimaryKeyConstraint('op_id')
    )
    with op.batch_alter_table('sync_op', schema=None) as batch_op:
        batch_op.create_index('ix_sync_op_actor_time', ['actor', 'server_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_sync_op_task_id'), ['task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sync_op_verdict'), ['verdict'], unique=False)

    op.create_table('sync_op_wait',
    sa.Column('op_id', _S(length=36), nullable=False),
    sa.Column('sha256', _S(length=64), nullable=False),
    sa.ForeignKeyConstraint(['op_id'], ['sync_op.op_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('op_id', 'sha256')
    )
    with op.batch_alter_table('sync_op_wait', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_op_wait_sha256'), ['sha256'], unique=False)

    op.create_table('sync_conflict',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('op_id', _S(length=36), nullable=False),
    sa.Column('actor', _S(length=64), nullable=False),
    sa.Column('unit_code', _S(length=40), nullable=True),
    sa.Column('kind', _S(length=16), nullable=False),
    sa.Column('task_id', _S(length=36), nullable=True),
    sa.Column('reason', _S(length=32), nullable=False),
    sa.Column('device_side', sa.Text(), nullable=False),
    sa.Column('server_side', sa.Text(), nullable=False),
    sa.Column('created_at', _T(), nullable=False),
    sa.Column('resolved_at', _T(), nullable=True),
    sa.Column('resolved_by', _S(length=64), nullable=True),
    sa.Column('resolution', _S(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['op_id'], ['sync_op.op_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('op_id')
    )
    with op.batch_alter_table('sync_conflict', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_conflict_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_sync_conflict_created_at'), ['created_at'], unique=False)

    op.create_table('sync_cursor',
    sa.Column('key', _S(length=140), nullable=False),
    sa.Column('actor', _S(length=64), nullable=False),
    sa.Column('acked_gen', sa.Integer(), nullable=False),
    sa.Column('acked', sa.Text(), nullable=False),
    sa.Column('pending_gen', sa.Integer(), nullable=False),
    sa.Column('pending', sa.Text(), nullable=False),
    sa.Column('updated_at', _T(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('sync_cursor', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_cursor_actor'), ['actor'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sync_cursor', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_cursor_actor'))
    op.drop_table('sync_cursor')
    with op.batch_alter_table('sync_conflict', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_conflict_created_at'))
        batch_op.drop_index(batch_op.f('ix_sync_conflict_actor'))
    op.drop_table('sync_conflict')
    with op.batch_alter_table('sync_op_wait', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_op_wait_sha256'))
    op.drop_table('sync_op_wait')
    with op.batch_alter_table('sync_op', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_op_verdict'))
        batch_op.drop_index(batch_op.f('ix_sync_op_task_id'))
        batch_op.drop_index('ix_sync_op_actor_time')
    op.drop_table('sync_op')
