"""The in-process clock: the only module that imports APScheduler.

APScheduler (3.x, in-memory job store, one per process — never shared) wakes the engine at the next
due time of any ritual, with a one-minute heartbeat as a safety net for anything that became due
meanwhile (a triggered prompt, a retry after `Retry-After`). The engine, not APScheduler, decides what
is due and whether it already ran: the database is the arbiter, so a restart, a DST fall-back or a
second process can never double a ritual. Virtual time (`cadence simulate`, tests) drives the same
engine through `advance`, with no wall clock and no sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from cadences.clock import ManualClock
from cadences.engine import Engine, TickReport

log = logging.getLogger(__name__)
HEARTBEAT = timedelta(seconds=60)
WAKEUP_HORIZON = timedelta(days=8)


class CadenceScheduler:
    """Wakes the engine on the wall clock."""

    def __init__(self, engine: Engine, *, heartbeat: timedelta = HEARTBEAT) -> None:
        self.engine = engine
        self.heartbeat = heartbeat
        self._scheduler: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        scheduler.add_job(
            self.wake,
            IntervalTrigger(seconds=self.heartbeat.total_seconds()),
            id="heartbeat",
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def wake(self) -> TickReport | None:
        """Tick the engine (shielded: a shutdown must not cut a fan-out in half), then set the next alarm."""
        async with self._lock:
            try:
                report = await asyncio.shield(self.engine.tick())
            except Exception:
                log.exception("cadence tick failed; the next heartbeat retries")
                return None
            await self._arm()
            return report

    async def _arm(self) -> None:
        if self._scheduler is None:
            return
        nxt = await self.engine.next_wakeup(self.engine.clock.now())
        if nxt is not None:
            self._scheduler.add_job(self.wake, DateTrigger(run_date=nxt), id="next-due", replace_existing=True)


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
