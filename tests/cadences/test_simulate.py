"""`cadence simulate` is the real engine on a virtual clock: it shows the rituals at their local times
and two runs with the same seed print the same transcript."""

from __future__ import annotations

import contextlib
import io

import pytest

from bot.simulation import run_simulation
from cadences.engagement_file import EXAMPLE_ENGAGEMENT


async def transcript(days: int, seed: int) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await run_simulation(EXAMPLE_ENGAGEMENT, days=days, seed=seed) == 0
    return out.getvalue()


@pytest.mark.slow
async def test_the_first_weeks_of_the_example_engagement_repeat_exactly() -> None:
    first = await transcript(24, 3)
    assert first == await transcript(24, 3)
    # Reviews on Mondays at 09:00 Los Angeles, with their deal threads; nudges the business day before.
    assert "[Mon 2026-09-14 09:00 PDT · #pipeline-review]" in first
    assert "[Fri 2026-09-11 15:00 PDT · DM to" in first
    assert "(thread)]" in first
    # The founder digest on Friday at 16:00 in the founder's zone, and the day-30 check-in.
    assert "[Fri 2026-09-11 16:00 PDT · DM to" in first and "Weekly digest" in first
    assert "Day 30 check-in" in first
    assert "Messages sent by ritual:" in first
