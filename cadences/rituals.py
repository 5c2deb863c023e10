"""What a ritual is, to the engine: a pure schedule ("given this engagement, when am I due?") and a
planner ("at this occurrence, which messages go to whom?").

Schedules are pure functions of the engagement facts, so DST, holidays and time zones are tested as
"given now, what is next" without running a scheduler. Planning runs inside the engine's transaction:
a ritual may record state there (a snapshot, a debrief row) and it commits atomically with the
deliveries it plans, so a crash never leaves half a fan-out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.engagement_file import RitualSettings, engagement_settings
from cadences.messages import Message
from storage.models import ChatIdentity, Engagement, HandoffTask, Occurrence, Person, PlanDeliverable, Role


def at_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time. On a fall-back day the first of the two instants is
    used, so a ritual fires once; in a spring-forward gap the time moves forward by the gap."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class PersonFacts:
    id: int
    key: str
    name: str
    role: str
    timezone: ZoneInfo
    manager_id: int | None
    active: bool
    out_of_office: tuple[tuple[date, date], ...] = ()

    def away_on(self, day: date) -> bool:
        return any(start <= day <= end for start, end in self.out_of_office)


@dataclass(frozen=True)
class EngagementFacts:
    """Everything a schedule needs, loaded once per tick: pure data, no session."""

    engagement: Engagement
    settings: RitualSettings
    people: tuple[PersonFacts, ...]
    holidays: frozenset[date]
    deliverable_days: tuple[int, ...] = ()
    handoff_due: tuple[tuple[str, date], ...] = ()

    @property
    def id(self) -> int:
        return self.engagement.id

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.engagement.timezone)

    def person(self, ident: int | str | None) -> PersonFacts | None:
        return next((p for p in self.people if ident in (p.id, p.key)), None)

    def with_role(self, role: Role) -> list[PersonFacts]:
        return [p for p in self.people if p.role == role and p.active]

    @property
    def cro(self) -> PersonFacts | None:
        return next(iter(self.with_role(Role.CRO)), None)

    def local(self, day: date, at: time) -> datetime:
        return at_local(day, at, self.tz)

    def day_of_engagement(self, day: date) -> int:
        return (day - self.engagement.start_date).days + 1


async def load_facts(session: AsyncSession, engagement: Engagement) -> EngagementFacts:
    people = (await session.execute(select(Person).where(Person.engagement_id == engagement.id))).scalars().all()
    default_tz = engagement.timezone
    # A person's zone: the engagement file's, else their chat profile's (Slack `tz`), else the engagement's.
    profile_tz = dict(
        (
            await session.execute(
                select(ChatIdentity.person_id, ChatIdentity.timezone)
                .where(ChatIdentity.engagement_id == engagement.id, ChatIdentity.timezone.is_not(None))
                .order_by(ChatIdentity.id)
            )
        ).all()
    )
    facts_people = tuple(
        PersonFacts(
            id=p.id,
            key=p.key,
            name=p.name,
            role=p.role,
            timezone=ZoneInfo(p.timezone or profile_tz.get(p.id) or default_tz),
            manager_id=p.manager_id,
            active=p.active,
            out_of_office=tuple((date.fromisoformat(r["from"]), date.fromisoformat(r["to"])) for r in p.out_of_office),
        )
        for p in people
    )
    days = (
        (
            await session.execute(
                select(PlanDeliverable.milestone_day).where(PlanDeliverable.engagement_id == engagement.id).distinct()
            )
        )
        .scalars()
        .all()
    )
    tasks = (
        await session.execute(
            select(HandoffTask.key, HandoffTask.due_days_before_exit).where(HandoffTask.engagement_id == engagement.id)
        )
    ).all()
    return EngagementFacts(
        engagement=engagement,
        settings=engagement_settings(engagement),
        people=facts_people,
        holidays=frozenset(date.fromisoformat(d) for d in engagement.holidays),
        deliverable_days=tuple(sorted(days)),
        handoff_due=tuple((key, engagement.exit_date - timedelta(days=n)) for key, n in tasks),
    )


@dataclass(frozen=True)
class Due:
    """One occurrence a schedule says is due: unique by (ritual, period) within the engagement."""

    ritual: str
    period: str
    due_at: datetime
    grace: timedelta
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipient:
    kind: Literal["person", "channel"]
    ref: str  # a person id (as text) or a channel name

    @classmethod
    def person(cls, person_id: int) -> Recipient:
        return cls("person", str(person_id))

    @classmethod
    def channel(cls, name: str) -> Recipient:
        return cls("channel", name.lstrip("#"))

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"


@dataclass(frozen=True)
class Outgoing:
    """A message a ritual wants sent. `thread_of` names the purpose of a parent message in the same
    occurrence (the review post) under which this one is a thread reply."""

    recipient: Recipient
    purpose: str
    message: Message
    subject: str | None = None
    thread_of: str | None = None


@dataclass
class RitualRun:
    """The planning call's view: the transaction, the facts, the occurrence and the (injected) time."""

    session: AsyncSession
    facts: EngagementFacts
    occurrence: Occurrence
    now: datetime

    @property
    def today(self) -> date:
        return self.now.astimezone(self.facts.tz).date()


class Ritual(Protocol):
    name: str

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        """Occurrences due in [start, end), pure: no I/O, no clock."""
        ...

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        """The messages for this occurrence; may record state in `run.session`."""
        ...


def daily(start: datetime, end: datetime, tz: ZoneInfo) -> Iterable[date]:
    """Every local date whose day overlaps [start, end), with a day's margin for time zones."""
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def in_window(due: Due, start: datetime, end: datetime) -> bool:
    return start <= due.due_at < end
