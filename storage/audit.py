"""The audit log: every attempted change by anyone, accepted or not, with what they typed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog


def record(
    session: AsyncSession,
    *,
    at: datetime,
    channel: str,
    action: str,
    outcome: str,
    engagement_id: int | None,
    actor_id: int | None = None,
    actor_ref: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the session's transaction (the caller commits it with, or without, the change)."""
    row = AuditLog(
        engagement_id=engagement_id,
        actor_id=actor_id,
        actor_ref=actor_ref,
        at=at,
        channel=channel,
        action=action,
        outcome=outcome,
        target=target,
        detail=detail or {},
    )
    session.add(row)
    return row
