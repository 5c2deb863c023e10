"""Pacing under Slack's limits: the GCRA arithmetic, the in-process pacer with the full set of limits,
and the database-backed pacer that several processes share (two instances on two connection pools
here, the way two `cadence run` processes would be). Time is fake: each test sets the clock and records
how long each caller was told to sleep."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from bot.slack.pacing import ChannelPacer, Rate, SharedPacer, SlackLimits, pacer_for
from storage import rate_limits
from storage.db import Database
from storage.models import RateSlot

SLACK = SlackLimits(channel=Rate(1.0, 3), workspace=Rate(0.1, 10), opens=Rate(1.2, 1), margin=0.0)


@dataclass
class Time:
    """A clock that moves only when told, and a sleep that records instead of sleeping: the instant
    each caller would go is `now + slept`."""

    now: float = 1_000_000.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))

    def starts(self) -> list[float]:
        return [round(self.now + s, 6) for s in self.slept]


def shared(db: Database, time: Time, limits: SlackLimits = SLACK) -> SharedPacer:
    return SharedPacer(db, limits, clock=time.clock, sleep=time.sleep)


def test_a_call_waits_for_the_strictest_of_its_buckets() -> None:
    channel = rate_limits.Bucket("c", 1.0, 3)
    workspace = rate_limits.Bucket("w", 0.1, 10)
    assert rate_limits.earliest([None, None], [channel, workspace], 50.0) == (50.0, [51.0, 50.1])
    # A channel TAT of 53 means its burst is spent: the next slot is 53 - tolerance 2 = 51 ...
    start, after = rate_limits.earliest([53.0, 50.3], [channel, workspace], 50.0)
    assert (start, after) == (51.0, [54.0, 51.1])
    # ... and a workspace that is further behind holds it longer: 0.9 s of tolerance before TAT 52.5.
    start, after = rate_limits.earliest([50.0, 52.5], [channel, workspace], 50.0)
    assert start == pytest.approx(51.6) and after == [pytest.approx(52.6), pytest.approx(52.6)]


async def test_the_in_process_pacer_keeps_the_channel_the_workspace_and_the_dm_opens_apart() -> None:
    time = Time()
    pacer = ChannelPacer(limits=SLACK, monotonic=time.clock, sleep=time.sleep)
    for _ in range(5):
        await pacer.wait("T1", "C1")
    assert time.slept == [1.0, 2.0]  # a burst of 3, then one a second
    time.slept.clear()
    for n in range(12):
        await pacer.wait("T3", f"D{n}")  # twelve DMs of another workspace: 10 at once, then 10 a second
    assert time.slept == pytest.approx([0.1, 0.2])
    time.slept.clear()
    await asyncio.gather(*(pacer.wait_open("T1") for _ in range(3)), pacer.wait_open("T2"))
    assert time.slept == pytest.approx([1.2, 2.4])  # 50 a minute, per workspace


async def test_the_shared_pacer_paces_like_the_in_process_one(db: Database) -> None:
    time = Time()
    pacer = shared(db, time)
    for _ in range(5):
        await pacer.wait("T1", "C1")
    await pacer.wait("T1", "C2")
    await pacer.wait("T2", "C1")
    for _ in range(3):
        await pacer.wait_open("T1")
    # C1: a burst of 3 then one a second; C2 waits for the workspace (posts reserved until T+2 leave
    # 10 a second of room at T+1.2); T2 is another workspace; DM opens go every 1.2 s.
    assert time.slept == pytest.approx([1.0, 2.0, 1.2, 1.2, 2.4])
    async with db.session() as session:
        keys = set((await session.execute(select(RateSlot.key))).scalars())
    assert keys == {"T1/C1", "T1/C2", "T1/#chat", "T2/C1", "T2/#chat", "T1/#open"}


async def test_two_processes_share_one_budget(db: Database) -> None:
    """Two pacers on two engines (their own connections): together they get one channel's budget, not
    one each. Concurrent reservations from both never hand out one slot twice."""
    other = Database(db.url, pool_size=5)
    try:
        time = Time()
        first, second = shared(db, time), shared(other, time)
        await first.wait("T1", "C1")
        await first.wait("T1", "C1")
        await first.wait("T1", "C1")  # the burst of 3, all spent by the first process
        await second.wait("T1", "C1")  # the second process waits for the next second like the first would
        assert time.slept == [1.0]
        time.slept.clear()
        time.now += 100.0  # the channel is idle again
        await asyncio.gather(*(p.wait("T1", "C1") for p in [first, second] * 10))
        # 20 posts to one channel from two processes at one instant: 3 at once, then one a second, each
        # slot handed out exactly once.
        assert sorted(time.starts()) == [time.now + k for k in range(1, 18)]
        time.slept.clear()
        await asyncio.gather(*(p.wait_open("T1") for p in [first, second] * 5))
        assert sorted(time.slept) == pytest.approx([1.2 * k for k in range(10)][1:])
    finally:
        await other.dispose()


async def test_idle_buckets_are_forgotten(db: Database) -> None:
    time = Time()
    pacer = SharedPacer(db, SLACK, clock=time.clock, sleep=time.sleep, forget_after=60.0, prune_every=2)
    await pacer.wait("T1", "C1")
    time.now += 120.0
    await pacer.wait("T1", "C2")  # the second reservation prunes what has been idle for a minute
    async with db.session() as session:
        keys = set((await session.execute(select(RateSlot.key))).scalars())
        count = (await session.execute(select(func.count()).select_from(RateSlot))).scalar_one()
    assert keys == {"T1/C2", "T1/#chat"} and count == 2


async def test_postgres_shares_the_limit_and_sqlite_keeps_it_in_memory(db: Database) -> None:
    pacer = pacer_for(db)
    assert isinstance(pacer, SharedPacer if db.is_postgres else ChannelPacer)


async def test_without_a_clock_the_shared_pacer_times_by_the_database_or_the_wall(db: Database) -> None:
    """In production the clock is the PostgreSQL server's (the wall clock on SQLite): the waits are the
    same, give or take the milliseconds the reservations themselves take."""
    time = Time()
    pacer = SharedPacer(db, SLACK, sleep=time.sleep)
    for _ in range(5):
        await pacer.wait("T1", "C1")
    assert time.slept == [pytest.approx(1.0, abs=0.2), pytest.approx(2.0, abs=0.2)]
