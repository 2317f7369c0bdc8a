"""Run series say whether a point is per step or per epoch (the two train_loss curves were one name).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('run_series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('per', sa.String(length=10), nullable=False, server_default='step'))
    # Ranking metrics and the search's epoch means were only ever recorded once per epoch.
    op.execute("UPDATE run_series SET per = 'epoch' WHERE name LIKE '%@%'")


def downgrade() -> None:
    with op.batch_alter_table('run_series', schema=None) as batch_op:
        batch_op.drop_column('per')
