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
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.secrets import EncryptedText
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
    timezone: Mapped[str | None] = mapped_column(String(64))
    """The zone from the platform's profile (Slack's `tz`); the engagement file's zone wins over it."""


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
    __table_args__ = (
        Index("ix_deal_history_deal_at", "deal_id", "at"),
        # What moved since the last review is a range of one engagement's history by time.
        Index("ix_deal_history_engagement_at", "engagement_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
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


# --- the cadence engine: occurrences, deliveries and what the rituals record ---------------------------


class Occurrence(Base):
    """One firing of a ritual for one period. The unique key makes a second firing a no-op."""

    __tablename__ = "occurrence"
    __table_args__ = (
        UniqueConstraint("engagement_id", "ritual", "period"),
        Index("ix_occurrence_status_due", "status", "due_at"),
        # The tick reads the recent occurrences of the engagements with something due.
        Index("ix_occurrence_engagement_due", "engagement_id", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    ritual: Mapped[str] = mapped_column(String(48))
    period: Mapped[str] = mapped_column(String(120))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, planned, skipped
    host_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    skip_reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    planned_at: Mapped[datetime | None]


class Delivery(Base):
    """One message to send for an occurrence. `key` travels with the message (Slack metadata, Teams
    channelData) so that after a crash the platform can be asked whether it already went out."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("occurrence_id", "recipient", "purpose"),
        Index("ix_delivery_status", "status", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("occurrence.id", ondelete="CASCADE"))
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(120))  # "person:<id>" or "channel:<name>"
    purpose: Mapped[str] = mapped_column(String(120))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sending, sent, failed, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    platform: Mapped[str | None] = mapped_column(String(16))
    ref: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(120))  # what the message is about, e.g. "deal:12"


class Attachment(Base):
    """Binary content a message refers to by key (the digest chart), so any process can upload it."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    mime: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class ActionItem(Base):
    """A to-do agreed in the review (or in a deal thread): owner, due date, carried until done."""

    __tablename__ = "action_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deal.id", ondelete="SET NULL"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    text: Mapped[str] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, done, dropped
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(32))
    done_at: Mapped[datetime | None]


class Decision(Base):
    """A decision recorded during or after the review, against a deal or the pipeline as a whole."""

    __tablename__ = "decision"

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deal.id", ondelete="SET NULL"))
    occurrence_id: Mapped[int | None] = mapped_column(ForeignKey("occurrence.id", ondelete="SET NULL"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class ForecastCall(Base):
    """The forecast owner's call for a quarter (commit and best case), one row per submission."""

    __tablename__ = "forecast_call"
    __table_args__ = (Index("ix_forecast_call_quarter", "engagement_id", "quarter", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    quarter: Mapped[str] = mapped_column(String(16))
    commit: Mapped[Decimal]
    best_case: Mapped[Decimal]
    by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class Debrief(Base):
    """A coaching debrief prompted by a deal event; the trigger key makes each prompt happen once."""

    __tablename__ = "debrief"
    __table_args__ = (UniqueConstraint("deal_id", "trigger", "trigger_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deal.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    trigger: Mapped[str] = mapped_column(String(16))  # won, lost, slipped, stalled, regressed
    trigger_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, answered, escalated
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    escalated_to_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))


class PipelineSnapshot(Base):
    """The pipeline's totals at each review, for week-over-week charts and forecast accuracy."""

    __tablename__ = "pipeline_snapshot"
    __table_args__ = (UniqueConstraint("engagement_id", "week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    week: Mapped[str] = mapped_column(String(10))
    taken_at: Mapped[datetime]
    totals: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- chat platforms: installed workspaces, linked channels, inbound retries, OAuth state ------------------


class ChatWorkspace(Base):
    """A chat workspace the bot is installed in (a Slack team) and the engagement it serves.

    One deployment serves several clients: each workspace is linked to one engagement by its CRO
    (`/cadence setup <slug>`). `bot_token` is NULL in single-workspace mode (the token comes from the
    environment) and after an uninstall, when the token is deleted and `active` turns False.
    """

    __tablename__ = "chat_workspace"
    __table_args__ = (
        UniqueConstraint("platform", "workspace_id"),
        Index("ix_chat_workspace_engagement", "engagement_id", "platform"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    enterprise_id: Mapped[str | None] = mapped_column(String(64))
    engagement_id: Mapped[int | None] = mapped_column(ForeignKey("engagement.id", ondelete="SET NULL"))
    app_id: Mapped[str | None] = mapped_column(String(64))
    bot_id: Mapped[str | None] = mapped_column(String(64))
    bot_token: Mapped[str | None] = mapped_column(EncryptedText)
    """Sealed at rest with CADENCE_SECRET_KEY (storage/secrets.py); reads and writes see the token."""
    bot_user_id: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(Text, default="")
    installed_by_user_id: Mapped[str | None] = mapped_column(String(64))
    installed_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ChatChannel(Base):
    """Which platform channel an engagement's named channel is (`pipeline-review` -> Slack C0123)."""

    __tablename__ = "chat_channel"
    __table_args__ = (UniqueConstraint("engagement_id", "platform", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(ForeignKey("engagement.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    channel_id: Mapped[str] = mapped_column(String(64))


class InboundEvent(Base):
    """An event id seen from a platform: the unique key makes a retried delivery a no-op in any process."""

    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("platform", "event_id"),
        Index("ix_inbound_event_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime]


class OAuthState(Base):
    """A one-time OAuth `state` value issued at /slack/install and consumed at the redirect."""

    __tablename__ = "oauth_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(128), unique=True)
    expires_at: Mapped[datetime]


# --- Microsoft Teams: where the bot can post, and what it posted ------------------------------------


class ConversationRef(Base):
    """A Teams conversation the bot may post to: a person's 1:1 chat, a channel or a group chat.

    Proactive messages need the conversation's service URL and tenant, which only arrive with an activity
    from Teams (an install, a message), so every one is kept here — never only in memory, or a restart
    would leave the rituals with nowhere to post. `reference` is the Bot Framework conversation reference
    as JSON; the columns beside it are what the bot looks a conversation up by. `channel_name` is the
    engagement's name for a channel (`pipeline-review`), set by `cadence setup` typed there.
    """

    __tablename__ = "conversation_ref"
    __table_args__ = (
        Index("ix_conversation_ref_engagement_channel", "engagement_id", "channel_name"),
        Index("ix_conversation_ref_user", "aad_object_id", "conversation_type"),
        Index("ix_conversation_ref_tenant", "tenant_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int | None] = mapped_column(ForeignKey("engagement.id", ondelete="SET NULL"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    service_url: Mapped[str] = mapped_column(String(500))
    conversation_id: Mapped[str] = mapped_column(String(400), unique=True)
    conversation_type: Mapped[str] = mapped_column(String(16))  # personal, channel, groupChat
    channel_name: Mapped[str | None] = mapped_column(String(120))
    aad_object_id: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(400))
    reference: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class SentActivity(Base):
    """A ritual message posted in Teams under its delivery key. Teams cannot be searched for a message by
    a key it carries, so the key is written here the moment Teams returns the activity id: after a
    crash between posting and recording the delivery, the engine finds it here and does not post twice.
    A card action names the activity it came from, which leads back to the delivery it belongs to."""

    __tablename__ = "sent_activity"
    __table_args__ = (Index("ix_sent_activity_activity", "activity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(200), unique=True)
    conversation_id: Mapped[str] = mapped_column(String(400))
    activity_id: Mapped[str] = mapped_column(String(200))
    thread_id: Mapped[str | None] = mapped_column(String(200))
    """The root of the channel thread the activity was posted in (None: top level, or a 1:1 chat)."""
    at: Mapped[datetime]


# --- request hygiene ---------------------------------------------------------------------------------------


class CommandRate(Base):
    """How many commands one person ran in one minute on one platform workspace: the per-user rate limit,
    shared by every process through the unique key and an atomic increment (`storage/command_rates.py`)."""

    __tablename__ = "command_rate"
    __table_args__ = (
        UniqueConstraint("platform", "workspace_id", "user_id", "window_start"),
        Index("ix_command_rate_window_start", "window_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer)


# --- platform rate limits --------------------------------------------------------------------------------


class RateSlot(Base):
    """One rate-limit bucket shared by every process (a Slack channel's posts, a workspace's posts, its DM
    opens): its theoretical arrival time in seconds since the epoch, moved on by each reservation under a
    row lock (`storage/rate_limits.py`)."""

    __tablename__ = "rate_slot"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tat: Mapped[float] = mapped_column(Double)
