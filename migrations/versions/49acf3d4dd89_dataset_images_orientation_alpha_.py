"""Dataset images: orientation, alpha, caption problems, pairing note, excluded

Revision ID: 49acf3d4dd89
Revises: 15580071a371
Create Date: 2026-11-30 11:01:23.539350

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '49acf3d4dd89'
down_revision = '15580071a371'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('orientation', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('alpha', sa.Double(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('caption_problems', sa.String(length=200), server_default='', nullable=False))
        batch_op.add_column(sa.Column('pairing_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('excluded', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade():
    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.drop_column('excluded')
        batch_op.drop_column('pairing_note')
        batch_op.drop_column('caption_problems')
        batch_op.drop_column('alpha')
        batch_op.drop_column('orientation')

