"""The in-process clock: the only module that imports APScheduler.

APScheduler (3.x, in-memory job store, one per process — never shared: its FAQ warns that a shared job
store gives duplicate or missed runs) wakes the engine at the next due time of any ritual, with a
one-minute heartbeat as a safety net for anything that became due meanwhile (a triggered prompt, a retry
after `Retry-After`). The engine, not APScheduler, decides what is due and whether it already ran: the
database is the arbiter, so a restart, a DST fall-back or a second process can never double a ritual.

With several processes on one PostgreSQL, one of them runs the clock: the process holding the `clock`
advisory lock (storage/locks.py) ticks the engine; every other process asks for the lock again on each
heartbeat, so when the holder dies (its connection, and with it the lock, goes away) another one takes
the clock over within one heartbeat. Every process — holder or not — still claims and sends pending
deliveries on its heartbeat, so a large fan-out and the retries spread over the cluster. On SQLite
(single-process by design) the lock is always granted.

Virtual time (`cadence simulate`, tests) drives the same engine through `advance`, or calls `beat`
directly — one heartbeat, with no wall clock and no sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from cadences.clock import ManualClock
from cadences.engine import Engine, TickReport
from storage.locks import AdvisoryLock

log = logging.getLogger(__name__)
HEARTBEAT = timedelta(seconds=60)
WAKEUP_HORIZON = timedelta(days=8)
CLOCK_LOCK = "cadence:clock"
NEXT_DUE = "next-due"


@dataclass(frozen=True)
class Beat:
    """What one heartbeat did: whether this process held the clock (and so ticked the engine), and
    the engine's report — a full tick for the holder, deliveries only (`sent`, `failed`) otherwise.
    `report` is None when the work failed; the next heartbeat retries it."""

    leader: bool
    report: TickReport | None


class CadenceScheduler:
    """Wakes the engine on the wall clock; in a cluster, only the holder of the clock lock ticks."""

    def __init__(
        self, engine: Engine, *, heartbeat: timedelta = HEARTBEAT, clock_lock: AdvisoryLock | None = None
    ) -> None:
        self.engine = engine
        self.heartbeat = heartbeat
        self.clock_lock = clock_lock or AdvisoryLock(engine.db, CLOCK_LOCK)
        self._scheduler: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        self._releasing: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        scheduler.add_job(
            self.beat,
            IntervalTrigger(seconds=self.heartbeat.total_seconds()),
            id="heartbeat",
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        """Stop the wake-ups and give the clock lock back, so another process takes the clock over on its
        next heartbeat rather than when this process exits (the release finishes on the running loop)."""
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop any more: the process is exiting and its connection closes with it
            return
        self._releasing = loop.create_task(self.clock_lock.release(), name="release the clock lock")

    async def stop(self) -> None:
        """`shutdown`, waiting until the clock lock is released."""
        self.shutdown()
        if self._releasing is not None:
            await self._releasing

    async def beat(self) -> Beat:
        """One heartbeat (APScheduler calls it; tests and harnesses call it on a virtual clock): take or
        confirm the clock lock; the holder ticks the engine and sets the next alarm, the others only
        deliver. The work is shielded: a shutdown must not cut a fan-out in half."""
        async with self._lock:
            leader = await self._lead()
            try:
                if leader:
                    report = await asyncio.shield(self.engine.tick())
                else:
                    sent, failed = await asyncio.shield(self.engine.deliver())
                    report = TickReport(sent=sent, failed=failed)
            except Exception:
                log.exception("cadence heartbeat failed; the next heartbeat retries")
                return Beat(leader, None)
            await self._arm(leader)
            return Beat(leader, report)

    async def _lead(self) -> bool:
        if self._stopped:  # a heartbeat still running at shutdown must not take back the lock just given up
            return False
        try:
            return await self.clock_lock.try_hold()
        except Exception:
            log.exception("cannot reach the database for the clock lock; delivering only this heartbeat")
            return False

    async def _arm(self, leader: bool) -> None:
        if self._scheduler is None:
            return
        if not leader:
            if self._scheduler.get_job(NEXT_DUE) is not None:
                self._scheduler.remove_job(NEXT_DUE)
            return
        nxt = await self.engine.next_wakeup(self.engine.clock.now())
        if nxt is not None:
            self._scheduler.add_job(self.beat, DateTrigger(run_date=nxt), id=NEXT_DUE, replace_existing=True)


async def advance(engine: Engine, clock: ManualClock, until: datetime) -> list[TickReport]:
    """Move a virtual clock to `until`, stopping at every instant something is due and ticking there."""
    reports = []
    while clock.now() < until:
        nxt = await engine.next_wakeup(clock.now(), WAKEUP_HORIZON)
        if nxt is None:  # nothing within the horizon: step over the quiet stretch without ticking
            clock.set(min(until, clock.now() + WAKEUP_HORIZON))
            continue
        if nxt > until:
            break
        clock.set(nxt)
        reports.append(await engine.tick())
    clock.set(until)
    reports.append(await engine.tick())
    return reports
