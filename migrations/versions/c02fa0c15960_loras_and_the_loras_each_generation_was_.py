"""LoRAs, and the LoRAs each generation was made with

Revision ID: c02fa0c15960
Revises: 3846c0976302
Create Date: 2026-11-30 10:48:30.411904

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c02fa0c15960'
down_revision = '3846c0976302'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('lora',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=200), nullable=False),
    sa.Column('reference', sa.String(length=1000), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('dataset_name', sa.String(length=200), nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('trainer', sa.String(length=200), nullable=False),
    sa.Column('training_input', sa.JSON(), nullable=False),
    sa.Column('destination', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=300), nullable=False),
    sa.Column('training_id', sa.String(length=64), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('captions_path', sa.String(length=500), nullable=True),
    sa.Column('weights_path', sa.String(length=500), nullable=True),
    sa.Column('weights_size', sa.BigInteger(), nullable=True),
    sa.Column('weights_url', sa.String(length=1000), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], name=op.f('fk_lora_dataset_id_dataset'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_lora_job_id_job'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_lora_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lora')),
    sa.UniqueConstraint('training_id', name=op.f('uq_lora_training_id'))
    )
    with op.batch_alter_table('lora', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lora_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lora_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lora_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lora_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_lora_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('generation', schema=None) as batch_op:
        # Images made before LoRAs existed were made with none.
        batch_op.add_column(sa.Column('loras', sa.JSON(), nullable=False, server_default='[]'))



def downgrade():
    with op.batch_alter_table('generation', schema=None) as batch_op:
        batch_op.drop_column('loras')

    with op.batch_alter_table('lora', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lora_user_id'))
        batch_op.drop_index(batch_op.f('ix_lora_status'))
        batch_op.drop_index(batch_op.f('ix_lora_job_id'))
        batch_op.drop_index(batch_op.f('ix_lora_dataset_id'))
        batch_op.drop_index(batch_op.f('ix_lora_created_at'))

    op.drop_table('lora')
