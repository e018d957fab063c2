"""Caption versions are content hashes, not mtimes

Revision ID: b7e2c4d9a1f3
Revises: 3c1f0b7a9d21
Create Date: 2026-11-30 10:55:00

A forced mtime let two saves in one clock tick share a version (both "won") and let a rescan miss
the difference. Existing rows get no version: opening the editor or a rescan reads it from the file.
"""
from alembic import op
import sqlalchemy as sa


revision = 'b7e2c4d9a1f3'
down_revision = '3c1f0b7a9d21'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caption_version', sa.String(length=64), nullable=True))
        batch_op.drop_column('caption_mtime_ns')


def downgrade():
    with op.batch_alter_table('dataset_image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caption_mtime_ns', sa.BigInteger(), nullable=True))
        batch_op.drop_column('caption_version')
