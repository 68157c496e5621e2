"""Feedback: explained queries, returned feedback workbooks, a ``queries`` version outcome, and the sent-email ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE lgdp.version_status ADD VALUE IF NOT EXISTS 'queries'")
    op.add_column("submission_issues", sa.Column("explanation", sa.Text(), nullable=True), schema="lgdp")
    op.add_column(
        "submission_issues", sa.Column("explained_at", sa.DateTime(timezone=True), nullable=True), schema="lgdp"
    )
    op.create_table(
        "explanation_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("source_item_id", sa.Text(), nullable=False),
        sa.Column("source_etag", sa.Text(), nullable=False),
        sa.Column("uploaded_by", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("explained", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["lgdp.archived_files.sha256"],
            name=op.f("fk_explanation_files_file_sha256_archived_files"),
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["lgdp.expected_submissions.id"],
            name=op.f("fk_explanation_files_submission_id_expected_submissions"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["lgdp.submission_versions.id"],
            name=op.f("fk_explanation_files_version_id_submission_versions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explanation_files")),
        sa.UniqueConstraint(
            "submission_id", "source_item_id", "source_etag",
            name=op.f("uq_explanation_files_submission_id_source_item_id_source_etag"),
        ),
        schema="lgdp",
    )
    op.create_index(
        op.f("ix_explanation_files_submission_id"), "explanation_files", ["submission_id"], unique=False, schema="lgdp"
    )
    op.create_table(
        "sent_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("return_id", sa.String(length=40), nullable=True),
        sa.Column("period", sa.String(length=20), nullable=True),
        sa.Column("council_code", sa.String(length=9), nullable=True),
        sa.Column("recipients", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(length=20), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sent_emails")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_sent_emails_dedupe_key")),
        schema="lgdp",
    )


def downgrade() -> None:
    op.drop_table("sent_emails", schema="lgdp")
    op.drop_table("explanation_files", schema="lgdp")
    op.drop_column("submission_issues", "explained_at", schema="lgdp")
    op.drop_column("submission_issues", "explanation", schema="lgdp")
    # PostgreSQL cannot drop an enum value: rebuild the type without it.
    op.execute("UPDATE lgdp.submission_versions SET status = 'rejected' WHERE status = 'queries'")
    op.execute("ALTER TYPE lgdp.version_status RENAME TO version_status_old")
    op.execute(
        "CREATE TYPE lgdp.version_status AS ENUM ('received', 'loaded', 'rejected', 'accepted', 'superseded')"
    )
    op.execute(
        "ALTER TABLE lgdp.submission_versions ALTER COLUMN status TYPE lgdp.version_status "
        "USING status::text::lgdp.version_status"
    )
    op.execute("DROP TYPE lgdp.version_status_old")
