"""Outputs that are not images: text, video, audio and other files (OutputFile)

Revision ID: f5b179c5beae
Revises: c5bf2f665ae4
Create Date: 2026-11-30 11:01:41.400298

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f5b179c5beae'
down_revision = 'c5bf2f665ae4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('output_file',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('model_ref', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_output_file_job_id_job'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_output_file_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_output_file'))
    )
    with op.batch_alter_table('output_file', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_output_file_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_output_file_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_output_file_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('output_file', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_output_file_user_id'))
        batch_op.drop_index(batch_op.f('ix_output_file_job_id'))
        batch_op.drop_index(batch_op.f('ix_output_file_created_at'))

    op.drop_table('output_file')
