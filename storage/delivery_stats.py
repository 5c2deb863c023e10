"""Delivery counts for monitoring (`GET /metrics`): one GROUP BY over the delivery table, per scrape.

The counts are the database's, so every process reports the same totals: they are what the whole
deployment did, not what one process did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Delivery, Occurrence

PENDING = ("pending", "sending")
"""Statuses of a delivery not yet settled: waiting for its time, or claimed by a process that is sending."""


@dataclass(frozen=True)
class DeliveryCount:
    ritual: str
    status: str
    count: int


async def deliveries_by_ritual(session: AsyncSession) -> Sequence[DeliveryCount]:
    """How many deliveries each ritual has in each status (sent, failed, skipped, pending, sending)."""
    stmt = (
        select(Occurrence.ritual, Delivery.status, func.count(Delivery.id))
        .join(Occurrence, Occurrence.id == Delivery.occurrence_id)
        .group_by(Occurrence.ritual, Delivery.status)
        .order_by(Occurrence.ritual, Delivery.status)
    )
    return [DeliveryCount(ritual, status, int(n)) for ritual, status, n in (await session.execute(stmt)).all()]
