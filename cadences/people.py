"""Who a chat user is in an engagement, decided the same way on every platform.

A workspace (a Slack team, a Teams tenant) is linked to one engagement. A user is a person of it by the
platform identity the engagement file (or an earlier match) records, else by the email on their
profile; a match is remembered with the time zone the platform reports (the file's zone still wins,
see `cadences.rituals.load_facts`), so proactive messages reach them and land at their local hour.
Someone no longer active in the engagement is nobody. How a profile is fetched (Slack's users.info,
Teams' member look-up) and what is cached stays with each platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

from storage import chat_workspaces
from storage.db import Database
from storage.models import ChatIdentity, Engagement, Person


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def known_zone(name: str | None) -> str | None:
    """An IANA zone name the bot can compute with, or None (a chat client may report anything)."""
    return name if name and name in _zones() else None


async def engagement_for_workspace(db: Database, platform: str, workspace_id: str | None) -> Engagement | None:
    """The engagement a workspace is linked to (None before setup, or after an uninstall or unlink)."""
    if not workspace_id:
        return None
    async with db.session() as session:
        row = await chat_workspaces.workspace(session, platform, workspace_id)
        if row is None or row.engagement_id is None or not row.active:
            return None
        return await session.get(Engagement, row.engagement_id)


async def stored_identity(
    db: Database, engagement_id: int, platform: str, user_id: str
) -> tuple[ChatIdentity | None, Person | None]:
    """The identity recorded for `user_id` on `platform` (None when never matched), and its person."""
    async with db.session() as session:
        known = await chat_workspaces.identity(session, engagement_id, platform, user_id)
        person = await session.get(Person, known.person_id) if known is not None else None
    return known, person


async def recognise(
    db: Database,
    engagement_id: int,
    platform: str,
    user_id: str,
    *,
    email: str | None,
    zone: str | None,
    known: Person | None = None,
) -> Person | None:
    """`known` (the person a stored identity names), else the one person of the engagement with `email`;
    remembered as `user_id` on `platform` with `zone`. None when that is nobody active."""
    person = known
    if person is None and email:
        async with db.session() as session:
            person = await chat_workspaces.person_by_email(session, engagement_id, email)
    if person is None or not person.active:
        return None
    await remember(db, engagement_id, person.id, platform, user_id, zone)
    return person


async def remember(
    db: Database, engagement_id: int, person_id: int, platform: str, user_id: str, zone: str | None
) -> None:
    """Record (or refresh the zone of) a person's identity on a platform."""
    async with db.write() as session:
        await chat_workspaces.remember_identity(session, engagement_id, person_id, platform, user_id, zone)


async def to_match(db: Database, engagement_id: int, platform: str) -> tuple[Sequence[Person], dict[int, str]]:
    """The engagement's active people, and the platform user id of each one already matched: what a
    workspace's members are matched against when it is linked."""
    async with db.session() as session:
        people = await chat_workspaces.active_people(session, engagement_id)
        known = await chat_workspaces.identities_of(session, engagement_id, platform)
    return people, known


@dataclass(frozen=True)
class SyncReport:
    """What matching the engagement's people to a platform's users found, in that platform's words:
    `platform` ("Slack"), where its users were looked for (`place`), and the engagement file's field
    naming a person's identity there (`file_field`)."""

    matched: list[str]
    missing: list[str]
    platform: str
    place: str
    file_field: str

    def summary(self) -> str:
        total = len(self.matched) + len(self.missing)
        text = f"{len(self.matched)} of {total} people are matched to {self.platform} users."
        if self.missing:
            text += (
                f" Not found in {self.place}: "
                + ", ".join(self.missing)
                + f" — add their {self.file_field} (or a {self.platform} account with the same email) to the"
                " engagement file."
            )
        return text
