"""Each caption's size and mtime as last read (stat-based freshness), when a dataset's tags changed, an index for the reviewed count

Revision ID: d4e1a7c3b9f2
Revises: c02fa0c15960
Create Date: 2026-11-30 14:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e1a7c3b9f2'
down_revision = 'c02fa0c15960'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags_changed_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caption_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('caption_mtime_ns', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_dataset_image_dataset_reviewed', ['dataset_id', 'reviewed'], unique=False)


def downgrade():
    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.drop_index('ix_dataset_image_dataset_reviewed')
        batch_op.drop_column('caption_mtime_ns')
        batch_op.drop_column('caption_size')

    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_column('tags_changed_at')
