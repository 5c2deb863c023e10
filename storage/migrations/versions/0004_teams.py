"""teams: conversation references (where the bot can post) and sent activities (delivery keys)

Reviewed: conversation_ref.engagement_id is nullable (a 1:1 chat is captured before its tenant is linked
to an engagement) and turns NULL, not cascades, when an engagement is deleted, like chat_workspace;
conversation ids are unique (a channel's thread replies are stored under the channel's id).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:21:02.952937
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sent_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_key", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.String(length=400), nullable=False),
        sa.Column("activity_id", sa.String(length=200), nullable=False),
        sa.Column("thread_id", sa.String(length=200), nullable=True),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sent_activity")),
        sa.UniqueConstraint("delivery_key", name=op.f("uq_sent_activity_delivery_key")),
    )
    with op.batch_alter_table("sent_activity", schema=None) as batch_op:
        batch_op.create_index("ix_sent_activity_activity", ["activity_id"], unique=False)

    op.create_table(
        "conversation_ref",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("service_url", sa.String(length=500), nullable=False),
        sa.Column("conversation_id", sa.String(length=400), nullable=False),
        sa.Column("conversation_type", sa.String(length=16), nullable=False),
        sa.Column("channel_name", sa.String(length=120), nullable=True),
        sa.Column("aad_object_id", sa.String(length=64), nullable=True),
        sa.Column("team_id", sa.String(length=400), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_conversation_ref_engagement_id_engagement"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_ref")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_conversation_ref_conversation_id")),
    )
    with op.batch_alter_table("conversation_ref", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_ref_engagement_channel", ["engagement_id", "channel_name"], unique=False)
        batch_op.create_index("ix_conversation_ref_tenant", ["tenant_id"], unique=False)
        batch_op.create_index("ix_conversation_ref_user", ["aad_object_id", "conversation_type"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversation_ref", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_ref_user")
        batch_op.drop_index("ix_conversation_ref_tenant")
        batch_op.drop_index("ix_conversation_ref_engagement_channel")

    op.drop_table("conversation_ref")
    with op.batch_alter_table("sent_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_sent_activity_activity")

    op.drop_table("sent_activity")
