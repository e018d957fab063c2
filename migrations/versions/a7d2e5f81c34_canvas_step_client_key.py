"""CanvasStep.client_key: a mask step the page sends again (its answer was lost) is not taken twice

Revision ID: a7d2e5f81c34
Revises: e3a91c7d5b20
Create Date: 2026-11-30 16:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7d2e5f81c34'
down_revision = 'e3a91c7d5b20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('canvas_step', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_key', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('canvas_step', schema=None) as batch_op:
        batch_op.drop_column('client_key')
