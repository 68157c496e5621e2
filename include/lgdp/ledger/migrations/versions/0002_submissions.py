"""Submissions: the immutable file archive, submission versions, their issues, and the staging schema.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:43:20.428323
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('archived_files',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_archived_files')),
    schema='lgdp'
    )
    op.create_table('submission_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=False),
    sa.Column('source_item_id', sa.Text(), nullable=False),
    sa.Column('source_etag', sa.Text(), nullable=False),
    sa.Column('uploaded_by', sa.Text(), nullable=True),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('received', 'loaded', 'rejected', 'accepted', 'superseded', name='version_status', schema='lgdp'), nullable=False),
    sa.Column('rows_loaded', sa.Integer(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['file_sha256'], ['lgdp.archived_files.sha256'], name=op.f('fk_submission_versions_file_sha256_archived_files')),
    sa.ForeignKeyConstraint(['submission_id'], ['lgdp.expected_submissions.id'], name=op.f('fk_submission_versions_submission_id_expected_submissions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_submission_versions')),
    sa.UniqueConstraint('submission_id', 'source_item_id', 'source_etag', name=op.f('uq_submission_versions_submission_id_source_item_id_source_etag')),
    sa.UniqueConstraint('submission_id', 'version', name=op.f('uq_submission_versions_submission_id_version')),
    schema='lgdp'
    )
    op.create_index(op.f('ix_submission_versions_submission_id'), 'submission_versions', ['submission_id'], unique=False, schema='lgdp')
    op.create_table('submission_issues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=True),
    sa.Column('item', sa.Text(), nullable=True),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['lgdp.submission_versions.id'], name=op.f('fk_submission_issues_version_id_submission_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_submission_issues')),
    schema='lgdp'
    )
    op.create_index(op.f('ix_submission_issues_version_id'), 'submission_issues', ['version_id'], unique=False, schema='lgdp')
    # The archive is append-only: no submission is ever lost or altered, whatever happens next.
    op.execute("""
        CREATE FUNCTION lgdp.archive_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'archived files are immutable (sha256 %)', OLD.sha256;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER archived_files_immutable BEFORE UPDATE OR DELETE ON lgdp.archived_files
        FOR EACH ROW EXECUTE FUNCTION lgdp.archive_is_immutable()
    """)
    # Per-return staging tables (derived from specs at load time) live in their own schema.
    op.execute("CREATE SCHEMA IF NOT EXISTS lgdp_staging")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS lgdp_staging CASCADE")
    op.drop_index(op.f('ix_submission_issues_version_id'), table_name='submission_issues', schema='lgdp')
    op.drop_table('submission_issues', schema='lgdp')
    op.drop_index(op.f('ix_submission_versions_submission_id'), table_name='submission_versions', schema='lgdp')
    op.drop_table('submission_versions', schema='lgdp')
    op.drop_table('archived_files', schema='lgdp')
    op.execute("DROP FUNCTION IF EXISTS lgdp.archive_is_immutable()")
    sa.Enum(name='version_status', schema='lgdp').drop(op.get_bind(), checkfirst=True)
