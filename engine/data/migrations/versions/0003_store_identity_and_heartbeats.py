"""The store's own identity (its runs' bundles and checkpoints go in a folder named by it, so that two
stores never share one), and who holds a running run: host identity and a heartbeat.

Revision ID: 0003
Revises: 0002
"""

import time
import uuid

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table('store_identity',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.Column('legacy_runs_upto', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    last_run = op.get_bind().execute(sa.text("SELECT max(id) FROM runs")).scalar()
    op.bulk_insert(identity, [{"id": str(uuid.uuid4()), "created_at": time.time(),
                               "legacy_runs_upto": last_run or 0}])
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('host')
    op.drop_table('store_identity')
