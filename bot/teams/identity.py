"""Who a Teams activity comes from: the person a Teams user is in the engagement of their tenant.

A person is recognised by their Microsoft Entra (AAD) object id — the engagement file's `teams:` field,
or an earlier match — else by the email or user principal name on their Teams profile (TeamsInfo's
member look-up, done by the caller), which is then remembered with the zone the Teams client reported
(`localTimezone`) — the rules of `cadences.people`. Misses are cached for a few minutes per process, so
a stranger typing to the bot does not cost a roster look-up per message.

No Bot Framework types here: the handler turns `from`/TeamsInfo answers into `TeamsUser`, which keeps
this module unchanged when the SDK underneath is replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cadences import people
from cadences.clock import Clock
from cadences.people import SyncReport
from storage.db import Database
from storage.models import Engagement, Person

PLATFORM = "teams"
MISS_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class TeamsUser:
    """The parts of a Teams account Cadence uses. `email` is the profile's email, else its user
    principal name (they usually coincide; the UPN is what Teams always has)."""

    id: str
    aad_object_id: str | None
    email: str | None = None
    name: str | None = None

    @property
    def aad(self) -> str | None:
        return self.aad_object_id.lower() if self.aad_object_id else None


MemberLookup = Callable[[], Awaitable[TeamsUser | None]]
"""Fetches the full profile of the user behind an activity (TeamsInfo.get_member), when it is needed."""


class TeamsIdentities:
    """Resolves Teams users to people of an engagement."""

    def __init__(self, db: Database, clock: Clock, ttl: timedelta = MISS_TTL) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self._misses: dict[tuple[int, str], datetime] = {}

    def forget(self, engagement_id: int | None = None) -> None:
        """Drop cached misses (all, or one engagement's): after an engagement file is applied or linked."""
        if engagement_id is None:
            self._misses.clear()
        else:
            self._misses = {k: v for k, v in self._misses.items() if k[0] != engagement_id}

    async def person(
        self, engagement: Engagement, user: TeamsUser, lookup: MemberLookup, *, timezone: str | None = None
    ) -> Person | None:
        """The active person `user` is in `engagement`, or None (then they are not part of it). `timezone`
        is the zone the user's client reported; it is remembered on their identity."""
        aad = user.aad
        if aad is None:
            return None
        zone = people.known_zone(timezone)
        known, person = await people.stored_identity(self.db, engagement.id, PLATFORM, aad)
        if known is not None:
            if person is None or not person.active:
                return None
            if zone is not None and known.timezone != zone:
                await people.remember(self.db, engagement.id, person.id, PLATFORM, aad, zone)
            return person
        miss = self._misses.get((engagement.id, aad))
        if miss is not None and miss > self.clock.now():
            return None
        profile = await lookup()
        email = (profile.email if profile else None) or user.email
        person = await people.recognise(self.db, engagement.id, PLATFORM, aad, email=email, zone=zone)
        if person is None:
            self._misses[(engagement.id, aad)] = self.clock.now() + self.ttl
        return person

    async def sync(self, engagement: Engagement, roster: Iterable[TeamsUser]) -> SyncReport:
        """Match every active person of the engagement to a member of the roster (a team's or a chat's),
        by AAD object id from the file or by email, and remember the matches so proactive messages can
        reach them from the first ritual on. Run when a tenant is linked."""
        members = list(roster)
        by_aad = {m.aad: m for m in members if m.aad}
        by_email = {m.email.casefold(): m for m in members if m.email}
        everyone, known = await people.to_match(self.db, engagement.id, PLATFORM)
        matched: list[str] = []
        missing: list[str] = []
        for person in everyone:
            member = by_aad.get(known.get(person.id, "")) or (
                by_email.get(person.email.casefold()) if person.email else None
            )
            if member is None or member.aad is None:
                missing.append(person.name)
                continue
            if known.get(person.id) != member.aad:
                await people.remember(self.db, engagement.id, person.id, PLATFORM, member.aad, None)
            matched.append(person.name)
        self.forget(engagement.id)
        return SyncReport(matched, missing, platform="Teams", place="this team", file_field="`teams:` object id")
