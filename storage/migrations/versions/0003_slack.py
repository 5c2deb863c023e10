"""slack: installed workspaces, linked channels, inbound event ids (retry dedupe), OAuth state, identity time zone

Reviewed: chat_workspace.engagement_id is nullable until `/cadence setup` links the workspace and turns
NULL (not cascades) when an engagement is deleted, so a workspace's install survives; chat_identity
gains the Slack profile zone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:05:00.626981
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_event")),
        sa.UniqueConstraint("platform", "event_id", name=op.f("uq_inbound_event_platform")),
    )
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_event_received_at", ["received_at"], unique=False)

    op.create_table(
        "oauth_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_state")),
        sa.UniqueConstraint("state", name=op.f("uq_oauth_state_state")),
    )
    op.create_table(
        "chat_channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_chat_channel_engagement_id_engagement"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_channel")),
        sa.UniqueConstraint("engagement_id", "platform", "name", name=op.f("uq_chat_channel_engagement_id")),
    )
    op.create_table(
        "chat_workspace",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("enterprise_id", sa.String(length=64), nullable=True),
        sa.Column("engagement_id", sa.Integer(), nullable=True),
        sa.Column("app_id", sa.String(length=64), nullable=True),
        sa.Column("bot_id", sa.String(length=64), nullable=True),
        sa.Column("bot_token", sa.Text(), nullable=True),
        sa.Column("bot_user_id", sa.String(length=64), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("installed_by_user_id", sa.String(length=64), nullable=True),
        sa.Column("installed_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["engagement.id"],
            name=op.f("fk_chat_workspace_engagement_id_engagement"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_workspace")),
        sa.UniqueConstraint("platform", "workspace_id", name=op.f("uq_chat_workspace_platform")),
    )
    with op.batch_alter_table("chat_workspace", schema=None) as batch_op:
        batch_op.create_index("ix_chat_workspace_engagement", ["engagement_id", "platform"], unique=False)

    with op.batch_alter_table("chat_identity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_identity", schema=None) as batch_op:
        batch_op.drop_column("timezone")

    with op.batch_alter_table("chat_workspace", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_workspace_engagement")

    op.drop_table("chat_workspace")
    op.drop_table("chat_channel")
    op.drop_table("oauth_state")
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_event_received_at")

    op.drop_table("inbound_event")
