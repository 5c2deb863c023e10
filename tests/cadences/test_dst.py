"""Daylight-saving changes in three zones: each ritual fires once per local day at its local time, and
a wall-clock time that happens twice (fall-back) or never (spring-forward) still fires exactly once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from cadences.engine import Engine
from cadences.messages import Message
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun, at_local, daily
from storage.models import Engagement
from support.transcript import TranscriptPort

# (zone, the day clocks go back, the day clocks go forward) around the test engagement's dates
ZONES = [
    ("America/Los_Angeles", date(2026, 11, 1), date(2027, 3, 14)),
    ("Europe/Berlin", date(2026, 10, 25), date(2027, 3, 28)),
    ("Australia/Sydney", date(2027, 4, 4), date(2026, 10, 4)),
]


class AtLocal:
    def __init__(self, at: time) -> None:
        self.name = f"at-{at:%H%M}"
        self.at = at

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        for day in daily(start, end, facts.tz):
            yield Due(self.name, day.isoformat(), facts.local(day, self.at), timedelta(hours=1))

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        return [Outgoing(Recipient.channel("x"), "post", Message(text=run.occurrence.period))]


@pytest.mark.parametrize(("zone", "back", "forward"), ZONES)
def test_local_times_keep_their_wall_clock_across_both_changes(zone: str, back: date, forward: date) -> None:
    tz = ZoneInfo(zone)
    for change in (back, forward):
        for day in (change - timedelta(days=1), change, change + timedelta(days=1)):
            assert at_local(day, time(9), tz).astimezone(tz).time() == time(9)
    before, after = at_local(back - timedelta(days=1), time(9), tz), at_local(back + timedelta(days=1), time(9), tz)
    assert after - before == timedelta(hours=49)  # the night clocks go back is an hour longer
    before, after = (
        at_local(forward - timedelta(days=1), time(9), tz),
        at_local(forward + timedelta(days=1), time(9), tz),
    )
    assert after - before == timedelta(hours=47)


@pytest.mark.parametrize(("zone", "back", "forward"), ZONES)
def test_a_time_that_happens_twice_or_never_maps_to_one_instant(zone: str, back: date, forward: date) -> None:
    tz = ZoneInfo(zone)
    hour = 2 if zone != "America/Los_Angeles" else 1
    ambiguous = at_local(back, time(hour, 30), tz)
    assert ambiguous == datetime.combine(back, time(hour, 30), tzinfo=tz).astimezone(UTC)  # the first of the two
    gap = at_local(forward, time(2, 30), tz)
    assert gap.astimezone(tz).time() == time(3, 30)  # moved forward by the gap, still exactly one instant


@pytest.mark.parametrize(("zone", "back", "forward"), ZONES)
async def test_engine_fires_once_a_day_through_both_changes_when_ticked_every_quarter_hour(
    world: Any, zone: str, back: date, forward: date
) -> None:
    async with world.db.write() as session:
        await session.execute(update(Engagement).values(timezone=zone, created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    port = TranscriptPort()
    rituals = [AtLocal(time(9)), AtLocal(time(2, 30) if zone != "America/Los_Angeles" else time(1, 30))]
    engine = Engine(world.db, world.clock, rituals, lambda _e: port)
    tz = ZoneInfo(zone)
    for change in (back, forward):
        port.sent.clear()
        start = datetime.combine(change - timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        world.clock.set(start)
        while world.clock.now() < start + timedelta(days=3):
            await engine.tick()
            world.clock.advance(timedelta(minutes=30))
        nine = sorted(s.message.text for s in port.sent if s.key.split("/")[1] == "at-0900")
        days = [(change + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
        assert nine == days
        night = [s.message.text for s in port.sent if s.key.split("/")[1] != "at-0900"]
        assert len(night) == len(set(night)) and change.isoformat() in night
