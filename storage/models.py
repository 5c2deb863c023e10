"""The database schema: what the engagement remembers.

Everything a person submits is kept: deals change only through `DealHistory` rows written in the same
transaction, and every attempted change (accepted, rejected or denied) lands in `AuditLog` with the
raw input, so nothing typed in chat is ever lost. Times are aware UTC (`UTCDateTime`); money is
`Money` (exact cents). Enumerations are plain strings validated by the domain, which keeps migrations
identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import Money, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Default for created/updated columns; domain code passes the injected clock's time instead."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Role(StrEnum):
    CRO = "cro"
    FOUNDER = "founder"
    MANAGER = "manager"
    REP = "rep"


class StageKind(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ForecastCategory(StrEnum):
    COMMIT = "commit"
    BEST_CASE = "best_case"
    PIPELINE = "pipeline"
    OMITTED = "omitted"


class Engagement(Base):
    """One client company: its calendar, quota and ritual settings (the engagement file, applied)."""

    __tablename__ = "engagement"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    company: Mapped[str] = mapped_column(String(200))
    start_date: Mapped[date] = mapped_column(Date)
    exit_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    quota_per_quarter: Mapped[Decimal]
    fiscal_year_start_month: Mapped[int] = mapped_column(Integer, default=1)
    holidays: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Person(Base):
    """Someone in the engagement. `key` is the short handle used in the engagement file and commands."""

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("engagement_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    out_of_office: Mapped[list[Any]] = mapped_column(default=list)


class ChatIdentity(Base):
    """Who a person is on a chat platform (Slack user id, Teams AAD object id, console handle)."""

    __tablename__ = "chat_identity"
    __table_args__ = (UniqueConstraint("engagement_id", "platform", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(128))


class Stage(Base):
    """A pipeline stage as the engagement defines it, with the buyer-behaviour criteria to enter/leave."""

    __tablename__ = "stage"
    __table_args__ = (UniqueConstraint("engagement_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer)
    probability_pct: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    entry_criteria: Mapped[str] = mapped_column(Text, default="")
    exit_criteria: Mapped[str] = mapped_column(Text, default="")
    crm_names: Mapped[list[Any]] = mapped_column(default=list)


class Deal(Base):
    """An opportunity. `version` guards against lost updates: a write with a stale version fails."""

    __tablename__ = "deal"
    __table_args__ = (
        UniqueConstraint("engagement_id", "crm_id"),
        Index("ix_deal_engagement_close", "engagement_id", "close_date"),
        Index("ix_deal_engagement_owner", "engagement_id", "owner_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    crm_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("stage.id"))
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    amount: Mapped[Decimal | None]
    currency: Mapped[str] = mapped_column(String(3))
    close_date: Mapped[date | None] = mapped_column(Date)
    forecast_category: Mapped[str] = mapped_column(String(16), default=ForecastCategory.PIPELINE.value)
    next_step: Mapped[str | None] = mapped_column(Text)
    next_step_date: Mapped[date | None] = mapped_column(Date)
    risk: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(120))
    segment: Mapped[str | None] = mapped_column(String(120))
    loss_reason: Mapped[str | None] = mapped_column(String(200))
    competitor: Mapped[str | None] = mapped_column(String(200))
    created_on: Mapped[date] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    slip_count: Mapped[int] = mapped_column(Integer, default=0)
    stage_changed_at: Mapped[datetime]
    touched_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class DealHistory(Base):
    """Append-only: one row per accepted change, with each field's before and after and its channel."""

    __tablename__ = "deal_history"
    __table_args__ = (Index("ix_deal_history_deal_at", "deal_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deal.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Every attempted change by anyone, including rejected and denied ones, with the raw input."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_engagement_at", "engagement_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int | None] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_ref: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PlanDeliverable(Base):
    """A 30/60/90 deliverable with its owner and latest reported status."""

    __tablename__ = "plan_deliverable"
    __table_args__ = (UniqueConstraint("engagement_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(32))
    milestone_day: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    status: Mapped[str] = mapped_column(String(16), default="not_started")
    status_note: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[datetime | None]
    position: Mapped[int] = mapped_column(Integer, default=0)


class HandoffTask(Base):
    """A responsibility moving from the CRO to an internal owner before the exit date."""

    __tablename__ = "handoff_task"
    __table_args__ = (UniqueConstraint("engagement_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    from_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    to_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    ritual: Mapped[str | None] = mapped_column(String(32))
    due_days_before_exit: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    status_note: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[datetime | None]
    position: Mapped[int] = mapped_column(Integer, default=0)
