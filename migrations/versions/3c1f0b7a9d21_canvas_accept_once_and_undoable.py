"""Canvas: one accept per request, accepts that undo restages, make again; level tiles out of the history

Revision ID: 3c1f0b7a9d21
Revises: f5b179c5beae
Create Date: 2026-11-30 11:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c1f0b7a9d21'
down_revision = 'f5b179c5beae'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('canvas_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_variation_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('output_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('only_output', sa.Integer(), nullable=True))
    with op.batch_alter_table('canvas_variation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_rev', sa.Integer(), nullable=True))
    # Level tiles are now a cache derived from level 0 (app.canvas.tiles): their rows go; their
    # files are named by the new versions and built again when first shown.
    op.execute("DELETE FROM canvas_tile WHERE level > 0")
    op.execute("DELETE FROM canvas_revision_tile WHERE level > 0")


def downgrade():
    with op.batch_alter_table('canvas_variation', schema=None) as batch_op:
        batch_op.drop_column('accepted_rev')
    with op.batch_alter_table('canvas_request', schema=None) as batch_op:
        batch_op.drop_column('only_output')
        batch_op.drop_column('output_count')
        batch_op.drop_column('accepted_variation_id')
