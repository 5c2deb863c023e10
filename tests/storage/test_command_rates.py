"""Per-user command counts: one atomic increment per command, per minute, shared by every connection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from storage.command_rates import count_command
from storage.db import Database
from storage.models import CommandRate

T0 = datetime(2026, 11, 24, 18, 0, 5, tzinfo=UTC)


async def count(db: Database, at: datetime, user: str = "U0JORDAN", workspace: str = "T0TEST") -> int:
    async with db.write() as session:
        return await count_command(session, "slack", workspace, user, at)


async def rows(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(CommandRate))).scalar_one())


async def test_commands_are_counted_per_person_workspace_and_minute(db: Database) -> None:
    assert [await count(db, T0 + timedelta(seconds=i)) for i in range(3)] == [1, 2, 3]
    assert await count(db, T0, user="U0PRIYA") == 1
    assert await count(db, T0, workspace="T0OTHER") == 1
    assert await count(db, T0 + timedelta(seconds=54)) == 4  # 18:00:59: still the same minute
    assert await count(db, T0 + timedelta(seconds=55)) == 1  # 18:01:00: a new one
    assert await rows(db) == 4


async def test_the_first_command_of_a_minute_prunes_windows_older_than_an_hour(db: Database) -> None:
    await count(db, T0)
    await count(db, T0 + timedelta(minutes=30), user="U0PRIYA")
    assert await rows(db) == 2
    await count(db, T0 + timedelta(minutes=61))
    assert await rows(db) == 2  # the 18:00 window went; the 18:30 one is kept for now


async def test_concurrent_commands_each_get_their_own_count(db: Database) -> None:
    counts = await asyncio.gather(*(count(db, T0) for _ in range(25)))
    assert sorted(counts) == list(range(1, 26))
    async with db.session() as session:
        stored = (await session.execute(select(CommandRate.count))).scalar_one()
    assert stored == 25
