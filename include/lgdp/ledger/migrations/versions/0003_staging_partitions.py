"""Staging partitions: the schema holding one partition of staged rows per submission version.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Created here so the platform's database role needs no CREATE privilege at load time.
    op.execute("CREATE SCHEMA IF NOT EXISTS lgdp_staging_versions")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS lgdp_staging_versions CASCADE")
