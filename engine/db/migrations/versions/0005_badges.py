"""badge keys and sightings (issue 5)

Revision ID: 0005
Revises: 0004
Badges get a legacy iBeacon identity and the last accepted token counter; received badge
advertisements kept as evidence (flagged clones, replays, forgeries; verified sightings for
the two-places check) go to badgesighting.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('beacon', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_counter', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_badge_beacon', ['beacon'], unique=True)

    op.create_table('badgesighting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('badge_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('shift_id', sa.Integer(), nullable=True),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('data', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('counter', sa.Integer(), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sent_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('rssi', sa.Integer(), nullable=True),
    sa.Column('seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('related_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['shift_id'], ['shift.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('badgesighting', schema=None) as batch_op:
        batch_op.create_index('ix_badgesighting_badge_seen', ['badge_id', 'seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_badgesighting_shift_id'), ['shift_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('badgesighting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_badgesighting_shift_id'))
        batch_op.drop_index('ix_badgesighting_badge_seen')

    op.drop_table('badgesighting')
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.drop_index('ix_badge_beacon')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('last_counter')
        batch_op.drop_column('beacon')
