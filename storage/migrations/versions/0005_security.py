"""security: chat tokens sealed at rest; per-user command rate counters

Additive, so processes of the previous version keep running while it is applied: `command_rate` is a
new table they never read, and `chat_workspace.bot_token` keeps its type and its values. Tokens stored
in clear by the previous version stay readable (storage/secrets.py reads an unmarked value as it is) and
are sealed by `cadence secrets reseal` once no old process is left — an old process could not read a
sealed one. `cadence doctor` reports tokens still in clear.

The downgrade writes every token back in clear (it needs CADENCE_SECRET_KEY), since the previous version
cannot open a sealed one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types
from storage.secrets import unseal

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_workspaces = sa.table("chat_workspace", sa.column("id", sa.Integer()), sa.column("bot_token", sa.Text()))


def _tokens_in_clear() -> None:
    connection = op.get_bind()
    stored = sa.select(_workspaces.c.id, _workspaces.c.bot_token).where(_workspaces.c.bot_token.is_not(None))
    for row_id, token in connection.execute(stored).all():
        connection.execute(sa.update(_workspaces).where(_workspaces.c.id == row_id).values(bot_token=unseal(token)))


def upgrade() -> None:
    op.create_table(
        "command_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("window_start", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_rate")),
        sa.UniqueConstraint(
            "platform", "workspace_id", "user_id", "window_start", name=op.f("uq_command_rate_platform")
        ),
    )
    with op.batch_alter_table("command_rate", schema=None) as batch_op:
        batch_op.create_index("ix_command_rate_window_start", ["window_start"], unique=False)


def downgrade() -> None:
    _tokens_in_clear()
    with op.batch_alter_table("command_rate", schema=None) as batch_op:
        batch_op.drop_index("ix_command_rate_window_start")
    op.drop_table("command_rate")
