"""session generation per user: server-side revocation of sessions and remember cookies

Revision ID: c5bf2f665ae4
Revises: 49acf3d4dd89
Create Date: 2026-11-30 11:13:14.491157

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5bf2f665ae4'
down_revision = '49acf3d4dd89'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_generation', sa.Integer(), server_default='0', nullable=False))



def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_generation')

