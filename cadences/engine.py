"""The cadence engine: turns due rituals into occurrences, occurrences into deliveries, and delivers
them exactly once — with the database as the arbiter, whatever the clock, the restarts or the number
of bot processes.

- An occurrence row is unique by (engagement, ritual, period): a second firing of the same occurrence
  (restart, DST fall-back, another process) finds it and does nothing.
- Planning runs under a row lock (SQLite: BEGIN IMMEDIATE); the deliveries it plans commit with the
  occurrence's status in one transaction, so a crash never leaves half a fan-out.
- A delivery is claimed with a lease before sending. A claim whose lease ran out (its process died) is
  taken over; before sending again the engine asks the port whether the message already went out (every
  message carries its delivery key), and only sends when the platform says it did not.
- A ritual missed by less than its grace runs late once; a longer miss is recorded as skipped and the
  CRO gets one line about it.
- Sending is sequential by default. With `concurrency` > 1 a process keeps that many sends in flight
  (a Monday's fan-out then waits on the platform's rate limits, not on one send after another), at most
  `per_engagement` DMs and as many channel posts of one engagement, so that one workspace's backlog —
  waiting for its rate limit — neither crowds out the others nor waits, claimed, longer than its lease;
  DMs and channel posts are limited apart because platforms limit them apart (opening a DM, posting in
  a channel), so a review and its thread never queue behind a hundred nudges. Sends to one recipient
  stay in the order they were claimed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cadences.clock import Clock
from cadences.messages import Message, Paragraph
from cadences.ports import ChatPort, DeliveryFailed, SentRef, Target
from cadences.rituals import (
    Due,
    EngagementFacts,
    FactsCache,
    Outgoing,
    Recipient,
    Ritual,
    RitualRun,
    load_facts,
)
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Delivery, Engagement, Occurrence, Person

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=14)
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 6
MAX_PLAN_ERRORS = 3
MISSED = "missed_notice"
UNREACHABLE = "unreachable_notice"

SCHEDULE_AHEAD = timedelta(days=2)
"""How far past what was asked an engagement's schedule is computed when it must be: computing costs
about the same for a day as for a week (it is per ritual more than per due), so one computation serves
the ticks and wake-ups of the next two days, while the dues kept in memory stay few."""
INSERT_BATCH = 500
"""Occurrences per INSERT at a tick: a batch due in one minute is a few statements, not one per row."""
KNOWN_BATCH = 500
"""Engagements per query when the tick reads which occurrences already exist."""

PortFor = Callable[[Engagement], ChatPort]


def _occurrence_row(
    engagement_id: int, due: Due, now: datetime, *, status: str, reason: str | None, host_id: int | None = None
) -> dict[str, Any]:
    return dict(
        engagement_id=engagement_id,
        ritual=due.ritual,
        period=due.period,
        due_at=due.due_at,
        status=status,
        skip_reason=reason,
        detail=due.detail,
        created_at=now,
        host_id=host_id,
    )


def _due_at(due: Due) -> datetime:
    return due.due_at


@dataclass
class _Schedule:
    """One engagement's dues as this process computed them, kept while its facts are the same object
    (`FactsCache` hands back the same object until a row they come from changes): every due in
    [start, end), in due order. Every due in the `settled` interval has its occurrence, no longer
    pending, so a tick need not look at it again (and once behind the ticks it is forgotten). Only
    memory: a restart computes it afresh, and the database still decides what ran."""

    facts: EngagementFacts
    start: datetime
    end: datetime
    dues: list[Due]
    settled: tuple[datetime, datetime] | None = None

    def covers(self, facts: EngagementFacts, start: datetime, end: datetime) -> bool:
        return self.facts is facts and self.start <= start and end <= self.end

    def between(self, start: datetime, end: datetime) -> list[Due]:
        return self.dues[bisect_left(self.dues, start, key=_due_at) : bisect_left(self.dues, end, key=_due_at)]

    def forget_before(self, until: datetime) -> None:
        if until > self.start:
            self.dues = self.dues[bisect_left(self.dues, until, key=_due_at) :]
            self.start = until

    def unsettled_from(self, start: datetime) -> tuple[datetime, datetime]:
        """Where a tick whose window begins at `start` must begin looking, and where the settled interval
        would then begin: past the settled interval when `start` falls in it; else at `start` (the first
        tick, a clock moved back, or a gap longer than the lookback)."""
        if self.settled is not None and self.settled[0] <= start <= self.settled[1]:
            return self.settled[1], self.settled[0]
        return start, start

    def settle(self, since: datetime, until: datetime) -> None:
        """Everything due in [since, until) is recorded and planned (or skipped)."""
        if self.settled is not None and self.settled[0] <= since <= self.settled[1]:
            since, until = self.settled[0], max(until, self.settled[1])
        self.settled = (since, until)
        self.forget_before(until)


@dataclass
class _Work:
    """One engagement's unsettled dues at a tick, with the occurrences already recorded for them."""

    facts: EngagementFacts
    schedule: _Schedule
    since: datetime
    start: datetime
    end: datetime
    dues: list[Due]
    known: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def delivery_key(engagement: Engagement, occurrence: Occurrence, recipient: Recipient, purpose: str) -> str:
    """A stable key: the same occurrence, recipient and purpose always give the same key, in any process."""
    raw = f"{engagement.slug}/{occurrence.ritual}/{occurrence.period}/{recipient}/{purpose}"
    return raw if len(raw) <= 190 else raw[:150] + "#" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class TickReport:
    created: int = 0
    planned: int = 0
    skipped: list[str] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


@dataclass
class Claimed:
    delivery: Delivery
    reclaimed: bool


class Engine:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        rituals: Sequence[Ritual],
        port_for: PortFor,
        *,
        worker: str | None = None,
        concurrency: int = 1,
        per_engagement: int = 10,
    ) -> None:
        """`concurrency`: deliveries this process sends at once (1: one after another, in id order);
        `per_engagement`: at most that many DMs, and that many channel posts, of one engagement."""
        if concurrency < 1 or per_engagement < 1:
            raise ValueError("concurrency and per_engagement must be at least 1")
        self.db = db
        self.clock = clock
        self.rituals = {r.name: r for r in rituals}
        self.port_for = port_for
        self.worker = worker or worker_name()
        self.concurrency = concurrency
        self.per_engagement = per_engagement
        self._facts = FactsCache()
        self._schedules: dict[int, _Schedule] = {}

    # --- schedule ---------------------------------------------------------------------------------

    async def _all_facts(self) -> list[EngagementFacts]:
        async with self.db.session() as session:
            found = await self._facts.load(session)
        live = {facts.id for facts in found}
        self._schedules = {k: v for k, v in self._schedules.items() if k in live}
        return found

    def dues(self, facts: EngagementFacts, start: datetime, end: datetime) -> list[Due]:
        found: list[Due] = []
        for ritual in self.rituals.values():
            found += [d for d in ritual.due_between(facts, start, end) if start <= d.due_at < end]
        return sorted(found, key=lambda d: (d.due_at, d.ritual, d.period))

    def _schedule(
        self, facts: EngagementFacts, start: datetime, end: datetime, *, since: datetime | None = None
    ) -> _Schedule:
        """The engagement's dues over [start, end): from memory while its facts are unchanged and the
        window is covered, else computed — from `since` (default `start`), or from what was kept if the
        facts did not change, to `SCHEDULE_AHEAD` past the end — and kept."""
        cached = self._schedules.get(facts.id)
        if cached is not None and cached.covers(facts, start, end):
            return cached
        lo, hi = min(start, since or start), end + SCHEDULE_AHEAD
        same = cached is not None and cached.facts is facts
        if cached is not None and same:
            lo, hi = min(lo, cached.start), max(hi, cached.end)
        schedule = _Schedule(facts, lo, hi, self.dues(facts, lo, hi))
        if cached is not None and same and cached.settled is not None:
            schedule.settled = cached.settled
            schedule.forget_before(min(cached.settled[1], start))
        self._schedules[facts.id] = schedule
        return schedule

    async def next_wakeup(self, after: datetime, horizon: timedelta = timedelta(days=8)) -> datetime | None:
        """The next instant any ritual of any engagement is due, strictly after `after`."""
        start, end = after + timedelta(microseconds=1), after + horizon
        soonest: datetime | None = None
        for facts in await self._all_facts():
            # An engagement seen for the first time is computed back to the lookback too, so the first
            # tick finds what it must check for downtime already there.
            since = max(facts.engagement.created_at, after - LOOKBACK)
            found = self._schedule(facts, start, end, since=since).between(start, end)
            if found:
                soonest = found[0].due_at if soonest is None else min(soonest, found[0].due_at)
        return soonest

    async def upcoming(self, engagement: Engagement, after: datetime, horizon: timedelta) -> list[Due]:
        async with self.db.session() as session:
            facts = await load_facts(session, engagement)
        return self.dues(facts, after, after + horizon)

    # --- the tick ---------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Create and plan every occurrence due by `now`, then deliver what is pending. Idempotent.

        Every engagement's due occurrences are created first, in a few multi-row inserts, and only then
        planned: a batch due in the same minute (every engagement's Monday review) is recorded at once,
        not one engagement's planning after another."""
        now = now or self.clock.now()
        report = TickReport()
        await self._create_and_plan(await self._all_facts(), now, report)
        sent, failed = await self.deliver(now)
        report.sent, report.failed = sent, failed
        return report

    async def _tick_engagement(self, facts: EngagementFacts, now: datetime, report: TickReport) -> None:
        """Create and plan one engagement's due occurrences, without delivering them."""
        await self._create_and_plan([facts], now, report)

    async def _create_and_plan(self, all_facts: Sequence[EngagementFacts], now: datetime, report: TickReport) -> None:
        work = await self._due_now(all_facts, now)
        created = await self._insert_many([row for item in work for row in self._new_rows(item, now)])
        for item in work:
            await self._run(item, created, now, report)

    async def _due_now(self, all_facts: Sequence[EngagementFacts], now: datetime) -> list[_Work]:
        """Per engagement, the dues in its lookback window up to `now` that are not settled yet, with the
        occurrences already recorded for them (one query per few hundred engagements)."""
        end = now + timedelta(microseconds=1)
        work: list[_Work] = []
        for facts in all_facts:
            start = since = max(facts.engagement.created_at, now - LOOKBACK)
            cached = self._schedules.get(facts.id)
            if cached is not None and cached.facts is facts:
                start, since = cached.unsettled_from(start)
            schedule = self._schedule(facts, start, end)
            dues = schedule.between(start, end)
            if dues:
                work.append(_Work(facts, schedule, since, start, end, dues))
            else:
                schedule.settle(since, end)
        for first in range(0, len(work), KNOWN_BATCH):
            chunk = {item.facts.id: item for item in work[first : first + KNOWN_BATCH]}
            since = min(item.start for item in chunk.values()) - timedelta(days=1)
            async with self.db.session() as session:
                rows = await session.execute(
                    select(
                        Occurrence.engagement_id,
                        Occurrence.ritual,
                        Occurrence.period,
                        Occurrence.status,
                        Occurrence.id,
                        Occurrence.due_at,
                    ).where(Occurrence.engagement_id.in_(list(chunk)), Occurrence.due_at >= since)
                )
                for engagement_id, ritual, period, status, occ_id, due_at in rows.all():
                    item = chunk[engagement_id]
                    if due_at >= item.start - timedelta(days=1):
                        item.known[(ritual, period)] = (status, occ_id)
        return work

    def _verdict(self, facts: EngagementFacts, due: Due, now: datetime) -> tuple[str, str | None]:
        """How a due without an occurrence is recorded: ("pending", None), or skipped with the reason."""
        late = now - due.due_at
        if facts.engagement.paused:
            return "skipped", "cadence paused"
        if late > due.grace:
            return "skipped", f"missed by {_human(late)} (grace {_human(due.grace)})"
        return "pending", None

    def _new_rows(self, item: _Work, now: datetime) -> list[dict[str, Any]]:
        rows = []
        for due in item.dues:
            if (due.ritual, due.period) not in item.known:
                status, reason = self._verdict(item.facts, due, now)
                rows.append(_occurrence_row(item.facts.id, due, now, status=status, reason=reason))
        return rows

    async def _run(
        self, item: _Work, created: dict[tuple[int, str, str], int], now: datetime, report: TickReport
    ) -> None:
        """Plan one engagement's pending occurrences in due order, tell the CRO about missed ones, and
        remember up to when everything is settled."""
        facts = item.facts
        missed: list[Due] = []
        unsettled: list[Due] = []
        for due in item.dues:
            status, occ_id = item.known.get((due.ritual, due.period), (None, None))
            if status is None:
                occ_id = created.get((facts.id, due.ritual, due.period))
                if occ_id is None:  # another process recorded it meanwhile: look again next tick
                    unsettled.append(due)
                    continue
                verdict, _ = self._verdict(facts, due, now)
                if verdict == "skipped":
                    if not facts.engagement.paused:
                        missed.append(due)
                    continue
                report.created += 1
                status = "pending"
            if status == "pending" and occ_id is not None:
                if await self.plan(occ_id, now):
                    report.planned += 1
                else:
                    unsettled.append(due)
        item.schedule.settle(item.since, min((d.due_at for d in unsettled), default=item.end))
        if missed and facts.cro is not None:
            report.skipped += [f"{d.ritual}/{d.period}" for d in missed]
            await self._missed_notice(facts, missed, now)

    async def _insert_many(self, rows: Sequence[dict[str, Any]]) -> dict[tuple[int, str, str], int]:
        """Insert occurrences unless they exist, `INSERT_BATCH` rows per statement (each committed on its
        own); the ids of those this call created, by (engagement id, ritual, period)."""
        created: dict[tuple[int, str, str], int] = {}
        for first in range(0, len(rows), INSERT_BATCH):
            for occ_id, engagement_id, ritual, period in await self._insert_batch(rows[first : first + INSERT_BATCH]):
                created[(engagement_id, ritual, period)] = occ_id
        return created

    async def _insert_batch(self, rows: Sequence[dict[str, Any]]) -> list[tuple[int, int, str, str]]:
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        stmt = (
            insert(Occurrence)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["engagement_id", "ritual", "period"])
            .returning(Occurrence.id, Occurrence.engagement_id, Occurrence.ritual, Occurrence.period)
        )
        async with self.db.write() as session:
            return [(i, e, r, p) for i, e, r, p in (await session.execute(stmt)).all()]

    async def _insert(
        self,
        facts: EngagementFacts,
        due: Due,
        now: datetime,
        *,
        status: str = "pending",
        reason: str | None = None,
        host_id: int | None = None,
    ) -> int | None:
        """Insert the occurrence unless it exists; its id when this call created it, else None."""
        values = _occurrence_row(facts.id, due, now, status=status, reason=reason, host_id=host_id)
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        stmt = (
            insert(Occurrence)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["engagement_id", "ritual", "period"])
            .returning(Occurrence.id)
        )
        async with self.db.write() as session:
            return (await session.execute(stmt)).scalar_one_or_none()

    async def trigger(
        self,
        engagement: Engagement,
        ritual: str,
        period: str,
        *,
        detail: dict[str, Any] | None = None,
        host_id: int | None = None,
        deliver: bool = True,
    ) -> int | None:
        """Run an occurrence now (a debrief prompt, `/pipeline start`): created once, planned, delivered.
        Returns the occurrence id, or None when that occurrence already happened."""
        now = self.clock.now()
        async with self.db.session() as session:
            facts = await load_facts(session, engagement)
        due = Due(ritual=ritual, period=period, due_at=now, grace=timedelta(hours=1), detail=detail or {})
        occ_id = await self._insert(facts, due, now, host_id=host_id)
        if occ_id is None:
            return None
        await self.plan(occ_id, now)
        if deliver:
            await self.deliver(now)
        return occ_id

    async def _missed_notice(self, facts: EngagementFacts, missed: list[Due], now: datetime) -> None:
        period = (
            "missed/" + hashlib.sha256("|".join(f"{d.ritual}/{d.period}" for d in missed).encode()).hexdigest()[:16]
        )
        lines = [
            f"{d.ritual.replace('_', ' ')} ({d.period}), due {d.due_at.astimezone(facts.tz):%a %b %-d %H:%M}"
            for d in missed
        ]
        due = Due(ritual=MISSED, period=period, due_at=now, grace=timedelta(days=1), detail={"missed": lines})
        occ_id = await self._insert(facts, due, now)
        if occ_id is not None:
            await self.plan(occ_id, now)

    async def _unreachable_notice(
        self, engagement: Engagement, delivery: Delivery, target: Target, reason: str, now: datetime
    ) -> None:
        """Tell the CRO who could not be reached, at most once a week per recipient, so a broken address is
        fixed rather than silently dropping every ritual for that person."""
        if delivery.purpose == UNREACHABLE:
            return
        async with self.db.session() as session:
            facts = await load_facts(session, engagement)
        if facts.cro is None or (target.kind == "person" and target.person_id == facts.cro.id):
            return
        week = now.astimezone(facts.tz).strftime("%G-W%V")
        due = Due(
            ritual=UNREACHABLE,
            period=f"{delivery.recipient}/{week}",
            due_at=now,
            grace=timedelta(days=1),
            detail={"who": target.describe(), "reason": reason},
        )
        occ_id = await self._insert(facts, due, now)
        if occ_id is not None:
            await self.plan(occ_id, now)

    # --- planning ---------------------------------------------------------------------------------

    async def plan(self, occurrence_id: int, now: datetime) -> bool:
        """Plan one pending occurrence's deliveries atomically. False when another process already did."""
        try:
            async with self.db.write() as session:
                occ = (
                    await session.execute(select(Occurrence).where(Occurrence.id == occurrence_id).with_for_update())
                ).scalar_one()
                if occ.status != "pending":
                    return False
                engagement = await session.get(Engagement, occ.engagement_id)
                assert engagement is not None
                facts = await load_facts(session, engagement)
                outgoing = await self._outgoing(RitualRun(session, facts, occ, now))
                by_purpose: dict[str, Delivery] = {}
                for item in outgoing:
                    row = Delivery(
                        key=delivery_key(engagement, occ, item.recipient, item.purpose),
                        occurrence_id=occ.id,
                        engagement_id=occ.engagement_id,
                        recipient=str(item.recipient),
                        purpose=item.purpose,
                        payload=item.message.model_dump(mode="json"),
                        status="pending",
                        attempts=0,
                        not_before=now,
                        subject=item.subject,
                        parent_id=by_purpose[item.thread_of].id if item.thread_of else None,
                    )
                    session.add(row)
                    await session.flush()
                    by_purpose[item.purpose] = row
                occ.status = "planned"
                occ.planned_at = now
                return True
        except Exception:
            log.exception("planning occurrence %s failed", occurrence_id)
            await self._plan_failed(occurrence_id)
            return False

    async def _outgoing(self, run: RitualRun) -> Sequence[Outgoing]:
        if run.occurrence.ritual == MISSED:
            cro = run.facts.cro
            assert cro is not None
            lines = run.occurrence.detail.get("missed", [])
            text = (
                "Cadence was not running when these were due, and they were too late to send, so they were "
                "skipped: " + "; ".join(lines) + "."
            )
            return [Outgoing(Recipient.person(cro.id), "missed", Message(text=text, blocks=[Paragraph(text=text)]))]
        if run.occurrence.ritual == UNREACHABLE:
            cro = run.facts.cro
            assert cro is not None
            detail = run.occurrence.detail
            text = (
                f"I could not deliver a message ({detail['who']}): {detail['reason']}. Until that is fixed, "
                "their nudges and reminders do not reach them."
            )
            return [Outgoing(Recipient.person(cro.id), UNREACHABLE, Message(text=text, blocks=[Paragraph(text=text)]))]
        return await self.rituals[run.occurrence.ritual].plan(run)

    async def _plan_failed(self, occurrence_id: int) -> None:
        async with self.db.write() as session:
            occ = await session.get(Occurrence, occurrence_id)
            if occ is None:
                return
            errors = int(occ.detail.get("plan_errors", 0)) + 1
            occ.detail = {**occ.detail, "plan_errors": errors}
            if errors >= MAX_PLAN_ERRORS:
                occ.status = "skipped"
                occ.skip_reason = f"planning failed {errors} times; see the logs"

    # --- delivery ---------------------------------------------------------------------------------

    async def deliver(self, now: datetime | None = None, *, batch: int = 100) -> tuple[int, int]:
        """Send every pending delivery that is due; returns (sent, failed). Safe to run in many processes.
        Each claim reads the clock (unless `now` is given), so the last claims of a long fan-out get
        leases as long as the first."""
        if self.concurrency > 1:
            return await self._deliver_concurrently(now, batch)
        sent = failed = 0
        while True:
            at = now or self.clock.now()
            claimed = await self._claim(at, batch)
            if not claimed:
                return sent, failed
            for item in claimed:
                ok = await self._send(item, at)
                sent += ok is True
                failed += ok is False

    async def _deliver_concurrently(self, now: datetime | None, batch: int) -> tuple[int, int]:
        """`deliver` with up to `concurrency` sends in flight: claims are topped up as sends finish (a
        finished thread parent makes its replies claimable), skipping the DMs (or channel posts) of an
        engagement with `per_engagement` of them in flight. An unexpected error stops the claiming; the
        sends in flight finish, then it is raised."""
        sent = failed = 0
        running: dict[asyncio.Task[bool | None], tuple[int, str]] = {}
        last_to: dict[tuple[int, str], asyncio.Task[bool | None]] = {}
        error: BaseException | None = None
        try:
            while True:
                room = min(batch, self.concurrency - len(running), self.per_engagement)
                claimed: list[Claimed] = []
                if room > 0 and error is None:
                    full = [kind for kind, n in Counter(running.values()).items() if n >= self.per_engagement]
                    at = now or self.clock.now()
                    claimed = await self._claim(at, room, busy=full, channels_first=True)
                    for item in claimed:
                        to = (item.delivery.engagement_id, item.delivery.recipient)
                        task = asyncio.create_task(self._send_after(last_to.get(to), item, at))
                        running[task] = (item.delivery.engagement_id, _kind(item.delivery.recipient))
                        last_to[to] = task
                if not running:
                    break
                if claimed and len(claimed) == room:
                    continue  # there may be more to claim right away
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del running[task]
                    if task.exception() is not None:
                        error = error or task.exception()
                        continue
                    ok = task.result()
                    sent += ok is True
                    failed += ok is False
                last_to = {to: task for to, task in last_to.items() if not task.done()}
        finally:
            for task in running:
                task.cancel()  # only when deliver itself was cancelled: the leases hand them over
        if error is not None:
            raise error
        return sent, failed

    async def _send_after(self, before: asyncio.Task[bool | None] | None, item: Claimed, now: datetime) -> bool | None:
        """Send `item` once the send claimed before it to the same recipient has finished (in any way)."""
        if before is not None:
            await asyncio.wait([before])
        return await self._send(item, now)

    async def _claim(
        self, now: datetime, limit: int, *, busy: Sequence[tuple[int, str]] = (), channels_first: bool = False
    ) -> list[Claimed]:
        """Claim up to `limit` due deliveries, oldest first, but none of a (engagement, recipient kind) in
        `busy` — kind "person" (DMs) or "channel". With `channels_first`, channel posts come before DMs:
        when sends run concurrently, a thousand nudges claimed first would fill every slot for as long as
        the DM rate limits take, and the review — posted to a channel with a rate limit of its own, to a
        meeting that is starting — would wait behind them (bench/fanout.py measured 13 s added that way)."""
        parent = aliased(Delivery)
        ready = or_(
            and_(Delivery.status == "pending", Delivery.not_before <= now),
            and_(Delivery.status == "sending", Delivery.lease_until < now),
        )
        async with self.db.write() as session:
            await self._skip_orphans(session, now)
            stmt = (
                select(Delivery)
                .outerjoin(parent, parent.id == Delivery.parent_id)
                .where(ready, or_(Delivery.parent_id.is_(None), parent.status == "sent"))
            )
            for kind in ("person", "channel"):
                engagements = [e for e, k in busy if k == kind]
                if engagements:
                    stmt = stmt.where(
                        ~and_(Delivery.engagement_id.in_(engagements), Delivery.recipient.startswith(f"{kind}:"))
                    )
            first = and_(Delivery.recipient.startswith("channel:"), Delivery.parent_id.is_(None))
            order = (case((first, 0), else_=1),) if channels_first else ()
            stmt = stmt.order_by(*order, Delivery.id).limit(limit).with_for_update(of=Delivery, skip_locked=True)
            rows = (await session.execute(stmt)).scalars().all()
            claimed = []
            for row in rows:
                claimed.append(Claimed(row, reclaimed=row.status == "sending"))
                row.status = "sending"
                row.claimed_by = self.worker
                row.lease_until = now + LEASE
                row.attempts += 1
            return claimed

    async def _skip_orphans(self, session: AsyncSession, now: datetime) -> None:
        """Thread replies whose parent will never be posted are skipped, not left pending forever."""
        dead = select(Delivery.id).where(Delivery.status.in_(("failed", "skipped")))
        await session.execute(
            update(Delivery)
            .where(Delivery.status == "pending", Delivery.parent_id.in_(dead))
            .values(status="skipped", error="the message it replies to was not delivered")
        )

    async def target(self, session: AsyncSession, delivery: Delivery) -> Target | None:
        kind, ref = delivery.recipient.split(":", 1)
        thread = None
        if delivery.parent_id is not None:
            parent = await session.get(Delivery, delivery.parent_id)
            thread = SentRef.model_validate(parent.ref) if parent and parent.ref else None
        if kind == "channel":
            return Target(engagement_id=delivery.engagement_id, kind="channel", channel=ref, thread=thread)
        person = await session.get(Person, int(ref))
        if person is None or not person.active:
            return None
        return Target(
            engagement_id=delivery.engagement_id,
            kind="person",
            person_id=person.id,
            person_name=person.name,
            identities=await engagement_repo.identities(session, person.id),
            timezone=person.timezone,
            thread=thread,
        )

    async def _send(self, item: Claimed, now: datetime) -> bool | None:
        delivery = item.delivery
        async with self.db.session() as session:
            engagement = await session.get(Engagement, delivery.engagement_id)
            target = await self.target(session, delivery)
        assert engagement is not None
        if target is None:
            await self._finish(delivery, status="skipped", error="recipient is no longer active")
            return None
        port = self.port_for(engagement)
        if item.reclaimed:
            try:
                found = await port.find_sent(target, delivery.key)
            except DeliveryFailed as exc:
                # Unknown whether it went out: keep the claim until its lease ends, then ask again.
                log.warning("cannot check delivery %s yet: %s", delivery.key, exc.reason)
                return None
            if found is not None:
                await self._finish(delivery, status="sent", ref=found, now=now, platform=port.platform)
                return True
        try:
            ref = await port.send(target, Message.model_validate(delivery.payload), delivery_key=delivery.key)
        except DeliveryFailed as exc:
            if exc.permanent or delivery.attempts >= MAX_ATTEMPTS:
                await self._finish(delivery, status="failed", error=exc.reason)
                await self._unreachable_notice(engagement, delivery, target, exc.reason, now)
                return False
            backoff = timedelta(seconds=exc.retry_after or min(300, 5 * 2**delivery.attempts))
            await self._finish(delivery, status="pending", error=exc.reason, not_before=now + backoff)
            return None
        await self._finish(delivery, status="sent", ref=ref, now=now, platform=port.platform)
        return True

    async def _finish(
        self,
        delivery: Delivery,
        *,
        status: str,
        error: str | None = None,
        ref: SentRef | None = None,
        now: datetime | None = None,
        not_before: datetime | None = None,
        platform: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "error": error, "lease_until": None}
        if ref is not None:
            values.update(ref=ref.model_dump(mode="json"), sent_at=now, platform=platform)
        if not_before is not None:
            values["not_before"] = not_before
        async with self.db.write() as session:
            await session.execute(
                update(Delivery).where(Delivery.id == delivery.id, Delivery.claimed_by == self.worker).values(**values)
            )

    async def update_sent(self, subject: str, message: Message, *, purpose_prefix: str = "") -> int:
        """Replace, in place, every sent message about `subject` (e.g. 'deal:12'); returns how many."""
        async with self.db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(Delivery).where(
                            Delivery.subject == subject,
                            Delivery.status == "sent",
                            Delivery.purpose.startswith(purpose_prefix),
                        )
                    )
                )
                .scalars()
                .all()
            )
            engagements = {r.engagement_id: await session.get(Engagement, r.engagement_id) for r in rows}
        updated = 0
        for row in rows:
            engagement = engagements[row.engagement_id]
            assert engagement is not None and row.ref is not None
            try:
                await self.port_for(engagement).update(SentRef.model_validate(row.ref), message)
                updated += 1
            except DeliveryFailed as exc:  # one deleted message must not stop the others' updates
                log.warning("could not update %s in place: %s", row.key, exc.reason)
        return updated


def _kind(recipient: str) -> str:
    """ "person" or "channel": what a delivery's recipient is."""
    return recipient.split(":", 1)[0]


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
