"""The councils' submission API: system tokens (hashes only), every request, every submission.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

S = "lgdp"


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("council_code", sa.String(9), sa.ForeignKey(f"{S}.councils.code", name="fk_api_tokens_council_code_councils"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        schema=S,
    )
    op.create_index("ix_api_tokens_council_code", "api_tokens", ["council_code"], schema=S)
    op.create_table(
        "api_requests",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_id", sa.String(24), nullable=True),
        sa.Column("council_code", sa.String(9), nullable=True),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("submission_id", sa.String(36), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_requests"),
        schema=S,
    )
    op.create_index("ix_api_requests_token_id_at", "api_requests", ["token_id", "at"], schema=S)
    op.create_table(
        "api_submissions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token_id", sa.String(24), sa.ForeignKey(f"{S}.api_tokens.id", name="fk_api_submissions_token_id_api_tokens"), nullable=False),
        sa.Column("council_code", sa.String(9), nullable=False),
        sa.Column("return_id", sa.String(40), nullable=False),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("original_sha256", sa.String(64), sa.ForeignKey(f"{S}.archived_files.sha256", name="fk_api_submissions_original_sha256_archived_files"), nullable=False),
        sa.Column("file_sha256", sa.String(64), sa.ForeignKey(f"{S}.archived_files.sha256", name="fk_api_submissions_file_sha256_archived_files"), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("target_path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("source_item_id", sa.Text(), nullable=True),
        sa.Column("source_etag", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_submissions"),
        sa.UniqueConstraint("council_code", "idempotency_key", name="uq_api_submissions_council_code_idempotency_key"),
        schema=S,
    )
    op.create_index("ix_api_submissions_status", "api_submissions", ["status"], schema=S)


def downgrade() -> None:
    op.drop_table("api_submissions", schema=S)
    op.drop_table("api_requests", schema=S)
    op.drop_table("api_tokens", schema=S)
