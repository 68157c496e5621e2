"""Files a council drops after its submission was accepted: kept and answered, never processed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("accepted_version_id", sa.Integer(), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("source_item_id", sa.Text(), nullable=False),
        sa.Column("source_etag", sa.Text(), nullable=False),
        sa.Column("uploaded_by", sa.Text(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["lgdp.archived_files.sha256"], name=op.f("fk_late_files_file_sha256_archived_files"),
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["lgdp.expected_submissions.id"],
            name=op.f("fk_late_files_submission_id_expected_submissions"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["accepted_version_id"], ["lgdp.submission_versions.id"],
            name=op.f("fk_late_files_accepted_version_id_submission_versions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_files")),
        sa.UniqueConstraint(
            "submission_id", "source_item_id", "source_etag",
            name=op.f("uq_late_files_submission_id_source_item_id_source_etag"),
        ),
        schema="lgdp",
    )
    op.create_index(op.f("ix_late_files_submission_id"), "late_files", ["submission_id"], unique=False, schema="lgdp")


def downgrade() -> None:
    op.drop_index(op.f("ix_late_files_submission_id"), table_name="late_files", schema="lgdp")
    op.drop_table("late_files", schema="lgdp")
