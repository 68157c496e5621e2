"""Requester sign-offs keep the reason a returned file was rejected.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requester_signoffs", sa.Column("problem", sa.Text(), nullable=True), schema="lgdp")


def downgrade() -> None:
    op.drop_column("requester_signoffs", "problem", schema="lgdp")
