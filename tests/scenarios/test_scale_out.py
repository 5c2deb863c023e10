"""Several bot processes on one PostgreSQL: one clock holder at a time, handed over when it dies; a
review posted once, by whichever process is alive; and no lost deal update under 20 concurrent writers.

Each "process" here is what a `cadence run` process owns: its own Database (engine and connections),
its own Engine, CadenceScheduler (with its clock lock on a dedicated connection) and Slack client, all
against one fake Slack. Time is a shared ManualClock, and heartbeats are called (`beat`), never waited
for, so a "minute" is a virtual one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.console.render import render
from bot.slack.pacing import ChannelPacer
from bot.slack.port import SlackPort, create_client, stored_attachments
from cadences import deal_views
from cadences.clock import ManualClock
from cadences.deals import Conflict, Outcome, update_deal
from cadences.engine import Engine
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import CLOCK_LOCK, WAKEUP_HORIZON, Beat, CadenceScheduler
from storage.db import Database
from storage.locks import holder_pid
from storage.models import Deal, DealHistory, Delivery
from support.fake_slack import FakeSlack
from support.worlds import World

SQLITE_REASON = "SQLite is the single-process embedded default: scale-out is a PostgreSQL deployment"
MONDAY_0859 = datetime(2026, 11, 30, 16, 59, tzinfo=UTC)  # the review is Monday 09:00 in Los Angeles (PST)
MONDAY_0900 = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
REVIEW_KEY = "acme-test/pipeline_review/2026-W49/channel:pipeline-review/review"


@pytest.fixture(autouse=True)
def _only_postgres(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip(SQLITE_REASON)


@dataclass
class Process:
    """One bot process's own objects."""

    name: str
    db: Database
    engine: Engine
    scheduler: CadenceScheduler
    alive: bool = True


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack.for_testco() as server:
        yield server


@pytest.fixture
async def cluster(world: World, fake: FakeSlack) -> AsyncIterator[list[Process]]:
    processes = [await _start(world, fake, name) for name in ("proc-a", "proc-b")]
    yield processes
    for process in processes:
        await process.scheduler.stop()
        await process.db.dispose()


async def _start(world: World, fake: FakeSlack, name: str) -> Process:
    db = Database(world.db.url, pool_size=3)
    port = SlackPort(
        create_client(fake.token, base_url=fake.api_url),
        workspace=fake.team_id,
        pacer=ChannelPacer(interval=0.0),
        attachments=stored_attachments(db),
    )
    engine = Engine(db, world.clock, all_rituals(), lambda _engagement: port, worker=name)
    return Process(name, db, engine, CadenceScheduler(engine))


async def beat_all(processes: Sequence[Process]) -> dict[str, Beat]:
    """One heartbeat of every live process, at the same virtual instant, concurrently."""
    live = [p for p in processes if p.alive]
    beats = await asyncio.gather(*(p.scheduler.beat() for p in live))
    return {p.name: b for p, b in zip(live, beats, strict=True)}


async def run_cluster(processes: Sequence[Process], clock: ManualClock, until: datetime) -> None:
    """Virtual time for a cluster: at every instant something is due, every live process beats."""
    while clock.now() < until:
        nxt = await processes[0].engine.next_wakeup(clock.now(), WAKEUP_HORIZON)
        if nxt is None or nxt > until:
            break
        clock.set(nxt)
        await beat_all(processes)
    clock.set(until)
    await beat_all(processes)


def leaders(beats: dict[str, Beat]) -> list[str]:
    return [name for name, beat in beats.items() if beat.leader]


def posts_of(fake: FakeSlack, key: str) -> int:
    return sum(
        1
        for call in fake.calls_to("chat.postMessage")
        if ((call.body.get("metadata") or {}).get("event_payload") or {}).get("delivery_key") == key
    )


def duplicate_keys(fake: FakeSlack) -> list[str]:
    keys = [
        ((call.body.get("metadata") or {}).get("event_payload") or {}).get("delivery_key")
        for call in fake.calls_to("chat.postMessage")
    ]
    posted = [k for k in keys if k]
    return sorted({k for k in posted if posted.count(k) > 1})


async def drop_lock_connection(process: Process) -> None:
    """End the connection holding the clock lock, as PostgreSQL sees it when the process dies or the
    network between them fails (the timeout waits until the server has released the lock)."""
    pid = await holder_pid(process.db, CLOCK_LOCK)
    assert pid is not None
    async with process.db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT pg_terminate_backend(:pid, 30000)"), {"pid": pid})).scalar()


async def kill(process: Process) -> None:
    """A killed process: all its connections go away (the lock's is what hands the clock over), and it
    never beats again."""
    await drop_lock_connection(process)
    process.alive = False
    await process.db.dispose()


async def review_delivery(db: Database) -> Delivery:
    async with db.session() as session:
        return (await session.execute(select(Delivery).where(Delivery.key == REVIEW_KEY))).scalar_one()


# --- the clock holder --------------------------------------------------------------------------------


async def test_only_one_process_holds_the_clock_and_a_clean_stop_hands_it_over(cluster: list[Process]) -> None:
    first = await beat_all(cluster)
    assert len(leaders(first)) == 1
    assert leaders(await beat_all(cluster)) == leaders(first)  # the holder keeps it, heartbeat after heartbeat
    holder = next(p for p in cluster if p.name in leaders(first))
    follower = next(p for p in cluster if p is not holder)
    await holder.scheduler.stop()
    holder.alive = False
    assert (await follower.scheduler.beat()).leader is True  # on its next heartbeat
    assert (await holder.scheduler.beat()).leader is False  # a heartbeat after stopping never takes it back


async def test_a_follower_still_delivers_what_is_pending(world: World, cluster: list[Process]) -> None:
    holder, follower = cluster
    assert (await holder.scheduler.beat()).leader is True
    occ = await holder.engine.trigger(world.engagement, "pipeline_review", "2026-W48", deliver=False)
    assert occ is not None  # planned by the holder, not sent: e.g. it died right after planning
    beat = await follower.scheduler.beat()
    assert beat.leader is False and beat.report is not None and beat.report.sent > 0
    async with world.db.session() as session:
        statuses = set((await session.execute(select(Delivery.status).where(Delivery.occurrence_id == occ))).scalars())
        claimers = set(
            (await session.execute(select(Delivery.claimed_by).where(Delivery.occurrence_id == occ))).scalars()
        )
    assert statuses == {"sent"} and claimers == {"proc-b"}


async def test_a_holder_that_lost_its_lock_connection_steps_down(cluster: list[Process]) -> None:
    first = await beat_all(cluster)
    holder = next(p for p in cluster if first[p.name].leader)
    other = next(p for p in cluster if p is not holder)
    await drop_lock_connection(holder)  # the process lives on, its lock does not
    # The server frees the lock when it has finished ending that backend, which is not instant: poll (bounded).
    for _ in range(100):
        if (await other.scheduler.beat()).leader:
            break
        await asyncio.sleep(0.05)
    assert (await other.scheduler.beat()).leader is True
    beat = await holder.scheduler.beat()
    assert beat.leader is False and beat.report is not None  # no split brain: it only delivers now
    assert leaders(await beat_all(cluster)) == [other.name]


# --- a review due in one minute --------------------------------------------------------------------


async def test_two_processes_post_a_review_due_in_one_minute_once(
    world: World, cluster: list[Process], fake: FakeSlack
) -> None:
    await run_cluster(cluster, world.clock, MONDAY_0859)
    assert posts_of(fake, REVIEW_KEY) == 0
    world.clock.set(MONDAY_0900)
    beats = await beat_all(cluster)
    await beat_all(cluster)  # and once more: nothing left to do, nothing doubled
    assert len(leaders(beats)) == 1
    assert posts_of(fake, REVIEW_KEY) == 1
    delivery = await review_delivery(world.db)
    assert delivery.status == "sent" and delivery.sent_at == MONDAY_0900
    assert duplicate_keys(fake) == []


async def test_killing_the_clock_holder_still_posts_the_review_once_by_the_other_within_a_minute(
    world: World, cluster: list[Process], fake: FakeSlack
) -> None:
    await run_cluster(cluster, world.clock, MONDAY_0859)
    beats = await beat_all(cluster)
    [holder_name] = leaders(beats)
    holder = next(p for p in cluster if p.name == holder_name)
    survivor = next(p for p in cluster if p is not holder)
    await kill(holder)  # at 08:59, one minute before the review
    world.clock.set(MONDAY_0900)  # the survivor's next heartbeat
    beat = await survivor.scheduler.beat()
    assert beat.leader is True
    assert posts_of(fake, REVIEW_KEY) == 1
    delivery = await review_delivery(world.db)
    assert (delivery.status, delivery.claimed_by, delivery.sent_at) == ("sent", survivor.name, MONDAY_0900)
    await survivor.scheduler.beat()
    assert posts_of(fake, REVIEW_KEY) == 1 and duplicate_keys(fake) == []


# --- no lost updates --------------------------------------------------------------------------------


async def test_twenty_concurrent_updates_of_one_deal_one_wins_the_rest_get_a_conflict(world: World) -> None:
    await world.say("jordan", '/deal new "Globex Corp" amount=50k close=2026-12-15 stage=discovery')
    async with world.db.session() as session:
        deal = (await session.execute(select(Deal).where(Deal.name == "Globex Corp"))).scalar_one()
        history_before = await _history_count(session, deal.id)
    version = deal.version
    writers = [Database(world.db.url, pool_size=1) for _ in range(20)]
    try:
        base = await world.ctx("jordan")
        contexts = [replace(base, db=db) for db in writers]
        results: list[Any] = await asyncio.gather(
            *(
                update_deal(ctx, deal.id, {"amount": f"{i}k"}, expected_version=version)
                for i, ctx in enumerate(contexts, 1)
            ),
            return_exceptions=True,
        )
    finally:
        for db in writers:
            await db.dispose()
    wins = [r for r in results if isinstance(r, Outcome)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert (len(wins), len(conflicts)) == (1, 19), [r for r in results if not isinstance(r, Outcome | Conflict)]
    [win] = wins
    async with world.db.session() as session:
        final = await session.get(Deal, deal.id)
        history_after = await _history_count(session, deal.id)
    assert final is not None and final.version == version + 1
    assert final.amount == win.deal.amount
    assert history_after == history_before + 1  # one accepted change, one history row: none lost, none extra
    card = render(await deal_views.conflict_card(base, conflicts[0].deal, conflicts[0].message))
    assert "Globex Corp was changed by someone else while you were editing, so nothing was saved." in card
    assert f"{win.deal.amount:,.0f}" in card  # they see the value that won


async def _history_count(session: Any, deal_id: int) -> int:
    return int((await session.execute(select(func.count()).where(DealHistory.deal_id == deal_id))).scalar_one())
