"""An invariant every ritual's schedule must keep: asking for a long window gives exactly the
occurrences that asking for many short consecutive windows gives. A schedule that loses an occurrence
at a window's edge (a holiday shifting a day across it, a time zone moving a date) would make the
engine miss it when it ticks at that edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cadences.engagement_file import EXAMPLE_ENGAGEMENT
from cadences.ritual_catalog import all_rituals
from cadences.rituals import EngagementFacts, load_facts
from storage.db import Database
from support.engagements import apply_file

START = datetime(2026, 9, 7, 14, tzinfo=UTC)


@pytest.fixture
async def example_facts(db: Database) -> EngagementFacts:
    engagement = await apply_file(db, EXAMPLE_ENGAGEMENT, START)
    async with db.session() as session:
        return await load_facts(session, engagement)


@pytest.mark.parametrize("ritual", all_rituals(), ids=lambda r: r.name)
@pytest.mark.parametrize("step_hours", [1, 7, 24])
async def test_short_windows_add_up_to_the_long_one(
    example_facts: EngagementFacts, ritual: object, step_hours: int
) -> None:
    end = START + timedelta(days=200)
    whole = {
        (d.period, d.due_at)
        for d in ritual.due_between(example_facts, START, end)  # type: ignore[attr-defined]
        if START <= d.due_at < end
    }
    pieces: set[tuple[str, datetime]] = set()
    at = START
    while at < end:
        nxt = min(end, at + timedelta(hours=step_hours))
        found = [
            (d.period, d.due_at)
            for d in ritual.due_between(example_facts, at, nxt)  # type: ignore[attr-defined]
            if at <= d.due_at < nxt
        ]
        assert len(found) == len(set(found))
        pieces |= set(found)
        at = nxt
    assert pieces == whole
