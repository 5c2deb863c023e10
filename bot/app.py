"""The app factory: builds storage, clock and command router from settings; no module-level state."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings
from cadences.catalog import build_router
from cadences.clock import Clock, SystemClock
from cadences.commands import CommandRouter
from cadences.context import Context
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Engagement


class SetupError(RuntimeError):
    """A problem the person running Cadence must fix (shown as one line, exit code 2)."""


@dataclass
class CadenceApp:
    settings: Settings
    db: Database
    clock: Clock
    router: CommandRouter

    async def start(self) -> None:
        """Upgrade the schema on every start, so a new version never runs against an old database."""
        await self.db.upgrade()

    async def close(self) -> None:
        await self.db.dispose()

    async def engagement(self, slug: str | None = None) -> Engagement:
        slug = slug or self.settings.engagement
        async with self.db.session() as session:
            found = await engagement_repo.get_engagement(session, slug)
            if found is None:
                available = [e.slug for e in await engagement_repo.list_engagements(session)]
        if found is not None:
            return found
        if slug:
            raise SetupError(f"no engagement '{slug}' in {self.db.url} (found: {', '.join(available) or 'none'})")
        if not available:
            raise SetupError("no engagement yet: run `cadence engagement apply FILE` (or `cadence demo`)")
        raise SetupError(f"several engagements ({', '.join(available)}): choose one with --engagement SLUG")

    def context(self, engagement: Engagement, actor_ref: str, channel: str) -> Context:
        return Context(self.db, self.clock, engagement, None, channel, actor_ref)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> CadenceApp:
    settings = settings or Settings()
    return CadenceApp(
        settings=settings, db=Database(settings.database_url), clock=clock or SystemClock(), router=build_router()
    )
