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
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cadences.clock import Clock
from cadences.messages import Message, Paragraph
from cadences.ports import ChatPort, DeliveryFailed, SentRef, Target
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, Ritual, RitualRun, load_facts
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

PortFor = Callable[[Engagement], ChatPort]


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
        self, db: Database, clock: Clock, rituals: Sequence[Ritual], port_for: PortFor, *, worker: str | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.rituals = {r.name: r for r in rituals}
        self.port_for = port_for
        self.worker = worker or worker_name()

    # --- schedule ---------------------------------------------------------------------------------

    async def _facts(self, session: AsyncSession) -> list[EngagementFacts]:
        return [await load_facts(session, e) for e in await engagement_repo.list_engagements(session)]

    def dues(self, facts: EngagementFacts, start: datetime, end: datetime) -> list[Due]:
        found: list[Due] = []
        for ritual in self.rituals.values():
            found += [d for d in ritual.due_between(facts, start, end) if start <= d.due_at < end]
        return sorted(found, key=lambda d: (d.due_at, d.ritual, d.period))

    async def next_wakeup(self, after: datetime, horizon: timedelta = timedelta(days=8)) -> datetime | None:
        """The next instant any ritual of any engagement is due, strictly after `after`."""
        async with self.db.session() as session:
            all_facts = await self._facts(session)
        soonest: datetime | None = None
        for facts in all_facts:
            for due in self.dues(facts, after + timedelta(microseconds=1), after + horizon):
                soonest = due.due_at if soonest is None else min(soonest, due.due_at)
                break
        return soonest

    async def upcoming(self, engagement: Engagement, after: datetime, horizon: timedelta) -> list[Due]:
        async with self.db.session() as session:
            facts = await load_facts(session, engagement)
        return self.dues(facts, after, after + horizon)

    # --- the tick ---------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Create and plan every occurrence due by `now`, then deliver what is pending. Idempotent."""
        now = now or self.clock.now()
        report = TickReport()
        async with self.db.session() as session:
            all_facts = await self._facts(session)
        for facts in all_facts:
            await self._tick_engagement(facts, now, report)
        sent, failed = await self.deliver(now)
        report.sent, report.failed = sent, failed
        return report

    async def _tick_engagement(self, facts: EngagementFacts, now: datetime, report: TickReport) -> None:
        start = max(facts.engagement.created_at, now - LOOKBACK)
        dues = self.dues(facts, start, now + timedelta(microseconds=1))
        if not dues:
            return
        async with self.db.session() as session:
            rows = await session.execute(
                select(Occurrence.ritual, Occurrence.period, Occurrence.status, Occurrence.id).where(
                    Occurrence.engagement_id == facts.id, Occurrence.due_at >= start - timedelta(days=1)
                )
            )
            known = {(r, p): (s, i) for r, p, s, i in rows.all()}
        missed: list[Due] = []
        for due in dues:
            status, occ_id = known.get((due.ritual, due.period), (None, None))
            if status is None:
                late = now - due.due_at
                if facts.engagement.paused:
                    await self._insert(facts, due, now, status="skipped", reason="cadence paused")
                    continue
                if late > due.grace:
                    if await self._insert(
                        facts,
                        due,
                        now,
                        status="skipped",
                        reason=f"missed by {_human(late)} (grace {_human(due.grace)})",
                    ):
                        missed.append(due)
                    continue
                occ_id = await self._insert(facts, due, now)
                report.created += occ_id is not None
                if occ_id is None:
                    continue
                status = "pending"
            if status == "pending" and occ_id is not None and await self.plan(occ_id, now):
                report.planned += 1
        if missed and facts.cro is not None:
            report.skipped += [f"{d.ritual}/{d.period}" for d in missed]
            await self._missed_notice(facts, missed, now)

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
        values = dict(
            engagement_id=facts.id,
            ritual=due.ritual,
            period=due.period,
            due_at=due.due_at,
            status=status,
            skip_reason=reason,
            detail=due.detail,
            created_at=now,
            host_id=host_id,
        )
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
        """Send every pending delivery that is due; returns (sent, failed). Safe to run in many processes."""
        sent = failed = 0
        while True:
            now = now or self.clock.now()
            claimed = await self._claim(now, batch)
            if not claimed:
                return sent, failed
            for item in claimed:
                ok = await self._send(item, now)
                sent += ok is True
                failed += ok is False

    async def _claim(self, now: datetime, limit: int) -> list[Claimed]:
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
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(of=Delivery, skip_locked=True)
            )
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


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
