"""perf indexes: the review's movement and the tick's look-up of recent occurrences, at scale

Measured with bench/review.py and bench/scheduler.py. `deal_history (engagement_id, at)` turns "what
moved since the last review" from a scan of the engagement's whole history into a range (it replaces the
single-column `engagement_id` index, which it covers); `occurrence (engagement_id, due_at)` does the same
for the tick's read of the occurrences already recorded for what is due.

Additive for readers: indexes only, so processes of the previous version run unchanged beside it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 01:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deal_history", schema=None) as batch_op:
        batch_op.create_index("ix_deal_history_engagement_at", ["engagement_id", "at"], unique=False)
        batch_op.drop_index("ix_deal_history_engagement_id")
    with op.batch_alter_table("occurrence", schema=None) as batch_op:
        batch_op.create_index("ix_occurrence_engagement_due", ["engagement_id", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("occurrence", schema=None) as batch_op:
        batch_op.drop_index("ix_occurrence_engagement_due")
    with op.batch_alter_table("deal_history", schema=None) as batch_op:
        batch_op.create_index("ix_deal_history_engagement_id", ["engagement_id"], unique=False)
        batch_op.drop_index("ix_deal_history_engagement_at")
