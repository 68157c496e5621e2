"""Issues name the table they are in (returns of several tables: children, episodes, placements).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submission_issues", sa.Column("table_name", sa.Text(), nullable=True), schema="lgdp")


def downgrade() -> None:
    op.drop_column("submission_issues", "table_name", schema="lgdp")
