"""Test worlds: an applied engagement on a database and a clock, with people who type commands, and
optionally the real engine with every ritual and a transcript port."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.console.render import render
from cadences.catalog import build_router
from cadences.clock import ManualClock
from cadences.context import Context
from cadences.engine import Engine
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import advance
from storage import engagements as engagement_repo
from storage.db import Database
from support.transcript import TranscriptPort


class World:
    """A test engagement on a database and a clock, with people who can type commands."""

    def __init__(self, db: Database, clock: ManualClock, engagement: Any) -> None:
        self.db = db
        self.clock = clock
        self.engagement = engagement
        self.router = build_router()

    async def person(self, key: str) -> Any:
        async with self.db.session() as session:
            return await engagement_repo.person_by_key(session, self.engagement.id, key)

    async def ctx(self, key: str | None, channel: str = "console") -> Any:
        actor = await self.person(key) if key else None
        return Context(self.db, self.clock, self.engagement, actor, channel, key or "stranger")

    async def say(self, key: str | None, text: str, channel: str = "console") -> list[Any]:
        return await self.router.handle_text(await self.ctx(key, channel), text)

    async def text(self, key: str | None, line: str) -> str:
        """What the person sees, as the console renders it."""
        return "\n".join(render(m) for m in await self.say(key, line))


class EngineWorld(World):
    """A World with the real cadence engine, every ritual, and a transcript port instead of a chat."""

    def __init__(self, db: Database, clock: ManualClock, engagement: Any) -> None:
        super().__init__(db, clock, engagement)
        self.port = TranscriptPort()
        self.engine = Engine(db, clock, all_rituals(), lambda _engagement: self.port, worker="test-1")

    async def ctx(self, key: str | None, channel: str = "console") -> Any:
        return replace(await super().ctx(key, channel), cadence=self.engine)

    async def run_until(self, until: datetime) -> None:
        """Advance the clock through every due time up to `until`, ticking the engine at each."""
        await advance(self.engine, self.clock, until)
