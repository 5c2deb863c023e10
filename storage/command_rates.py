"""Per-user command counts per minute, shared by every process (the command rate limit).

One row per (platform, workspace, user, minute); `count_command` inserts it or adds one to it in a single
atomic statement (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`), so two processes counting the same
person's commands at once both see the true total: the limit is one limit, not one per process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import CommandRate

WINDOW = timedelta(minutes=1)
KEEP = timedelta(hours=1)
"""How long finished windows are kept before they are pruned (only the current one is ever read)."""


def window_start(now: datetime) -> datetime:
    """The minute `now` falls in (fixed windows: a burst across a minute boundary may reach twice the limit)."""
    return now.replace(second=0, microsecond=0)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def count_command(session: AsyncSession, platform: str, workspace_id: str, user_id: str, now: datetime) -> int:
    """Count one command by this person now; returns how many they ran in this minute, this one included.

    The first command of a minute also prunes windows older than `KEEP`, so the table stays small
    without a job."""
    start = window_start(now)
    stmt = _insert(session)(CommandRate).values(
        platform=platform, workspace_id=workspace_id[:64], user_id=user_id[:128], window_start=start, count=1
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["platform", "workspace_id", "user_id", "window_start"],
        set_={"count": CommandRate.count + 1},
    ).returning(CommandRate.count)
    count = int((await session.execute(stmt)).scalar_one())
    if count == 1:
        await session.execute(delete(CommandRate).where(CommandRate.window_start < start - KEEP))
    return count
