"""Queries for chat installations: workspaces and their engagement (tokens sealed at rest by the column
type, storage/secrets.py), linked channels, identities learned from a platform, inbound event ids
(retry dedupe) and OAuth state.

Platform neutral on purpose (no chat SDK here): `platform` is "slack" today and "teams" tomorrow, and the
bot layer turns these rows into whatever its SDK expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, delete, func, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from storage.models import (
    ChatChannel,
    ChatIdentity,
    ChatWorkspace,
    Delivery,
    Engagement,
    InboundEvent,
    OAuthState,
    Occurrence,
    Person,
)

INBOUND_KEEP = timedelta(days=2)
"""How long an inbound event id is remembered: Slack retries within the hour, so two days is ample."""


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# --- workspaces ------------------------------------------------------------------------------------


async def workspace(session: AsyncSession, platform: str, workspace_id: str) -> ChatWorkspace | None:
    stmt = select(ChatWorkspace).where(ChatWorkspace.platform == platform, ChatWorkspace.workspace_id == workspace_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def workspace_of(session: AsyncSession, engagement_id: int, platform: str) -> ChatWorkspace | None:
    """The active workspace an engagement is linked to on a platform (None: not linked, or uninstalled)."""
    stmt = (
        select(ChatWorkspace)
        .where(
            ChatWorkspace.engagement_id == engagement_id,
            ChatWorkspace.platform == platform,
            ChatWorkspace.active.is_(True),
        )
        .order_by(ChatWorkspace.installed_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def linked_workspaces(session: AsyncSession, platform: str) -> Sequence[ChatWorkspace]:
    """Every active workspace that serves an engagement (the ports `cadence run` needs)."""
    stmt = select(ChatWorkspace).where(
        ChatWorkspace.platform == platform, ChatWorkspace.active.is_(True), ChatWorkspace.engagement_id.is_not(None)
    )
    return (await session.execute(stmt)).scalars().all()


async def save_install(
    session: AsyncSession,
    platform: str,
    workspace_id: str,
    *,
    installed_at: datetime,
    enterprise_id: str | None = None,
    app_id: str | None = None,
    bot_id: str | None = None,
    bot_token: str | None = None,
    bot_user_id: str | None = None,
    scopes: str = "",
    installed_by_user_id: str | None = None,
) -> ChatWorkspace:
    """Create or refresh a workspace's installation. A reinstall keeps the engagement it was linked to."""
    row = await workspace(session, platform, workspace_id)
    if row is None:
        row = ChatWorkspace(platform=platform, workspace_id=workspace_id)
        session.add(row)
    row.enterprise_id = enterprise_id
    row.app_id = app_id
    row.bot_id = bot_id
    row.bot_token = bot_token
    row.bot_user_id = bot_user_id
    row.scopes = scopes
    row.installed_by_user_id = installed_by_user_id
    row.installed_at = installed_at
    row.active = True
    await session.flush()
    return row


async def link(
    session: AsyncSession, platform: str, workspace_id: str, engagement_id: int, *, now: datetime
) -> ChatWorkspace:
    """Link a workspace to an engagement (creating the row in single-workspace mode, where the token comes
    from the environment and no install was recorded). Un-pauses an engagement paused by an uninstall."""
    row = await workspace(session, platform, workspace_id)
    if row is None:
        row = ChatWorkspace(platform=platform, workspace_id=workspace_id, installed_at=now, scopes="", active=True)
        session.add(row)
    row.engagement_id = engagement_id
    row.active = True
    await session.flush()
    return row


async def uninstall(session: AsyncSession, platform: str, workspace_id: str) -> int | None:
    """Forget a workspace's token and pause the engagement it served; returns that engagement's id."""
    row = await workspace(session, platform, workspace_id)
    if row is None:
        return None
    row.bot_token = None
    row.active = False
    if row.engagement_id is not None:
        await session.execute(update(Engagement).where(Engagement.id == row.engagement_id).values(paused=True))
    await session.flush()
    return row.engagement_id


async def stored_tokens(session: AsyncSession) -> list[tuple[str, str, str]]:
    """(platform, workspace id, the token AS STORED — sealed or not) of every workspace holding a token:
    what `cadence doctor` inspects without opening anything."""
    raw = type_coerce(ChatWorkspace.bot_token, Text)
    stmt = (
        select(ChatWorkspace.platform, ChatWorkspace.workspace_id, raw)
        .where(ChatWorkspace.bot_token.is_not(None))
        .order_by(ChatWorkspace.id)
    )
    return [(platform, workspace_id, stored) for platform, workspace_id, stored in (await session.execute(stmt)).all()]


async def reseal_tokens(session: AsyncSession) -> int:
    """Write every stored token again, so each is sealed under the first key of CADENCE_SECRET_KEY (after a
    key is set for the first time, or to rotate keys); returns how many were rewritten."""
    rows = (await session.execute(select(ChatWorkspace).where(ChatWorkspace.bot_token.is_not(None)))).scalars().all()
    for row in rows:
        flag_modified(row, "bot_token")
    await session.flush()
    return len(rows)


# --- channels --------------------------------------------------------------------------------------


async def set_channel(
    session: AsyncSession, engagement_id: int, platform: str, workspace_id: str, name: str, channel_id: str
) -> ChatChannel:
    """Record which platform channel the engagement's channel `name` is (replacing an earlier one)."""
    stmt = select(ChatChannel).where(
        ChatChannel.engagement_id == engagement_id, ChatChannel.platform == platform, ChatChannel.name == name
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        row = ChatChannel(engagement_id=engagement_id, platform=platform, name=name)
        session.add(row)
    row.workspace_id = workspace_id
    row.channel_id = channel_id
    await session.flush()
    return row


async def channel_id(session: AsyncSession, engagement_id: int, platform: str, name: str) -> str | None:
    stmt = select(ChatChannel.channel_id).where(
        ChatChannel.engagement_id == engagement_id, ChatChannel.platform == platform, ChatChannel.name == name
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def channel_names(session: AsyncSession, engagement_id: int, platform: str) -> dict[str, str]:
    """name -> platform channel id, for every channel of the engagement on the platform."""
    stmt = select(ChatChannel.name, ChatChannel.channel_id).where(
        ChatChannel.engagement_id == engagement_id, ChatChannel.platform == platform
    )
    return {name: ident for name, ident in (await session.execute(stmt)).all()}


# --- identities learned from the platform ---------------------------------------------------------


async def identity(session: AsyncSession, engagement_id: int, platform: str, user_id: str) -> ChatIdentity | None:
    stmt = select(ChatIdentity).where(
        ChatIdentity.engagement_id == engagement_id,
        ChatIdentity.platform == platform,
        ChatIdentity.user_id == user_id,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def remember_identity(
    session: AsyncSession, engagement_id: int, person_id: int, platform: str, user_id: str, timezone: str | None
) -> ChatIdentity:
    """Store (or refresh the zone of) a person's platform identity found by email or from the file."""
    row = await identity(session, engagement_id, platform, user_id)
    if row is None:
        row = ChatIdentity(engagement_id=engagement_id, person_id=person_id, platform=platform, user_id=user_id)
        session.add(row)
    row.timezone = timezone
    await session.flush()
    return row


async def identities_of(session: AsyncSession, engagement_id: int, platform: str) -> dict[int, str]:
    """person id -> platform user id, for everyone of the engagement known on the platform."""
    stmt = (
        select(ChatIdentity.person_id, ChatIdentity.user_id)
        .where(ChatIdentity.engagement_id == engagement_id, ChatIdentity.platform == platform)
        .order_by(ChatIdentity.id)
    )
    return {person_id: user_id for person_id, user_id in (await session.execute(stmt)).all()}


async def active_people(session: AsyncSession, engagement_id: int) -> Sequence[Person]:
    stmt = select(Person).where(Person.engagement_id == engagement_id, Person.active.is_(True)).order_by(Person.id)
    return (await session.execute(stmt)).scalars().all()


async def person_by_email(session: AsyncSession, engagement_id: int, email: str) -> Person | None:
    """The one person of the engagement with this email (case-insensitive); None when none or several."""
    stmt = select(Person).where(Person.engagement_id == engagement_id, func.lower(Person.email) == email.lower())
    found = (await session.execute(stmt.limit(2))).scalars().all()
    return found[0] if len(found) == 1 else None


# --- inbound event ids ----------------------------------------------------------------------------


async def first_sight(session: AsyncSession, platform: str, event_id: str, now: datetime) -> bool:
    """Record an inbound event id; False when it was already recorded (a retry, in this or any process).

    Ids older than `INBOUND_KEEP` are pruned on the way, so the table stays small without a job."""
    stmt = (
        _insert(session)(InboundEvent)
        .values(platform=platform, event_id=event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(InboundEvent.id)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none() is not None
    await session.execute(delete(InboundEvent).where(InboundEvent.received_at < now - INBOUND_KEEP))
    return inserted


# --- OAuth state ----------------------------------------------------------------------------------


async def issue_state(session: AsyncSession, state: str, expires_at: datetime) -> None:
    session.add(OAuthState(state=state, expires_at=expires_at))
    await session.flush()


async def consume_state(session: AsyncSession, state: str, now: datetime) -> bool:
    """True once for a state issued and not expired; the row is deleted either way (one use only)."""
    stmt = delete(OAuthState).where(OAuthState.state == state).returning(OAuthState.expires_at)
    expires = (await session.execute(stmt)).scalar_one_or_none()
    await session.execute(delete(OAuthState).where(OAuthState.expires_at < now))
    return expires is not None and expires >= now


# --- messages the engine sent -----------------------------------------------------------------------


async def sent_messages(
    session: AsyncSession, engagement_id: int, platform: str, ritual: str, limit: int = 200
) -> Sequence[Delivery]:
    """The latest deliveries of a ritual sent on a platform, newest first: where a reply's thread parent
    is looked up (the review post, or a deal's thread message). Bounded: replies come to recent posts."""
    stmt = (
        select(Delivery)
        .join(Occurrence, Occurrence.id == Delivery.occurrence_id)
        .where(
            Delivery.engagement_id == engagement_id,
            Delivery.platform == platform,
            Delivery.status == "sent",
            Occurrence.ritual == ritual,
        )
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()
