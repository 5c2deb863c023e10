"""The engine's guarantees with a small test ritual: one occurrence and one delivery per recipient
however often a firing repeats; crash recovery without loss or duplicates; downtime handling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cadences.engine import Engine
from cadences.messages import Message
from cadences.ports import DeliveryFailed
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun, daily
from cadences.scheduler import advance
from storage.models import Delivery, Occurrence, Role
from support.transcript import TranscriptPort


class Standup:
    """Every day at 09:00 engagement time: a channel post plus a DM to each rep, and a thread reply."""

    name = "standup"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        for day in daily(start, end, facts.tz):
            yield Due(self.name, day.isoformat(), facts.local(day, time(9)), timedelta(hours=4))

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        out = [
            Outgoing(Recipient.channel("standup"), "post", Message(text=f"Standup {run.occurrence.period}")),
            Outgoing(Recipient.channel("standup"), "thread", Message(text="details"), thread_of="post"),
        ]
        out += [
            Outgoing(Recipient.person(p.id), "dm", Message(text=f"Hi {p.name}")) for p in run.facts.with_role(Role.REP)
        ]
        return out


@pytest.fixture
async def rig(world: Any) -> tuple[Any, Engine, TranscriptPort]:
    port = TranscriptPort()
    return world, Engine(world.db, world.clock, [Standup()], lambda _e: port, worker="w1"), port


def at(day: str, hh: int, mm: int = 0) -> datetime:
    """A UTC instant from a Los Angeles wall-clock time in late November (PST, UTC-8)."""
    return datetime.fromisoformat(f"{day}T{hh:02d}:{mm:02d}:00-08:00").astimezone(UTC)


async def counts(world: Any) -> tuple[int, int]:
    async with world.db.session() as session:
        occ = (await session.execute(select(func.count(Occurrence.id)))).scalar_one()
        sent = (await session.execute(select(func.count()).where(Delivery.status == "sent"))).scalar_one()
    return occ, sent


async def test_the_same_firing_twice_is_one_occurrence_and_one_delivery_each(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-25", 9))
    await engine.tick()
    await engine.tick()
    second = Engine(world.db, world.clock, [Standup()], lambda _e: port, worker="w2")
    await second.tick()
    assert await counts(world) == (1, 4)
    assert sorted(port.texts()) == ["Hi Jordan Lee", "Hi Priya Natarajan", "Standup 2026-11-25", "details"]
    thread = next(s for s in port.sent if s.message.text == "details")
    post = next(s for s in port.sent if s.message.text.startswith("Standup"))
    assert thread.target.thread == post.ref


async def test_two_engines_racing_on_the_same_tick_send_once(rig: Any) -> None:
    import asyncio

    world, _engine, port = rig
    world.clock.set(at("2026-11-25", 9))
    engines = [Engine(world.db, world.clock, [Standup()], lambda _e: port, worker=f"w{i}") for i in range(3)]
    await asyncio.gather(*(e.tick() for e in engines))
    assert await counts(world) == (1, 4)
    assert len(port.sent) == 4


async def test_killed_between_claim_and_send_resumes_without_loss(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-25", 9))
    async with world.db.session() as session:
        await engine._tick_engagement(
            await _facts(world, session),
            world.clock.now(),
            __import__("cadences.engine", fromlist=["TickReport"]).TickReport(),
        )
    claimed = await engine._claim(world.clock.now(), 2)  # the process dies holding two claims
    assert [c.delivery.purpose for c in claimed] == ["post", "dm"] and port.sent == []
    restarted = Engine(world.db, world.clock, [Standup()], lambda _e: port, worker="w-restarted")
    await restarted.tick()  # leases still held: only the unclaimed DM goes; the thread waits for its post
    assert len(port.sent) == 1
    world.clock.advance(timedelta(minutes=3))
    await restarted.tick()
    assert len(port.sent) == 4 and len({s.key for s in port.sent}) == 4


async def test_killed_between_send_and_record_is_not_sent_again(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-25", 9))
    original = engine._finish

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed after posting, before recording")

    engine._finish = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await engine.tick()
    engine._finish = original  # type: ignore[method-assign]
    assert len(port.sent) == 1
    world.clock.advance(timedelta(minutes=3))
    await Engine(world.db, world.clock, [Standup()], lambda _e: port, worker="w-restarted").tick()
    assert len(port.sent) == 4 and len({s.key for s in port.sent}) == 4
    assert await counts(world) == (1, 4)


async def test_a_platform_that_cannot_tell_is_sent_again_the_honest_limit(rig: Any) -> None:
    world, engine, port = rig
    port.remembers = False
    world.clock.set(at("2026-11-25", 9))
    engine._finish = _crash_once(engine._finish)  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await engine.tick()
    world.clock.advance(timedelta(minutes=3))
    await engine.tick()
    assert len(port.sent) == 5  # the first message went out twice: the platform could not say it had it


async def test_transient_failures_retry_after_retry_after_and_permanent_ones_stop(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-25", 9))
    port.fail_next = [
        DeliveryFailed("rate limited", permanent=False, retry_after=30),
        DeliveryFailed("channel_not_found", permanent=True),
    ]
    await engine.tick()
    async with world.db.session() as session:
        rows = {d.purpose: d for d in (await session.execute(select(Delivery))).scalars()}
    assert rows["post"].status == "pending" and rows["post"].error == "rate limited"
    world.clock.advance(timedelta(seconds=31))
    await engine.tick()
    async with world.db.session() as session:
        statuses = sorted((await session.execute(select(Delivery.purpose, Delivery.status))).all())
    assert ("post", "sent") in statuses and ("thread", "sent") in statuses
    assert [s for s in statuses if s[1] == "failed"] == [("dm", "failed")]
    [notice] = [s for s in port.sent if s.target.person_name == "Dana Whitfield"]
    assert "could not deliver" in notice.message.text and "channel_not_found" in notice.message.text
    port.fail_next = [
        DeliveryFailed("rate limited", permanent=False, retry_after=30),
        DeliveryFailed("channel_not_found", permanent=True),
    ]
    world.clock.advance(timedelta(days=1))
    await engine.tick()  # the same person unreachable again this week: no second notice
    assert len([s for s in port.sent if s.target.person_name == "Dana Whitfield"]) == 1


async def test_downtime_within_grace_runs_late_once_and_beyond_grace_is_skipped_with_one_line(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-25", 12))  # 3 h late: within the 4 h grace
    await engine.tick()
    assert "Standup 2026-11-25" in port.texts()
    port.sent.clear()
    world.clock.set(at("2026-11-28", 15))  # down for three days: 26th (15:00 is 6 h late), 27th, 28th missed
    await engine.tick()
    texts = port.texts()
    assert not any(t.startswith("Standup") for t in texts)
    [notice] = [s for s in port.sent if s.target.person_name == "Dana Whitfield"]
    assert "skipped" in notice.message.text and "2026-11-26" in notice.message.text
    assert "2026-11-28" in notice.message.text
    await engine.tick()
    assert len(port.sent) == 1


async def test_virtual_time_runs_each_occurrence_at_its_local_time(rig: Any) -> None:
    world, engine, port = rig
    world.clock.set(at("2026-11-24", 10))
    await advance(engine, world.clock, at("2026-11-27", 10))
    posts = [s for s in port.sent if s.message.text.startswith("Standup")]
    assert [p.message.text for p in posts] == ["Standup 2026-11-25", "Standup 2026-11-26", "Standup 2026-11-27"]


def _crash_once(original: Any) -> Any:
    state = {"crashed": False}

    async def finish(*args: Any, **kwargs: Any) -> None:
        if not state["crashed"]:
            state["crashed"] = True
            raise SystemExit("killed")
        await original(*args, **kwargs)

    return finish


async def _facts(world: Any, session: Any) -> EngagementFacts:
    from cadences.rituals import load_facts

    return await load_facts(session, world.engagement)
