"""What a ritual is, to the engine: a pure schedule ("given this engagement, when am I due?") and a
planner ("at this occurrence, which messages go to whom?").

Schedules are pure functions of the engagement facts, so DST, holidays and time zones are tested as
"given now, what is next" without running a scheduler. Planning runs inside the engine's transaction:
a ritual may record state there (a snapshot, a debrief row) and it commits atomically with the
deliveries it plans, so a crash never leaves half a fan-out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Text, cast, select
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


PERSON_COLUMNS = (
    Person.id,
    Person.key,
    Person.name,
    Person.role,
    Person.timezone,
    Person.manager_id,
    Person.active,
    Person.out_of_office,
)
PersonRow = tuple[int, str, str, str, str | None, int | None, bool, list[Any]]
ENGAGEMENT_COLUMNS = (
    *(c for c in Engagement.__table__.columns if c.key != "settings"),
    # The settings as stored, not decoded: the scheduler compares them on every heartbeat, and decoding
    # (and keeping) thousands of engagements' settings each minute is most of what that would cost.
    cast(Engagement.__table__.c.settings, Text),
)


def _facts_of(
    engagement: Engagement,
    people: Sequence[PersonRow],
    profile_tz: dict[int, str | None],
    days: Iterable[int],
    tasks: Sequence[tuple[str, int]],
) -> EngagementFacts:
    default_tz = engagement.timezone
    # A person's zone: the engagement file's, else their chat profile's (Slack `tz`), else the engagement's.
    facts_people = tuple(
        PersonFacts(
            id=pid,
            key=key,
            name=name,
            role=role,
            timezone=ZoneInfo(zone or profile_tz.get(pid) or default_tz),
            manager_id=manager_id,
            active=active,
            out_of_office=tuple((date.fromisoformat(r["from"]), date.fromisoformat(r["to"])) for r in ooo),
        )
        for pid, key, name, role, zone, manager_id, active, ooo in people
    )
    return EngagementFacts(
        engagement=engagement,
        settings=engagement_settings(engagement),
        people=facts_people,
        holidays=frozenset(date.fromisoformat(d) for d in engagement.holidays),
        deliverable_days=tuple(sorted(set(days))),
        handoff_due=tuple((key, engagement.exit_date - timedelta(days=n)) for key, n in tasks),
    )


async def load_facts(session: AsyncSession, engagement: Engagement) -> EngagementFacts:
    people = (
        await session.execute(select(*PERSON_COLUMNS).where(Person.engagement_id == engagement.id).order_by(Person.id))
    ).all()
    profile_tz = dict(
        (
            await session.execute(
                select(ChatIdentity.person_id, ChatIdentity.timezone)
                .where(ChatIdentity.engagement_id == engagement.id, ChatIdentity.timezone.is_not(None))
                .order_by(ChatIdentity.id)
            )
        ).all()
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
            select(HandoffTask.key, HandoffTask.due_days_before_exit)
            .where(HandoffTask.engagement_id == engagement.id)
            .order_by(HandoffTask.id)
        )
    ).all()
    return _facts_of(engagement, [_person_row(p) for p in people], profile_tz, days, [(k, n) for k, n in tasks])


def _person_row(row: Any) -> PersonRow:
    pid, key, name, role, zone, manager_id, active, ooo = row
    return (pid, key, name, role, zone, manager_id, active, ooo)


@dataclass
class FactsCache:
    """The facts of every engagement, for the scheduler: five queries however many engagements there
    are, and an engagement's facts are rebuilt only when a row they come from changed. An unchanged
    engagement gets the very same `EngagementFacts` object back, so whatever was computed from it (its
    schedule) can be kept while `facts is cached_facts`."""

    _known: dict[int, tuple[tuple[Any, ...], EngagementFacts]] = field(default_factory=dict)
    """Per engagement: the rows its facts were built from (the engagement's with a digest of its settings,
    its people, chat zones, deliverable days and hand-over tasks), and the facts."""

    async def load(self, session: AsyncSession) -> list[EngagementFacts]:
        """Every engagement's facts, ordered by slug."""
        rows = {
            row[0]: (*row[:-1], hashlib.blake2b(row[-1].encode(), digest_size=16).digest())
            for row in await session.execute(select(*ENGAGEMENT_COLUMNS).order_by(Engagement.slug))
        }
        people: dict[int, list[PersonRow]] = {}
        for row in await session.execute(
            select(Person.engagement_id, *PERSON_COLUMNS).order_by(Person.engagement_id, Person.id)
        ):
            people.setdefault(row[0], []).append(_person_row(row[1:]))
        zones: dict[int, list[tuple[int, str | None]]] = {}
        for engagement_id, person_id, zone in await session.execute(
            select(ChatIdentity.engagement_id, ChatIdentity.person_id, ChatIdentity.timezone)
            .where(ChatIdentity.timezone.is_not(None))
            .order_by(ChatIdentity.id)
        ):
            zones.setdefault(engagement_id, []).append((person_id, zone))
        days: dict[int, list[int]] = {}
        for engagement_id, day in await session.execute(
            select(PlanDeliverable.engagement_id, PlanDeliverable.milestone_day).distinct()
        ):
            days.setdefault(engagement_id, []).append(day)
        tasks: dict[int, list[tuple[str, int]]] = {}
        for engagement_id, key, before_exit in await session.execute(
            select(HandoffTask.engagement_id, HandoffTask.key, HandoffTask.due_days_before_exit).order_by(
                HandoffTask.id
            )
        ):
            tasks.setdefault(engagement_id, []).append((key, before_exit))
        inputs = {
            eid: (
                row,
                tuple(people.get(eid, ())),
                tuple(zones.get(eid, ())),
                tuple(sorted(days.get(eid, ()))),
                tuple(tasks.get(eid, ())),
            )
            for eid, row in rows.items()
        }
        changed = {
            eid for eid, fingerprint in inputs.items() if eid not in self._known or self._known[eid][0] != fingerprint
        }
        engagements: dict[int, Engagement] = {}
        ids = sorted(changed)
        for first in range(0, len(ids), 500):
            stmt = select(Engagement).where(Engagement.id.in_(ids[first : first + 500]))
            engagements.update((e.id, e) for e in (await session.execute(stmt)).scalars())
        known: dict[int, tuple[tuple[Any, ...], EngagementFacts]] = {}
        for eid, fingerprint in inputs.items():
            if eid in engagements:
                facts = _facts_of(
                    engagements[eid],
                    people.get(eid, []),
                    dict(zones.get(eid, [])),
                    days.get(eid, []),
                    tasks.get(eid, []),
                )
                known[eid] = (fingerprint, facts)
            elif eid not in changed:
                known[eid] = self._known[eid]
            # else: deleted between the two queries
        self._known = known
        return [known[eid][1] for eid in inputs if eid in known]


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
