"""Queries for deals and their history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Deal, DealHistory


async def deal_names(session: AsyncSession, engagement_id: int, *, open_only: bool = False) -> list[tuple[int, str]]:
    """(id, name) pairs: just enough to resolve what someone typed without loading whole deals."""
    stmt = select(Deal.id, Deal.name).where(Deal.engagement_id == engagement_id)
    if open_only:
        stmt = stmt.where(Deal.is_open.is_(True))
    return [(i, n) for i, n in (await session.execute(stmt)).all()]


async def get_deal(session: AsyncSession, engagement_id: int, deal_id: int) -> Deal | None:
    stmt = select(Deal).where(Deal.engagement_id == engagement_id, Deal.id == deal_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def deal_by_crm_id(session: AsyncSession, engagement_id: int, crm_id: str) -> Deal | None:
    stmt = select(Deal).where(Deal.engagement_id == engagement_id, Deal.crm_id == crm_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_deals_of(session: AsyncSession, engagement_id: int, owner_id: int) -> Sequence[Deal]:
    stmt = (
        select(Deal)
        .where(Deal.engagement_id == engagement_id, Deal.owner_id == owner_id, Deal.is_open.is_(True))
        .order_by(Deal.close_date.is_(None), Deal.close_date, Deal.name)
    )
    return (await session.execute(stmt)).scalars().all()


async def editable_deals(
    session: AsyncSession, engagement_id: int, *, owner_id: int | None, search: str = "", limit: int = 100
) -> tuple[Sequence[Deal], int]:
    """The open deals a deal form offers, by name, at most `limit`, and how many there are in all (a
    picker shows a search box when they do not fit). `owner_id` narrows them to one owner's — the caller
    decides whose deals a person may change; `search` keeps the names containing it (any case)."""
    stmt = select(Deal).where(Deal.engagement_id == engagement_id, Deal.is_open.is_(True))
    if owner_id is not None:
        stmt = stmt.where(Deal.owner_id == owner_id)
    if search.strip():
        stmt = stmt.where(func.lower(Deal.name).contains(search.strip().lower(), autoescape=True))
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    deals = (await session.execute(stmt.order_by(func.lower(Deal.name)).limit(limit))).scalars().all()
    return deals, total


async def history(session: AsyncSession, deal_id: int, limit: int = 20) -> Sequence[DealHistory]:
    stmt = select(DealHistory).where(DealHistory.deal_id == deal_id).order_by(DealHistory.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def count_deals(session: AsyncSession, engagement_id: int) -> int:
    return (await session.execute(select(func.count(Deal.id)).where(Deal.engagement_id == engagement_id))).scalar_one()
