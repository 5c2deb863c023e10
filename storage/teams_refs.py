"""Queries for Teams conversation references (where the bot can post) and the ritual messages it posted.

No Bot Framework here: a reference is stored as the JSON the bot layer hands over, with the columns the
bot looks conversations up by beside it (tenant, conversation type, the user of a 1:1 chat, the
engagement's name for a channel). Every inbound activity refreshes its conversation's row — Teams may
move a tenant to another service URL — in one upsert, so two requests racing for a new conversation
cannot trip the unique constraint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ConversationRef, Delivery, SentActivity

PERSONAL = "personal"
CHANNEL = "channel"
GROUP_CHAT = "groupChat"
CONVERSATION_TYPES = (PERSONAL, CHANNEL, GROUP_CHAT)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def save_ref(
    session: AsyncSession,
    *,
    conversation_id: str,
    tenant_id: str,
    service_url: str,
    conversation_type: str,
    reference: dict[str, Any],
    now: datetime,
    engagement_id: int | None = None,
    aad_object_id: str | None = None,
    team_id: str | None = None,
) -> ConversationRef:
    """Create or refresh a conversation's reference. What is not given (None) keeps its stored value, so
    a later message without the engagement or the team known does not forget them; `channel_name` is
    only ever set by `name_channel`."""
    if conversation_type not in CONVERSATION_TYPES:
        raise ValueError(f"unknown Teams conversation type {conversation_type!r}")
    stmt = _insert(session)(ConversationRef).values(
        conversation_id=conversation_id,
        tenant_id=tenant_id,
        service_url=service_url,
        conversation_type=conversation_type,
        reference=reference,
        updated_at=now,
        engagement_id=engagement_id,
        aad_object_id=aad_object_id.lower() if aad_object_id else None,
        team_id=team_id,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["conversation_id"],
        set_={
            "tenant_id": stmt.excluded.tenant_id,
            "service_url": stmt.excluded.service_url,
            "conversation_type": stmt.excluded.conversation_type,
            "reference": stmt.excluded.reference,
            "updated_at": stmt.excluded.updated_at,
            "engagement_id": func.coalesce(stmt.excluded.engagement_id, ConversationRef.engagement_id),
            "aad_object_id": func.coalesce(stmt.excluded.aad_object_id, ConversationRef.aad_object_id),
            "team_id": func.coalesce(stmt.excluded.team_id, ConversationRef.team_id),
        },
    )
    await session.execute(stmt)
    found = await by_conversation(session, conversation_id, fresh=True)
    assert found is not None
    return found


async def by_conversation(
    session: AsyncSession, conversation_id: str, *, fresh: bool = False
) -> ConversationRef | None:
    stmt = select(ConversationRef).where(ConversationRef.conversation_id == conversation_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def name_channel(session: AsyncSession, engagement_id: int, conversation_id: str, name: str) -> None:
    """Make a stored channel conversation the engagement's channel `name` (the review channel, at setup);
    the conversation that had the name before loses it, so a name means one channel."""
    await session.execute(
        update(ConversationRef)
        .where(
            ConversationRef.engagement_id == engagement_id,
            ConversationRef.channel_name == name,
            ConversationRef.conversation_id != conversation_id,
        )
        .values(channel_name=None)
    )
    await session.execute(
        update(ConversationRef)
        .where(ConversationRef.conversation_id == conversation_id)
        .values(channel_name=name, engagement_id=engagement_id)
    )


async def adopt_tenant(session: AsyncSession, tenant_id: str, engagement_id: int) -> int:
    """Give the tenant's conversations captured before it was linked (install, early 1:1 chats) their
    engagement; returns how many were adopted."""
    result = await session.execute(
        update(ConversationRef)
        .where(ConversationRef.tenant_id == tenant_id, ConversationRef.engagement_id.is_(None))
        .values(engagement_id=engagement_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def channel(session: AsyncSession, engagement_id: int, name: str) -> ConversationRef | None:
    """The engagement's channel called `name` (without '#'), if one was named in Teams."""
    stmt = (
        select(ConversationRef)
        .where(ConversationRef.engagement_id == engagement_id, ConversationRef.channel_name == name.lstrip("#"))
        .order_by(ConversationRef.updated_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def personal(session: AsyncSession, engagement_id: int, aad_object_id: str) -> ConversationRef | None:
    """The newest 1:1 chat of the bot with the user (an AAD object id) in the engagement's tenant."""
    stmt = (
        select(ConversationRef)
        .where(
            ConversationRef.engagement_id == engagement_id,
            ConversationRef.aad_object_id == aad_object_id.lower(),
            ConversationRef.conversation_type == PERSONAL,
        )
        .order_by(ConversationRef.updated_at.desc(), ConversationRef.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def in_team(session: AsyncSession, engagement_id: int) -> ConversationRef | None:
    """A conversation of the engagement to create new 1:1 chats from (its service URL, tenant and bot
    account): a team's channel first — the install's — else the most recent conversation of any kind."""
    stmt = (
        select(ConversationRef)
        .where(ConversationRef.engagement_id == engagement_id)
        .order_by(
            ConversationRef.team_id.is_(None),
            ConversationRef.updated_at.desc(),
            ConversationRef.id.desc(),
        )
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def record_sent(
    session: AsyncSession,
    delivery_key: str,
    conversation_id: str,
    activity_id: str,
    at: datetime,
    *,
    thread_id: str | None = None,
) -> None:
    """Remember that the ritual message `delivery_key` is Teams activity `activity_id` (once; a repeat of
    the same key keeps the first record)."""
    stmt = (
        _insert(session)(SentActivity)
        .values(
            delivery_key=delivery_key,
            conversation_id=conversation_id,
            activity_id=activity_id,
            thread_id=thread_id,
            at=at,
        )
        .on_conflict_do_nothing(index_elements=["delivery_key"])
    )
    await session.execute(stmt)


async def find_sent(session: AsyncSession, delivery_key: str) -> SentActivity | None:
    stmt = select(SentActivity).where(SentActivity.delivery_key == delivery_key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def delivery_of_activity(session: AsyncSession, engagement_id: int, activity_id: str) -> Delivery | None:
    """The ritual delivery a Teams activity is (a card action names its activity): the nudge whose
    "Still accurate" was pressed, the check-in whose status was set. None for a reply to a command."""
    stmt = (
        select(Delivery)
        .join(SentActivity, SentActivity.delivery_key == Delivery.key)
        .where(SentActivity.activity_id == activity_id, Delivery.engagement_id == engagement_id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def replace_payload(session: AsyncSession, delivery_id: int, payload: dict[str, Any]) -> None:
    """Keep what a sent message shows now (after a button on it worked), so the next change to the same
    message starts from it rather than from the original."""
    await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(payload=payload))
