"""Job.queue and Job.queued_at: which RQ queue carries a job (interactive jobs never wait behind
long ones) and since when it waits there (a retry queues it again)

Revision ID: e3a91c7d5b20
Revises: b0e8c300d6dd
Create Date: 2026-11-30 16:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e3a91c7d5b20'
down_revision = 'b0e8c300d6dd'
branch_labels = None
depends_on = None


def upgrade():
    # Every job from before was queued on the one queue, which long jobs keep.
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=16), server_default='long', nullable=False))
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('queued_at')
        batch_op.drop_column('queue')
