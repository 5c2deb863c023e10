"""Queries for engagements, their people, identities and stages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatIdentity, Engagement, Person, Stage


async def get_engagement(session: AsyncSession, slug: str | None = None) -> Engagement | None:
    """The engagement with this slug; with no slug, the only one (None when there are none or several)."""
    if slug is not None:
        return (await session.execute(select(Engagement).where(Engagement.slug == slug))).scalar_one_or_none()
    rows = (await session.execute(select(Engagement).limit(2))).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def list_engagements(session: AsyncSession) -> Sequence[Engagement]:
    return (await session.execute(select(Engagement).order_by(Engagement.slug))).scalars().all()


async def people(session: AsyncSession, engagement_id: int, *, active_only: bool = True) -> Sequence[Person]:
    stmt = select(Person).where(Person.engagement_id == engagement_id).order_by(Person.name)
    if active_only:
        stmt = stmt.where(Person.active.is_(True))
    return (await session.execute(stmt)).scalars().all()


async def person_by_key(session: AsyncSession, engagement_id: int, key: str) -> Person | None:
    stmt = select(Person).where(Person.engagement_id == engagement_id, func.lower(Person.key) == key.lower())
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_people(session: AsyncSession, engagement_id: int, text: str) -> Sequence[Person]:
    """People matching a handle, an email, a full name or a unique first-name/prefix, case-insensitively."""
    needle = text.strip().lstrip("@").lower()
    if not needle:
        return []
    everyone = await people(session, engagement_id, active_only=False)
    for exact in (
        [p for p in everyone if p.key.lower() == needle],
        [p for p in everyone if (p.email or "").lower() == needle],
        [p for p in everyone if p.name.lower() == needle],
    ):
        if exact:
            return exact
    return [p for p in everyone if p.name.lower().startswith(needle) or p.key.lower().startswith(needle)]


async def person_by_identity(session: AsyncSession, engagement_id: int, platform: str, user_id: str) -> Person | None:
    stmt = (
        select(Person)
        .join(ChatIdentity, ChatIdentity.person_id == Person.id)
        .where(
            ChatIdentity.engagement_id == engagement_id,
            ChatIdentity.platform == platform,
            ChatIdentity.user_id == user_id,
        )
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def identities(session: AsyncSession, person_id: int) -> dict[str, str]:
    rows = await session.execute(
        select(ChatIdentity.platform, ChatIdentity.user_id).where(ChatIdentity.person_id == person_id)
    )
    return {platform: user_id for platform, user_id in rows.all()}


async def stages(session: AsyncSession, engagement_id: int) -> Sequence[Stage]:
    stmt = select(Stage).where(Stage.engagement_id == engagement_id).order_by(Stage.position)
    return (await session.execute(stmt)).scalars().all()
