"""Ledger: the register of returns, collection periods and expected submissions per council.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 03:04:28.432807
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('councils',
    sa.Column('code', sa.String(length=9), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_councils')),
    schema='lgdp'
    )
    op.create_table('returns',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('frequency', sa.String(length=20), nullable=False),
    sa.Column('requester', sa.Text(), nullable=False),
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('legal_basis', sa.Text(), nullable=False),
    sa.Column('review_date', sa.Date(), nullable=False),
    sa.Column('spec_path', sa.Text(), nullable=False),
    sa.Column('spec_sha256', sa.String(length=64), nullable=False),
    sa.Column('spec', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_returns')),
    schema='lgdp'
    )
    op.create_table('collection_periods',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('return_id', sa.String(length=40), nullable=False),
    sa.Column('period', sa.String(length=20), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('spec_version', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['return_id'], ['lgdp.returns.id'], name=op.f('fk_collection_periods_return_id_returns')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_periods')),
    sa.UniqueConstraint('return_id', 'period', name=op.f('uq_collection_periods_return_id_period')),
    schema='lgdp'
    )
    op.create_table('return_items',
    sa.Column('return_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('dictionary_ref', sa.String(length=63), nullable=True),
    sa.Column('wording', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('personal_data', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['return_id'], ['lgdp.returns.id'], name=op.f('fk_return_items_return_id_returns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('return_id', 'name', name=op.f('pk_return_items')),
    schema='lgdp'
    )
    op.create_index(op.f('ix_return_items_dictionary_ref'), 'return_items', ['dictionary_ref'], unique=False, schema='lgdp')
    op.create_table('expected_submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period_id', sa.Integer(), nullable=False),
    sa.Column('council_code', sa.String(length=9), nullable=False),
    sa.Column('status', sa.Enum('expected', 'received', 'processing', 'rejected', 'queries', 'accepted', 'not_received', name='submission_status', schema='lgdp'), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['council_code'], ['lgdp.councils.code'], name=op.f('fk_expected_submissions_council_code_councils')),
    sa.ForeignKeyConstraint(['period_id'], ['lgdp.collection_periods.id'], name=op.f('fk_expected_submissions_period_id_collection_periods'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_expected_submissions')),
    sa.UniqueConstraint('period_id', 'council_code', name=op.f('uq_expected_submissions_period_id_council_code')),
    schema='lgdp'
    )
    op.create_index(op.f('ix_expected_submissions_period_id'), 'expected_submissions', ['period_id'], unique=False, schema='lgdp')


def downgrade() -> None:
    op.drop_index(op.f('ix_expected_submissions_period_id'), table_name='expected_submissions', schema='lgdp')
    op.drop_table('expected_submissions', schema='lgdp')
    op.drop_index(op.f('ix_return_items_dictionary_ref'), table_name='return_items', schema='lgdp')
    op.drop_table('return_items', schema='lgdp')
    op.drop_table('collection_periods', schema='lgdp')
    op.drop_table('returns', schema='lgdp')
    op.drop_table('councils', schema='lgdp')
    sa.Enum(name='submission_status', schema='lgdp').drop(op.get_bind(), checkfirst=True)
