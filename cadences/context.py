"""Who is acting, where, and when: the context every command and ritual runs in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from cadences.clock import Clock
from storage.db import Database
from storage.models import Engagement, Person


class Cadence(Protocol):
    """What commands may ask of the cadence engine (implemented by `cadences.engine.Engine`)."""

    async def trigger(
        self,
        engagement: Engagement,
        ritual: str,
        period: str,
        *,
        detail: dict[str, Any] | None = None,
        host_id: int | None = None,
        deliver: bool = True,
    ) -> int | None: ...

    async def update_sent(self, subject: str, message: Any, *, purpose_prefix: str = "") -> int: ...


@dataclass(frozen=True)
class Context:
    """One request's view of the world. `actor` is None for someone who is not in the engagement."""

    db: Database
    clock: Clock
    engagement: Engagement
    actor: Person | None
    channel: str
    actor_ref: str
    cadence: Cadence | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.engagement.timezone)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        """Today in the engagement's time zone: the date a rep means by 'today'."""
        return self.clock.now().astimezone(self.tz).date()

    def with_actor(self, actor: Person | None, actor_ref: str | None = None) -> Context:
        return Context(
            self.db, self.clock, self.engagement, actor, self.channel, actor_ref or self.actor_ref, self.cadence
        )
