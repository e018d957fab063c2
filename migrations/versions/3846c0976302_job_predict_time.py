"""Job.predict_time: the model time Replicate billed for a job's predictions

Revision ID: 3846c0976302
Revises: b7e2c4d9a1f3
Create Date: 2026-11-30 11:13:30.928240

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3846c0976302'
down_revision = 'b7e2c4d9a1f3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('predict_time', sa.Double(), nullable=True))


def downgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('predict_time')
