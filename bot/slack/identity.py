"""Who a Slack request comes from: the person a Slack user is in the workspace's engagement.

A person is recognised by their Slack id when the engagement file (or an earlier match) records one,
else by the email on their Slack profile, which is then remembered with the profile's time zone — the
rules of `cadences.people`. Deactivated Slack users and bots are nobody. Lookups are cached for a few
minutes per process: a slash command, its modal and its submission arrive within seconds and need not
ask Slack three times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from cadences import people
from cadences.clock import Clock
from cadences.people import SyncReport
from storage.db import Database
from storage.models import Engagement, Person

PLATFORM = "slack"
CACHE_TTL = timedelta(minutes=5)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlackUser:
    """The parts of a Slack profile Cadence uses."""

    id: str
    email: str | None
    timezone: str | None
    deleted: bool
    is_bot: bool

    @classmethod
    def from_api(cls, user: dict[str, Any]) -> SlackUser:
        profile = user.get("profile") or {}
        tz = user.get("tz")
        return cls(
            id=str(user["id"]),
            email=(profile.get("email") or None),
            timezone=people.known_zone(tz if isinstance(tz, str) else None),
            deleted=bool(user.get("deleted")),
            is_bot=bool(user.get("is_bot")) or user.get("id") == "USLACKBOT",
        )

    @property
    def usable(self) -> bool:
        return not self.deleted and not self.is_bot


@dataclass
class _Cached:
    value: Any
    until: datetime


class SlackIdentities:
    """Resolves Slack users to people of an engagement, with a per-process cache."""

    def __init__(self, db: Database, clock: Clock, ttl: timedelta = CACHE_TTL) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self._users: dict[tuple[str, str], _Cached] = {}
        self._people: dict[tuple[int, str], _Cached] = {}

    def _get(self, cache: dict[Any, _Cached], key: Any) -> tuple[bool, Any]:
        hit = cache.get(key)
        if hit is None or hit.until <= self.clock.now():
            return False, None
        return True, hit.value

    def _put(self, cache: dict[Any, _Cached], key: Any, value: Any) -> None:
        cache[key] = _Cached(value, self.clock.now() + self.ttl)

    def forget(self, engagement_id: int | None = None) -> None:
        """Drop cached people (all, or one engagement's): after an engagement file is applied or relinked."""
        if engagement_id is None:
            self._people.clear()
        else:
            self._people = {k: v for k, v in self._people.items() if k[0] != engagement_id}

    async def user(self, client: AsyncWebClient, team_id: str, user_id: str) -> SlackUser | None:
        """The Slack profile of `user_id` (users.info), None when Slack does not know them."""
        found, cached = self._get(self._users, (team_id, user_id))
        if found:
            return cached  # type: ignore[no-any-return]
        try:
            response = await client.users_info(user=user_id)
            user: SlackUser | None = SlackUser.from_api(response["user"])
        except SlackApiError as exc:
            if exc.response.get("error") != "user_not_found":
                raise
            user = None
        self._put(self._users, (team_id, user_id), user)
        return user

    async def person(self, client: AsyncWebClient, team_id: str, engagement: Engagement, user_id: str) -> Person | None:
        """The active person `user_id` is in `engagement`, or None (then they are not part of it)."""
        found, cached = self._get(self._people, (engagement.id, user_id))
        if found:
            return cached  # type: ignore[no-any-return]
        person = await self._resolve(client, team_id, engagement, user_id)
        self._put(self._people, (engagement.id, user_id), person)
        return person

    async def _resolve(
        self, client: AsyncWebClient, team_id: str, engagement: Engagement, user_id: str
    ) -> Person | None:
        known, person = await people.stored_identity(self.db, engagement.id, PLATFORM, user_id)
        if person is not None and not person.active:
            return None
        if person is not None and known is not None and known.timezone is not None:
            return person
        try:
            profile = await self.user(client, team_id, user_id)
        except SlackApiError:
            if person is None:
                raise
            log.warning("users.info failed for %s; using the recorded identity", user_id, exc_info=True)
            return person
        if profile is None or not profile.usable:
            return None
        return await people.recognise(
            self.db, engagement.id, PLATFORM, profile.id, email=profile.email, zone=profile.timezone, known=person
        )

    async def sync(self, client: AsyncWebClient, team_id: str, engagement: Engagement) -> SyncReport:
        """Match every active person without a Slack identity by email (users.lookupByEmail), and record
        the profile time zone of those already matched. Run when a workspace is linked."""
        everyone, known = await people.to_match(self.db, engagement.id, PLATFORM)
        matched: list[str] = []
        missing: list[str] = []
        for person in everyone:
            profile = await self._profile_for(client, team_id, person, known.get(person.id))
            if profile is None or not profile.usable:
                missing.append(person.name)
                continue
            await people.remember(self.db, engagement.id, person.id, PLATFORM, profile.id, profile.timezone)
            matched.append(person.name)
        self.forget(engagement.id)
        return SyncReport(matched, missing, platform="Slack", place="this workspace", file_field="`slack:` id")

    async def _profile_for(
        self, client: AsyncWebClient, team_id: str, person: Person, user_id: str | None
    ) -> SlackUser | None:
        if user_id is not None:
            return await self.user(client, team_id, user_id)
        if not person.email:
            return None
        try:
            response = await client.users_lookupByEmail(email=person.email)
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise
            return None
        profile = SlackUser.from_api(response["user"])
        self._put(self._users, (team_id, profile.id), profile)
        return profile
