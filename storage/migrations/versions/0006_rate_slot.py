"""rate_slot: Slack rate-limit buckets shared by every bot process

Additive: processes of the previous version never read it (they pace in memory), so it can be applied
while they still run. One row per bucket (a channel's posts, a workspace's posts, a workspace's DM opens),
created on first use and deleted when idle for an hour.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_slot",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tat", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_slot")),
    )


def downgrade() -> None:
    op.drop_table("rate_slot")
